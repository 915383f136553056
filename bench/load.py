"""Labels and chat while the server is killed: ``memeui bench load``.

``memeui serve`` runs in its own process on a fresh data dir (the index versions and caches
of MEMEUI_DATA_DIR are copied in, to skip the build), with the retrieval chat backend. 16
annotators label stickers through ``/label`` and 8 clients chat through ``/chat``, while the
server is killed with SIGKILL at random moments (``kills`` times) and started again on the same
port. Each label carries an idempotency key; an annotator whose call fails (connection refused
or dropped) retries the same label with the same key until it is acknowledged. Just before one
of the kills a fine-tuning job is requested, so the kill can land while it trains.

At the end the server is killed once more and the store is opened: every acknowledged key must
be there (``lost``) exactly once (``duplicates``). Printed: ``acked``, ``lost``, ``duplicates``,
``kills``, ``labels_per_s`` (acknowledged labels over the whole run, kills included),
``restart_s`` (median, kill → answering again), ``chat_turns``, ``chat_errors_outside_kills``
(a chat call that failed while the server was up), ``jobs_left_running`` (a job record still
"running" after the restarts: should be 0; a killed job is ``interrupted``), and ``overload``:
48 chat calls at once against the bounded line (see ``overload``).
"""

from __future__ import annotations

import http.client
import random
import shutil
import signal
import subprocess
import threading
import time

import numpy as np

from bench.chat import free_port, messages, start_server
from bench.labels import EMOTIONS, call, fresh_data_dir
from engine import Settings

ANNOTATORS = 16
CHATTERS = 8
GRACE_S = 1.0  # after a restart, calls that began before it may still fail


