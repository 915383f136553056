"""Labelling speed through the HTTP API of a served app (``memeui serve`` in its own process).

- ``label_p50_ms`` / ``label_p95_ms``: one sticker-emotion label through ``/label`` until the
  server answers, which it does once the event is committed;
- ``next_item_p50_ms``: ``/next_item`` for an annotator part-way through the queue;
- ``labels_per_s``: 16 annotators labelling at once, each its own stickers;
- ``lost``: acknowledged labels missing from the store after the server is killed (SIGKILL,
  no shutdown) and the file is opened again;
- ``duplicates``: labels stored more than once for one acknowledged call. Every label carries an
  idempotency key and the first of every ten is sent again with its key (a client retrying
  after a lost answer): the store must hold one event per key, and a retry be answered with it.
With ``login`` the app has a users file and every annotator signs in through its login form
first (each call carries the session cookie), as a team on a real deployment does;
``sign_in_p50_ms`` is one sign-in (an argon2 check of the password), not counted in the rest.
The data dir is fresh: what MEMEUI_DATA_DIR's engine builds once (index versions, the Chinese
reader's too, the reply corpus's embeddings; built there first if missing) is copied in, so that the served app does not build them while it is
measured (a first start's build is not the labelling speed of a running deployment).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.chat import start_server
from engine import Settings
from engine.paths import CACHE_DIR, INDEX_DIR, MODELS_DIR

ANNOTATORS = 16
REUSABLE = (INDEX_DIR, MODELS_DIR, CACHE_DIR)  # data-dir folders a fresh data dir may start from
EMOTIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


RETRY_EVERY = 10  # the first label of ten is sent twice with its key
PASSWORD = "bench-labels-password"


def call(connection: http.client.HTTPConnection, api_name: str, *values):
    """One named endpoint over Gradio's REST API, without the queue, as scripts call it (with
    the connection's session cookie, if it signed in)."""
    body = json.dumps({"data": list(values), "session_hash": "bench-labels"})
    headers = {"Content-Type": "application/json", **getattr(connection, "cookie", {})}
    try:
        connection.request("POST", f"/gradio_api/run/{api_name}", body, headers)
        answer = connection.getresponse()
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        # the server closed an idle keep-alive connection: send again on a new one (a label
        # carries its idempotency key, so a label the server did get is not written twice)
        connection.close()
        connection.request("POST", f"/gradio_api/run/{api_name}", body, headers)
        answer = connection.getresponse()
    payload = answer.read()
    if answer.status != 200:
        raise RuntimeError(f"/{api_name} answered {answer.status}: {payload[:300]!r}")
    return json.loads(payload)["data"][0]


def timed(function, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args)
    return (time.perf_counter() - started) * 1000, result


def fresh_data_dir(source: Path, target: Path | None = None) -> Path:
    """A data dir of its own (labels, jobs, models versions start empty) that reuses what
    ``source`` computed already: the exported encoder, index versions, caches."""
    target = Path(target or tempfile.mkdtemp(prefix="memeui-data-"))
    for reusable in REUSABLE:
        if (Path(source) / reusable).is_dir():
            shutil.copytree(Path(source) / reusable, target / reusable, copy_function=_link)
    target.mkdir(parents=True, exist_ok=True)
    return target


def warm_data_dir() -> None:
    """What MEMEUI_DATA_DIR's engine builds once and keeps (index versions, its language
    readers', the reply corpus's embeddings), built if missing: the engine warmed up."""
    from engine import Engine

    Engine(Settings.from_env()).warm_up().join()


def _link(source: str, target: str) -> None:
    """A hard link where the file system allows (these files are written once, by rename,
    never changed in place: a de-quantized reply model is half a gigabyte), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def sign_in(connection: http.client.HTTPConnection, name: str) -> None:
    """Log in through the app's form; the connection's later calls carry the session cookie."""
    connection.request("POST", "/login", urllib.parse.urlencode(
        {"username": name, "password": PASSWORD}), {"Content-Type": "application/x-www-form-urlencoded"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        raise RuntimeError(f"{name} could not sign in: HTTP {answer.status}")
    cookies = [c.split(";")[0] for c in answer.headers.get_all("set-cookie") or []]
    connection.cookie = {"Cookie": "; ".join(cookies)}


def team(data_dir: Path) -> None:
    """A users file: the annotators and "solo", each with the bench's password."""
    from annotations.users import USERS_FILE, Users

    users = Users(data_dir / USERS_FILE)
    for name in ["solo", "warm-up", *(f"annotator-{n}" for n in range(ANNOTATORS))]:
        users.add(name, "annotator", PASSWORD)


