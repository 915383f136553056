"""Labels in, a better model live: the whole loop through a served app, from a fresh data dir.

``memeui serve`` runs in its own process (retrieval chat backend, a fine-tuning request every
500 sticker-emotion labels). 500 labels of ``assets/labels/sticker_emotions.csv`` (the project's
labelled stickers, the same file the studio measures the reader with), a fixed random sample
(ordered by a hash of the sticker id), go in through ``/label``; the 500th records a request, the trainer turns it into a job on a snapshot, the job
fits and measures a candidate in its own process, the gate compares it with the live reader and
the engine serves it. Prints:

- ``seconds_to_live``: last label committed → the promoted version answering ``/library_stickers``;
- ``promoted`` and the gate's note;
- ``accuracy_before`` / ``accuracy_after``: the served emotion of the labelled stickers *not*
  among the 500, against their labels (percent);
- ``chat_p95_ratio_during_training``: ``/chat`` p95 while the job runs ÷ idle p95.
"""

from __future__ import annotations

import hashlib
import http.client
import platform
import shutil
import threading
import time
import urllib.parse

import numpy as np

from bench.chat import http_turn, messages, start_server
from bench.labels import call, fresh_data_dir
from engine import Settings
from engine.stickers.emotion_head import public_labels

LABELS = 500


def labelling_order(gold: dict[str, str]) -> list[str]:
    """A fixed shuffle of the labelled stickers: the first N are a random sample of the file
    (its own order puts every hand-labelled sticker first, which no annotator would)."""
    return sorted(gold, key=lambda k: hashlib.sha256(k.encode()).hexdigest())


def served_accuracy(connection, gold: dict[str, str]) -> float:
    served = {s["id"]: s["emotion"] for s in call(connection, "library_stickers")}
    return round(100 * float(np.mean([served[k] == v for k, v in gold.items()])), 2)


def chat_latencies(url: str, texts: list[str], stop: threading.Event | None = None) -> list[float]:
    address = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    latencies = []
    for text in texts:
        if stop is not None and stop.is_set():
            break
        started = time.perf_counter()
        http_turn(connection, text, "bench-finetune")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def run(labels: int = LABELS, chat_turns: int = 400, settings: Settings | None = None) -> dict:
    """``labels`` and ``chat_turns`` smaller for the suite's smoke test."""
    settings = settings or Settings.from_env()
    data_dir = fresh_data_dir(settings.data_dir)
    gold = public_labels()
    order = labelling_order(gold)
    labelled, outside = order[:labels], {k: gold[k] for k in order[labels:]}
    texts = messages(chat_turns, skip=settings.retrieval_conversations)
    idle_turns = max(10, chat_turns // 4)
    process, url = start_server({"MEMEUI_DATA_DIR": str(data_dir), "MEMEUI_LOG_LEVEL": "WARNING",
                                 "MEMEUI_REPLY_BACKEND": "retrieval",
                                 "MEMEUI_CHAT_PER_MINUTE": "0",  # one caller, hundreds of turns
                                 "MEMEUI_TRAIN_EVERY": str(labels)}, timeout=600)
    address = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
    try:
        call(connection, "next_item", "sticker_emotion", "warm-up", "uncertain", "")
        chat_latencies(url, texts[:5])  # warm the chat path
        idle = chat_latencies(url, texts[5:5 + idle_turns])
        before = served_accuracy(connection, outside)
        for sticker in labelled:
            call(connection, "label", "sticker_emotion", sticker, gold[sticker], "bench")
        last_label = time.perf_counter()
        stop = threading.Event()
        during: list[float] = []
        chatting = threading.Thread(target=lambda: during.extend(
            chat_latencies(url, texts[5 + idle_turns:], stop)))
        chatting.start()
        outcome, deadline = None, time.monotonic() + 300
        while outcome is None and time.monotonic() < deadline:
            jobs = call(connection, "jobs_list", "")
            finished = [j for j in jobs if j["state"] in ("done", "failed") and j["outcome"]
                        or j["state"] == "failed"]
            if finished:
                outcome = finished[0]
            time.sleep(0.1)
        seconds_to_live = time.perf_counter() - last_label
        stop.set()
        chatting.join()
        after = served_accuracy(connection, outside)
    finally:
        process.terminate()
        process.wait(timeout=30)
    shutil.rmtree(data_dir, ignore_errors=True)
    promoted = bool(outcome and outcome["outcome"].startswith("promoted"))
    return {
        "seconds_to_live": round(seconds_to_live, 2) if promoted else None,
        "promoted": promoted,
        "gate": outcome["outcome"] if outcome else "no job finished within 300 s",
        "accuracy_before": before,
        "accuracy_after": after,
        "outside_stickers": len(outside),
        "chat_p95_idle_ms": round(float(np.percentile(idle, 95)), 2),
        "chat_p95_training_ms": round(float(np.percentile(during, 95)), 2) if during else None,
        "chat_turns_during_training": len(during),
        "chat_p95_ratio_during_training": round(float(np.percentile(during, 95)
                                                      / np.percentile(idle, 95)), 2)
        if during else None,
        "labels": len(labelled),
        "cpu": platform.processor() or platform.machine(),
    }