class Server:
    """``memeui serve`` on one port, killed and started again."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.environ, self.port = environ, free_port()
        self.process: subprocess.Popen | None = None
        self.up = threading.Event()
        self.windows: list[list[float]] = []  # [killed at, answering again at]

    def start(self) -> float:
        started = time.monotonic()
        self.process, _ = start_server(self.environ, port=self.port, timeout=600)
        self.up.set()
        return time.monotonic() - started

    def kill(self) -> None:
        self.up.clear()
        self.windows.append([time.monotonic(), float("inf")])
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def restart(self) -> float:
        """Kill → answering again, in seconds."""
        self.kill()
        seconds = self.start()
        self.windows[-1][1] = time.monotonic()
        return seconds

    def during_a_kill(self, began: float, ended: float) -> bool:
        return any(began <= up + GRACE_S and ended >= killed for killed, up in self.windows)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)


FAILURES = (OSError, RuntimeError, http.client.HTTPException)  # a call that got no answer


class Traffic:
    """Annotators labelling stickers through ``/label`` (each label with its idempotency key,
    retried until it is acknowledged) and clients chatting through ``/chat``, each worker over
    ``connect(worker)``; after a failure a worker waits for ``recover()`` and connects again.
    ``during_a_kill(began, ended)`` tells a chat error that a kill explains from one that no
    kill does. Shared by ``bench load`` and ``bench cluster``."""

    def __init__(self, connect, recover, during_a_kill, stickers: list[str], texts: list[str]) -> None:
        self.connect, self.recover, self.during_a_kill = connect, recover, during_a_kill
        self.stickers, self.texts = stickers, texts
        self.acked: dict[str, int] = {}  # key → event id, once acknowledged
        self.chat = {"turns": 0, "errors_outside_kills": 0, "errors_during_kills": 0}
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.workers: list[threading.Thread] = []

    def start(self, annotators: int, chatters: int) -> None:
        self.workers = [threading.Thread(target=self.annotate, args=(i,)) for i in range(annotators)] + \
            [threading.Thread(target=self.talk, args=(i,)) for i in range(chatters)]
        for worker in self.workers:
            worker.start()

    def finish(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout=600)

    def annotate(self, worker: int) -> None:
        connection, number = self.connect(worker), 0
        while not self.stop.is_set():
            key = f"annotator-{worker}:{number}"
            sticker = self.stickers[(worker * 131 + number) % len(self.stickers)]
            emotion = EMOTIONS[(worker + number) % len(EMOTIONS)]
            while True:  # the same label, the same key, until it is acknowledged
                try:
                    event = call(connection, "label", "sticker_emotion", sticker, emotion,
                                 f"annotator-{worker}", key)["event"]
                    break
                except FAILURES:
                    connection = self._reconnect(connection, worker)
            with self.lock:
                self.acked[key] = event
            number += 1

    def talk(self, worker: int) -> None:
        connection, number = self.connect(worker), 0
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                call(connection, "chat", self.texts[(worker * 25 + number) % len(self.texts)], [])
                with self.lock:
                    self.chat["turns"] += 1
            except FAILURES:
                kind = "errors_during_kills" if self.during_a_kill(began, time.monotonic()) \
                    else "errors_outside_kills"
                with self.lock:
                    self.chat[kind] += 1
                connection = self._reconnect(connection, worker)
            number += 1

    def _reconnect(self, connection, worker: int):
        connection.close()
        self.recover()
        return self.connect(worker)


def overload(server: Server, texts: list[str], clients: int = 48) -> dict:
    """``clients`` chat calls at the same moment against the bounded line (settings
    ``chat_slots`` running + ``chat_waiting`` waiting): ``busy`` answers, ``timeouts`` (no answer
    within the reply timeout + 5 s), ``p95_ms`` of the answered, and whether the server still
    answers after it."""
    timeout = Settings.from_env().reply_timeout + 5
    gate, results = threading.Barrier(clients), []

    def one(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        gate.wait()
        began = time.perf_counter()
        try:
            call(connection, "chat", texts[number % len(texts)], [])
            results.append(("served", (time.perf_counter() - began) * 1000))
        except RuntimeError as error:
            results.append(("busy" if "busy" in str(error) else "error", 0.0))
        except TimeoutError:
            results.append(("timeout", 0.0))
        except (OSError, http.client.HTTPException):
            results.append(("error", 0.0))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    served = [ms for kind, ms in results if kind == "served"]
    try:
        call(server.connect(), "chat", "still there?", [])
        up = True
    except (OSError, RuntimeError, http.client.HTTPException):
        up = False
    return {"clients": clients, "served": len(served),
            "busy": sum(kind == "busy" for kind, _ in results),
            "timeouts": sum(kind == "timeout" for kind, _ in results),
            "errors": sum(kind == "error" for kind, _ in results),
            "p95_ms": round(float(np.percentile(served, 95)), 1) if served else None,
            "server_up_after": up}


def run(kills: int = 5, seconds_between: tuple[float, float] = (4.0, 9.0), seed: int = 0) -> dict:
    rng = random.Random(seed)
    data_dir = fresh_data_dir(Settings.from_env().data_dir)
    server = Server({"MEMEUI_DATA_DIR": str(data_dir), "MEMEUI_LOG_LEVEL": "WARNING",
                     "MEMEUI_TRAIN_EVERY": "0", "MEMEUI_REPLY_BACKEND": "retrieval",
                     "MEMEUI_CHAT_PER_MINUTE": "0"})  # 8 chat clients share one address
    server.start()
    first = server.connect()
    call(first, "next_item", "sticker_emotion", "warm-up", "uncertain", "")  # items exist
    stickers = [s["id"] for s in call(first, "library_stickers")]
    texts = messages(200, skip=Settings.from_env().retrieval_conversations)
    traffic = Traffic(lambda worker: server.connect(), lambda: server.up.wait(timeout=600),
                      server.during_a_kill, stickers, texts)
    started = time.monotonic()
    traffic.start(ANNOTATORS, CHATTERS)
    restarts = []
    for kill in range(kills):
        time.sleep(rng.uniform(*seconds_between))
        if kill == 1:  # a job is training (or about to) when this kill lands
            try:
                call(server.connect(), "train", "sticker-emotion", "")
            except FAILURES:
                pass
            time.sleep(rng.uniform(0.5, 2.0))
        restarts.append(server.restart())
    time.sleep(rng.uniform(*seconds_between))
    traffic.finish()
    acked, chat = traffic.acked, traffic.chat
    seconds = time.monotonic() - started
    jobs = call(server.connect(), "jobs_list", "")
    crowd = overload(server, texts)
    server.kill()  # no shutdown: what was acknowledged must be on disk

    from annotations.store import LabelStore

    store = LabelStore(data_dir / "labels.duckdb")
    keys = [row[0] for row in store._sql(
        "SELECT request_key FROM label_events WHERE request_key IS NOT NULL")]
    store.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "acked": len(acked),
        "lost": len(set(acked) - set(keys)),
        "duplicates": len(keys) - len(set(keys)),
        "kills": len(restarts),
        "labels_per_s": round(len(acked) / seconds, 1),
        "restart_s": round(float(np.median(restarts)), 2),
        "restart_max_s": round(max(restarts), 2),
        "chat_turns": chat["turns"],
        "chat_errors_outside_kills": chat["errors_outside_kills"],
        "chat_errors_during_kills": chat["errors_during_kills"],
        "jobs": {job["id"]: job["state"] for job in jobs},
        "jobs_left_running": sum(job["state"] == "running" for job in jobs),
        "overload": crowd,
        "annotators": ANNOTATORS,
        "chat_clients": CHATTERS,
        "seconds": round(seconds, 1),
    }