def labeller(connection: http.client.HTTPConnection, name: str, login: bool):
    """A function that sends ``name``'s labels with keys, the first of every ten twice (signed
    in first, untimed: a person signs in once and labels for an hour); it returns each key and
    the events its calls were answered with."""
    sent = {"n": 0}
    if login:
        sign_in(connection, name)

    def label(sticker: str, emotion: str) -> tuple[str, list[int]]:
        sent["n"] += 1
        key = f"{name}/{sent['n']}"
        answers = [call(connection, "label", "sticker_emotion", sticker, emotion, name, key)["event"]
                   for _ in range(2 if sent["n"] % RETRY_EVERY == 1 else 1)]
        return key, answers
    return label


def run(labels: int = 1000, login: bool = False) -> dict:
    subprocess.run([sys.executable, "-c", "import bench.labels as b; b.warm_data_dir()"],
                   check=True, stdout=subprocess.DEVNULL)  # a child: its models are not kept
    data_dir = fresh_data_dir(Settings.from_env().data_dir)
    if login:
        team(data_dir)
    process, url = start_server({"MEMEUI_DATA_DIR": str(data_dir), "MEMEUI_LOG_LEVEL": "WARNING",
                                 "MEMEUI_TRAIN_EVERY": "0"})
    address = urllib.parse.urlsplit(url)
    connect = lambda: http.client.HTTPConnection(address.hostname, address.port, timeout=120)  # noqa: E731
    answered: dict[str, list[int]] = {}  # key → the events its calls were answered with
    try:
        main = connect()
        if login:
            sign_in(main, "warm-up")
        call(main, "next_item", "sticker_emotion", "warm-up", "uncertain", "")  # items exist
        stickers = [s["id"] for s in call(main, "library_stickers")]
        sequential = min(labels // 3, len(stickers))
        label_ms = []
        solo_connection = connect()
        solo = labeller(solo_connection, "solo", login)
        for i, sticker in enumerate(stickers[:sequential]):
            ms, (key, events) = timed(solo, sticker, EMOTIONS[i % len(EMOTIONS)])
            label_ms.append(ms)
            answered[key] = events
        next_ms = [timed(call, solo_connection, "next_item", "sticker_emotion", "solo", "uncertain",
                         "")[0] for _ in range(100)]  # part-way through the queue

        per_annotator = min((labels - sequential) // ANNOTATORS, len(stickers))
        pool, sign_in_ms = [], []  # each annotator signs in (with login), one after another
        for n in range(ANNOTATORS):
            ms, labelling = timed(labeller, connect(), f"annotator-{n}", login)
            pool.append(labelling)
            sign_in_ms.append(ms)

        def annotate(worker: int) -> dict[str, list[int]]:
            return dict(pool[worker](stickers[(worker * 97 + i) % len(stickers)],
                                     EMOTIONS[(worker + i) % len(EMOTIONS)])
                        for i in range(per_annotator))

        started = time.perf_counter()
        with ThreadPoolExecutor(ANNOTATORS) as executor:
            for events in executor.map(annotate, range(ANNOTATORS)):
                answered.update(events)
        concurrent_s = time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGKILL)  # no shutdown: what was acknowledged must be on disk
        process.wait(timeout=30)

    from annotations.store import LabelStore

    store = LabelStore(data_dir / "labels.duckdb")
    stored = store.read("SELECT id, request_key FROM label_events WHERE kind = 'label'")
    store.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    acknowledged = {event for events in answered.values() for event in events}
    per_key = Counter(row["request_key"] for row in stored)
    return {
        "label_p50_ms": round(float(np.percentile(label_ms, 50)), 2),
        "label_p95_ms": round(float(np.percentile(label_ms, 95)), 2),
        "next_item_p50_ms": round(float(np.percentile(next_ms, 50)), 2),
        "labels_per_s": round(per_annotator * ANNOTATORS / concurrent_s, 1),
        "annotators": ANNOTATORS,
        "labels": len(answered),
        "retried": sum(len(events) > 1 for events in answered.values()),
        "login": login,
        **({"sign_in_p50_ms": round(float(np.percentile(sign_in_ms, 50)), 2)} if login else {}),
        "lost": len(acknowledged - {row["id"] for row in stored}),
        "duplicates": sum(n - 1 for n in per_key.values())  # one key stored twice
        + sum(len(set(events)) > 1 for events in answered.values())  # a retry answered anew
        + sum(key not in answered for key in per_key),  # stored, never acknowledged
        "cpu": platform.processor() or platform.machine(),
    }
