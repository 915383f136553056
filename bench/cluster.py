"""The engine past one machine under labels, chat and kills: ``memeui bench cluster``.

Postgres (our own, on loopback) holds the labels; a local Ray head runs the Serve application
(`memeui cluster up`, the retrieval reply backend) over a fresh data dir (the index versions
and caches of MEMEUI_DATA_DIR linked in); two app processes (`memeui serve --engine ray`, no
models) serve the API. 16 annotators, spread over both processes, label stickers through
``/label`` with idempotency keys; 8 clients chat through ``/chat``. Mid-run one Stickers
replica is killed with SIGKILL (Serve replaces it), then one app process (its clients move to
the other, as a load balancer sends them, and retry the same key until acknowledged).

Printed: ``app_processes``, ``labels_acked``, ``lost`` and ``duplicates`` (every acknowledged key
must be in the store exactly once, checked after both app processes are killed),
``chat_served``, ``chat_errors_outside_kills`` (a chat call that failed while nothing was being
killed or replaced), ``replica_recovery_s`` (kill → a new replica answering), and latencies in
the same run, before the kills: ``search_p50_ms`` and ``chat_turn_p50_ms`` through the cluster
(this process as a Serve client) and in process (an Engine here on the same data dir).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from annotations.local_postgres import LocalPostgres, free_port
from bench.chat import messages
from bench.labels import call, fresh_data_dir
from bench.load import Server, Traffic
from engine import Dialogue, Engine, Settings

GRACE_S = 2.0  # calls that began just before a kill window may still fail after it


class Windows:
    """When something was being killed or replaced: a failure then is expected."""

    def __init__(self) -> None:
        self.spans: list[list[float]] = []

    def open(self) -> list[float]:
        span = [time.monotonic(), float("inf")]
        self.spans.append(span)
        return span

    def covers(self, began: float, ended: float) -> bool:
        return any(began <= end + GRACE_S and ended >= start for start, end in self.spans)


def p50(function, inputs: list) -> float:
    times = []
    for value in inputs:
        started = time.perf_counter()
        function(value)
        times.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(times)), 2)


def latencies(through, here, texts: list[str]) -> dict:
    """Search and a retrieval chat turn, through the cluster and in process, on the same texts
    (each engine warms on texts of its own first)."""
    for engine in (through, here):
        for text in texts[-5:]:
            engine.search(text, 8)
            engine.chat(Dialogue.from_transcript(f"user: {text}"))
    queries, turns = texts[:40], [Dialogue.from_transcript(f"user: {t}") for t in texts[40:60]]
    return {"search_p50_ms": {"cluster": p50(lambda q: through.search(q, 8), queries),
                              "in_process": p50(lambda q: here.search(q, 8), queries)},
            "chat_turn_p50_ms": {"cluster": p50(through.chat, turns),
                                 "in_process": p50(here.chat, turns)}}


def replica_pid(engine, deployment: str = "Stickers") -> int:
    return engine.versions(deployment)["pid"]


def recover(engine, old_pid: int, timeout_s: float = 120) -> float:
    """Seconds from now until a replica other than ``old_pid`` answers."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if replica_pid(engine) != old_pid:
                return time.monotonic() - started
        except ValueError:  # ClusterBusy: not yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no Stickers replica answered within {timeout_s} s of the kill")


