"""Labelling speed through the HTTP API of a served app (``memeui serve`` in its own process).

- ``label_p50_ms`` / ``label_p95_ms``: one sticker-emotion label through ``/label`` until the
  server answers, which it does once the event is committed;
- ``next_item_p50_ms``: ``/next_item`` for an annotator part-way through the queue;
- ``labels_per_s``: 16 annotators labelling at once, each its own stickers;
- ``lost``: acknowledged labels missing from the store after the server is killed (SIGKILL,
  no shutdown) and the file is opened again.
The data dir is fresh (the index versions of MEMEUI_DATA_DIR are copied in, to skip the build).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import signal
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.chat import start_server
from engine import Settings
from engine.paths import CACHE_DIR, INDEX_DIR, MODELS_DIR

ANNOTATORS = 16
REUSABLE = (INDEX_DIR, MODELS_DIR, CACHE_DIR)  # data-dir folders a fresh data dir may start from
EMOTIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


def call(connection: http.client.HTTPConnection, api_name: str, *values):
    """One named endpoint over Gradio's REST API, without the queue, as scripts call it."""
    body = json.dumps({"data": list(values), "session_hash": "bench-labels"})
    connection.request("POST", f"/gradio_api/run/{api_name}", body,
                       {"Content-Type": "application/json"})
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


def _link(source: str, target: str) -> None:
    """A hard link where the file system allows (these files are written once, by rename,
    never changed in place: a de-quantized reply model is half a gigabyte), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def run(labels: int = 1000) -> dict:
    data_dir = fresh_data_dir(Settings.from_env().data_dir)
    process, url = start_server({"MEMEUI_DATA_DIR": str(data_dir), "MEMEUI_LOG_LEVEL": "WARNING",
                                 "MEMEUI_TRAIN_EVERY": "0"})
    address = urllib.parse.urlsplit(url)
    connect = lambda: http.client.HTTPConnection(address.hostname, address.port, timeout=120)  # noqa: E731
    try:
        main = connect()
        call(main, "next_item", "sticker_emotion", "warm-up", "uncertain", "")  # items exist
        stickers = [s["id"] for s in call(main, "library_stickers")]
        sequential = min(labels // 3, len(stickers))
        acknowledged: list[int] = []
        label_ms = []
        for i, sticker in enumerate(stickers[:sequential]):
            ms, result = timed(call, main, "label", "sticker_emotion", sticker,
                               EMOTIONS[i % len(EMOTIONS)], "solo")
            label_ms.append(ms)
            acknowledged.append(result["event"])
        next_ms = [timed(call, main, "next_item", "sticker_emotion", "solo", "uncertain", "")[0]
                   for _ in range(100)]

        per_annotator = min((labels - sequential) // ANNOTATORS, len(stickers))
        pool = [connect() for _ in range(ANNOTATORS)]

        def annotate(worker: int) -> list[int]:
            events = []
            for i in range(per_annotator):
                sticker = stickers[(worker * 97 + i) % len(stickers)]
                events.append(call(pool[worker], "label", "sticker_emotion", sticker,
                                   EMOTIONS[(worker + i) % len(EMOTIONS)], f"annotator-{worker}")
                              ["event"])
            return events

        started = time.perf_counter()
        with ThreadPoolExecutor(ANNOTATORS) as executor:
            for events in executor.map(annotate, range(ANNOTATORS)):
                acknowledged += events
        concurrent_s = time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGKILL)  # no shutdown: what was acknowledged must be on disk
        process.wait(timeout=30)

    from annotations.store import LabelStore

    store = LabelStore(data_dir / "labels.duckdb")
    stored = {event.id for event in store.events("sticker_emotion")}
    store.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "label_p50_ms": round(float(np.percentile(label_ms, 50)), 2),
        "label_p95_ms": round(float(np.percentile(label_ms, 95)), 2),
        "next_item_p50_ms": round(float(np.percentile(next_ms, 50)), 2),
        "labels_per_s": round(per_annotator * ANNOTATORS / concurrent_s, 1),
        "annotators": ANNOTATORS,
        "labels": len(acknowledged),
        "lost": len(set(acknowledged) - stored),
        "cpu": platform.processor() or platform.machine(),
    }
