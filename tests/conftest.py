"""Shared fixtures: one real Engine per test session, and the app served by a real process."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from engine.settings import default_threads, thread_environment

if os.environ.get("PYTEST_XDIST_WORKER"):  # before numpy or torch loads
    # Two workers on two cores: one thread each, or their torch, BLAS and OpenMP threads spin
    # against each other (the suite on 2 cores: 657 s and 1,083 s of CPU with them, 552 s and 837 s
    # without; the shared warm-up, which the workers wait for, keeps every core)
    default_threads(1)

import pytest  # noqa: E402 - the thread settings come first
from PIL import Image  # noqa: E402

from bench.chat import free_port, start_server  # noqa: F401 - free_port: for tests
from bench.labels import fresh_data_dir
from engine import Engine, Settings

ROOT = Path(__file__).resolve().parent.parent
MEMEUI = Path(sys.executable).parent / "memeui"


SLOW_FIXTURES = {"server_url", "warm_engine", "trained_engine", "jobs_app"}


def pytest_collection_modifyitems(items) -> None:
    """A test that needs a served app, the fully warmed session engine or a training engine
    of its own is ``slow`` (tens of seconds), whether or not it says so itself. Files with
    more slow tests run first, so the two workers do not end with one long file left."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])  # stable: a file's tests keep their order


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
        fresh_data_dir(warmed_once(tmp_path_factory.getbasetemp().parent / SHARED_WARM), own)
    return own


SHARED_WARM = "memeui-warm"  # beside the workers' own temporary folders
WARM_ONCE = """
import fcntl, pathlib, sys
folder = pathlib.Path(sys.argv[1])
with open(folder.with_suffix(".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # whoever comes second waits here, leaving the cores to it
    if not (folder / "warmed").is_file():
        import engine
        from engine.chat.backends import dequantized, smollm2_gguf
        engine.Engine(engine.Settings.from_env({}, data_dir=folder)).warm_up().join()
        dequantized(*smollm2_gguf(), folder / "models")  # the tests' reply model, mapped at once
        (folder / "warmed").touch()
"""


def warm_once(folder: Path, **popen) -> subprocess.Popen:
    """An engine in its own process warming ``folder`` fully, unless it is warm already, on
    every core: the workers wait for it."""
    return subprocess.Popen([sys.executable, "-c", WARM_ONCE, str(folder)], cwd=ROOT,
                            env={**memeui_env(folder), **thread_environment(os.cpu_count() or 1)},
                            **popen)


def warmed_once(folder: Path) -> Path:
    """``folder`` fully warmed, once for all workers (the first to ask, or the early start)."""
    process = warm_once(folder, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=900)
    if process.returncode:
        pytest.fail(f"the shared warm-up failed:\n{stderr[-4000:]}")
    return folder


def pytest_sessionstart(session) -> None:
    """Under pytest-xdist the controller starts the shared warm-up at once, while the
    workers start and collect, instead of the first worker's first test starting it."""
    config = session.config
    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        base = config._tmp_path_factory.getbasetemp()
        with open(base / f"{SHARED_WARM}.log", "w") as log:  # the child keeps its own copy
            config._memeui_warming = warm_once(base / SHARED_WARM, stdout=subprocess.DEVNULL,
                                               stderr=log)


def pytest_unconfigure(config) -> None:
    warming = getattr(config, "_memeui_warming", None)
    if warming is not None and warming.poll() is None:
        warming.terminate()  # the session ended (or was stopped) before it finished
        warming.wait(timeout=30)


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


@pytest.fixture(scope="session")
def smollm2(data_dir):
    """The bundled SmolLM2 reply backend, loaded once for the session (the default backend
    is the corpus replies)."""
    from engine.chat.backends import create_reply_backend

    settings = Settings.from_env({}, data_dir=data_dir, reply_backend="smollm2")
    return create_reply_backend(settings, "cpu", retrieval=lambda: None)


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's Postgres on a loopback port of this session (as the postgres user when the
    session runs as root: pg_ctl refuses root), stopped and removed at the end."""
    from annotations.local_postgres import LocalPostgres

    server = LocalPostgres().start()
    yield server
    server.remove()


@pytest.fixture(params=["duckdb", "postgres"])
def store_location(request, tmp_path):
    """``new(name)`` → a new, empty label store location on the test's backend: a DuckDB file,
    or a database of the session's Postgres server."""
    if request.param == "duckdb":
        return lambda name="labels": tmp_path / f"{name}.duckdb"
    server = request.getfixturevalue("postgres_server")
    names = iter(range(1_000_000))
    prefix = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:10]
    return lambda name="labels": server.create_database(f"{name}_{prefix}_{next(names)}")


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