def run(annotators: int = 16, chatters: int = 8, seconds: float = 30.0,
        address: str | None = None, data_dir: Path | None = None) -> dict:
    """``address``: a running cluster with the application deployed over ``data_dir`` (else
    MEMEUI_DATA_DIR) instead of a head of our own (the suite's smoke test)."""
    from annotations.store import LabelStore
    from engine.cluster.client import ClusterEngine

    postgres = LocalPostgres().start()
    own_cluster = address is None
    data_dir = fresh_data_dir(Settings.from_env().data_dir) if own_cluster else \
        Path(data_dir or Settings.from_env().data_dir)
    environ = {"MEMEUI_DATA_DIR": str(data_dir), "MEMEUI_LOG_LEVEL": "WARNING",
               "MEMEUI_REPLY_BACKEND": "retrieval", "MEMEUI_TRAIN_EVERY": "0",
               "MEMEUI_CHAT_PER_MINUTE": "0", "MEMEUI_LABELS_PER_MINUTE": "0",
               "RAY_AUTH_MODE": "token", "MEMEUI_STORE": postgres.create_database("labels")}
    apps: list[Server] = []
    try:
        if own_cluster:
            up = subprocess.run([str(Path(sys.executable).with_name("memeui")), "cluster", "up",
                                 "--port", str(free_port())], env={**os.environ, **environ},
                                capture_output=True, text=True, timeout=900)
            if up.returncode != 0:
                raise RuntimeError(f"memeui cluster up failed: {up.stderr[-3000:]}")
            address = json.loads(up.stdout)["ray_address"]
        environ["RAY_ADDRESS"] = address
        os.environ.update(RAY_ADDRESS=address, RAY_AUTH_MODE="token")
        settings = Settings.from_env({}, data_dir=data_dir, reply_backend="retrieval")
        through = ClusterEngine(replace(settings, engine="ray"))
        texts = messages(120, skip=settings.retrieval_conversations)
        measured = latencies(through, Engine(settings), texts)

        apps = [Server({**environ, "MEMEUI_ENGINE": "ray"}) for _ in range(2)]
        for app in apps:
            app.start()
        stickers = [s["id"] for s in call(apps[0].connect(), "library_stickers")]
        result = load(apps, through, stickers, texts, annotators, chatters, seconds)
        for app in apps:
            if app.up.is_set():
                app.kill()  # no shutdown: what was acknowledged must be in the store already
        store = LabelStore(environ["MEMEUI_STORE"])
        keys = [row[0] for row in store._sql(
            "SELECT request_key FROM label_events WHERE request_key IS NOT NULL")]
        store.close()
        acked = result.pop("acked")
        return {"app_processes": len(apps), "labels_acked": len(acked),
                "lost": len(set(acked) - set(keys)), "duplicates": len(keys) - len(set(keys)),
                **result, **measured, "annotators": annotators, "chat_clients": chatters,
                "cpu_cores": os.cpu_count()}
    finally:
        for app in apps:
            if app.process is not None and app.process.poll() is None:
                app.process.kill()
        if "ray" in sys.modules:
            sys.modules["ray"].shutdown()  # before the head goes, or Ray reports it lost
        if own_cluster and address:
            subprocess.run([str(Path(sys.executable).with_name("memeui")), "cluster", "down"],
                           capture_output=True, timeout=180)
            shutil.rmtree(data_dir, ignore_errors=True)
        postgres.remove()


def load(apps: list[Server], through, stickers: list[str], texts: list[str], annotators: int,
         chatters: int, seconds: float) -> dict:
    """The annotators and chat clients (``bench load``'s) for ``seconds``, a replica kill at a
    third of it and an app-process kill at two thirds."""
    windows = Windows()

    def served_by(worker: int) -> Server:
        """The worker's process while it is up, else the other (what a balancer does)."""
        home = apps[worker % len(apps)]
        return home if home.up.is_set() else next(app for app in apps if app.up.is_set())

    traffic = Traffic(lambda worker: served_by(worker).connect(), lambda: time.sleep(0.2),
                      windows.covers, stickers, texts)
    started = time.monotonic()
    traffic.start(annotators, chatters)
    time.sleep(seconds / 3)
    window, pid = windows.open(), replica_pid(through)
    os.kill(pid, signal.SIGKILL)
    recovery = recover(through, pid)
    window[1] = time.monotonic()
    time.sleep(seconds / 3)
    window = windows.open()
    apps[1].kill()  # its clients go to the other process
    window[1] = time.monotonic()
    time.sleep(seconds / 3)
    traffic.finish()
    elapsed = time.monotonic() - started
    return {"acked": traffic.acked, "labels_per_s": round(len(traffic.acked) / elapsed, 1),
            "chat_served": traffic.chat["turns"],
            "chat_errors_outside_kills": traffic.chat["errors_outside_kills"],
            "chat_errors_during_kills": traffic.chat["errors_during_kills"],
            "replica_recovery_s": round(recovery, 2), "seconds": round(elapsed, 1)}
