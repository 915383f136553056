"""Shared fixtures: one real Engine per test session, and the app served by a real process."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from bench.chat import free_port, start_server  # noqa: F401 - free_port: for tests
from bench.labels import fresh_data_dir
from engine import Engine, Settings

ROOT = Path(__file__).resolve().parent.parent
MEMEUI = Path(sys.executable).parent / "memeui"


SLOW_FIXTURES = {"server_url", "warm_engine", "trained_engine", "jobs_app"}


def pytest_collection_modifyitems(items) -> None:
    """A test that needs a served app, the fully warmed session engine or a training engine
    of its own is ``slow`` (tens of seconds), whether or not it says so itself."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def write_pack(folder: Path, name: str, labels: list[str]) -> Path:
    """A tiny pack in the bundled format: pack.json + images, ids = content hashes."""
    (folder / "images").mkdir(parents=True)
    entries = []
    for i, label in enumerate(labels):
        path = folder / "images" / f"{i}.webp"
        Image.new("RGBA", (8, 8), (40 * i, 0, 0, 255)).save(path, "WEBP")
        entries.append({"id": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                        "file": f"images/{i}.webp", "label": label, "tags": [label, "tag"]})
    (folder / "pack.json").write_text(json.dumps({"name": name, "stickers": entries}))
    return folder


def small_engine(root: Path, **overrides) -> Engine:
    """An engine over a three-sticker pack in ``root`` (retrieval replies from 30
    conversations, no OCR): quick to build, for tests that need an app of their own."""
    pack = write_pack(root / "base", "base", ["cat", "dog", "bird"])
    settings = {"data_dir": root / "data", "packs": (pack,), "reply_backend": "retrieval",
                "retrieval_conversations": 30, "ocr": False, **overrides}
    return Engine(Settings.from_env({}, **settings))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data dir for the whole session, so the sticker index is built once and reused.
    Under pytest-xdist (``make test``) the workers hard-link one warm-up's index, models and
    caches, computed once by whichever came first, instead of each computing them beside the
    others on the same cores."""
    own = tmp_path_factory.mktemp("memeui-data")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        fresh_data_dir(warmed_once(tmp_path_factory.getbasetemp().parent / "memeui-warm"), own)
    return own


WARM_UP = "import sys, pathlib, engine; engine.Engine(engine.Settings.from_env({}, " \
          "data_dir=pathlib.Path(sys.argv[1]))).warm_up().join()"


def warmed_once(folder: Path) -> Path:
    """``folder`` fully warmed by an engine in its own process, once for all workers."""
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait here, leaving the cores to it
        if not (folder / "warmed").is_file():
            done = subprocess.run([sys.executable, "-c", WARM_UP, str(folder)], cwd=ROOT,
                                  env=memeui_env(folder), timeout=900, capture_output=True, text=True)
            if done.returncode:
                pytest.fail(f"the shared warm-up failed:\n{done.stderr[-4000:]}")
            (folder / "warmed").touch()
    return folder


@pytest.fixture(scope="session")
def engine(data_dir) -> Engine:
    engine = Engine.shared(Settings.from_env({}, data_dir=data_dir))  # in-process commands share it
    loading = engine.warm_up()
    yield engine
    loading.join()  # native threads still loading at interpreter exit would abort it


@pytest.fixture(scope="session")
def warm_engine(engine) -> Engine:
    """The session engine with everything loaded, so what it caches on disk (the index, the
    retrieval replies' embeddings) is there for the servers and data dirs that copy it, instead
    of each computing it again beside the others on the same two cores."""
    engine.warm_up().join()
    return engine


def memeui_env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "MEMEUI_DATA_DIR": str(data_dir), "MEMEUI_LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="session")
def server_url(data_dir, warm_engine) -> str:
    """`memeui serve` in its own process, as a user starts it; yields its URL once it answers
    (over the session's index and caches, so it only loads them)."""
    log = open(data_dir / "server.log", "w")
    try:
        process, url = start_server(memeui_env(data_dir), output=log, cwd=ROOT, timeout=180)
    except RuntimeError as error:
        pytest.fail(f"{error}:\n" + (data_dir / "server.log").read_text())
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def run_memeui(data_dir: Path, *args: str, input_text: str | None = None):
    """``memeui ARGS`` as its own process, as a user runs it (the subprocess smoke tests)."""
    return subprocess.run([str(MEMEUI), *args], cwd=ROOT, env=memeui_env(data_dir),
                          capture_output=True, text=True, timeout=600, input=input_text)


@dataclass
class Ran:
    """What a command did: its exit status and what it wrote (as ``subprocess.run`` answers)."""

    returncode: int
    stdout: str
    stderr: str


def memeui_main(data_dir: Path, *args: str, input_text: str | None = None,
                env: dict[str, str] | None = None) -> Ran:
    """``memeui ARGS`` in this process, through ``memeui.cli.main`` with MEMEUI_DATA_DIR set,
    stdin from ``input_text``, stdout and stderr captured: the command as a user runs it,
    without a new interpreter's imports (each command group keeps one subprocess test)."""
    from memeui.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved = dict(os.environ)  # a command may set more (serving_threads): all of it goes back
    os.environ.update({"MEMEUI_DATA_DIR": str(data_dir), "MEMEUI_LOG_LEVEL": "WARNING", **(env or {})})
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                _stdin(input_text):
            try:
                code = main([str(arg) for arg in args])
            except SystemExit as exit_:  # argparse's refusals
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Ran(code, stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def _stdin(text: str | None):
    saved = sys.stdin
    sys.stdin = io.StringIO(text or "")
    try:
        yield
    finally:
        sys.stdin = saved
