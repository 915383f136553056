"""Memory of the served app under mixed use: ``memeui bench soak``.

``memeui serve`` runs in its own process on a fresh data dir (the index versions and caches of
MEMEUI_DATA_DIR are copied in, to skip the build). For ``seconds`` one client after another
chats (the whole conversation so far goes back each turn, as the chat tab does; a conversation
starts again after ten turns), searches, labels stickers, and now and then adds a small pack
and removes it again; halfway through a fine-tuning job is requested and runs. Every request is
a text the server has not seen. The server's resident memory (``VmRSS`` of its process; a
training job runs in a process of its own and is not counted) is read after it answers
(``rss_mb_after_start``), after one round of every kind of request (``rss_mb_after_warmup``)
and at the end (``rss_mb_end``). ``growth_pct`` is the end against after warm-up, and
``growth_mb_per_100_requests`` the slope of a line through the samples after warm-up.
"""

from __future__ import annotations

import http.client
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image

from bench.chat import messages, start_server
from bench.labels import EMOTIONS, call, fresh_data_dir
from engine import Settings

TURNS_PER_CONVERSATION = 10


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def tiny_pack(folder: Path, round_number: int) -> list[Path]:
    """Three small pictures, new each round (new content, new ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
        path = folder / f"soak-{round_number}-{i}.png"
        Image.new("RGB", (64, 64), tuple((c + 7 * round_number) % 256 for c in colour)).save(path)
        paths.append(path)
    return paths


class Traffic:
    """One client's mixed requests against the served app, counted."""

    def __init__(self, url: str, texts: list[str]) -> None:
        self.address = urllib.parse.urlsplit(url)
        self.url, self.texts, self.requests, self.step = url, texts, 0, 0
        self.connection = self._connect()
        self.history: list = []
        self.stickers = [s["id"] for s in self.call("library_stickers")]

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.address.hostname, self.address.port, timeout=300)

    def call(self, api_name: str, *values):
        """One endpoint; a kept-alive connection the server closed while this client was busy
        elsewhere (a pack upload) is opened again, once."""
        try:
            return call(self.connection, api_name, *values)
        except (ConnectionError, http.client.RemoteDisconnected):
            self.connection.close()
            self.connection = self._connect()
            return call(self.connection, api_name, *values)

    def text(self) -> str:
        self.step += 1
        return self.texts[self.step % len(self.texts)] + f" ({self.step})"  # never seen before

    def chat(self) -> None:
        if len(self.history) >= 2 * TURNS_PER_CONVERSATION:
            self.history = []
        message = self.text()
        reply = self.call("chat", message, self.history)
        self.history = self.history + [{"role": "user", "content": message},
                                       {"role": "assistant", "content": reply["text"],
                                        "sticker": (reply.get("sticker") or {}).get("label")}]
        self.requests += 1

    def search(self) -> None:
        self.call("search", self.text(), 8, "any")
        self.requests += 1

    def label(self, annotator: str = "soak") -> None:
        sticker = self.stickers[(self.step * 37) % len(self.stickers)]
        self.call("label", "sticker_emotion", sticker,
             EMOTIONS[self.step % len(EMOTIONS)], annotator, f"soak-{self.step}")
        self.step += 1
        self.requests += 1

    def pack(self, folder: Path, round_number: int) -> None:
        """Add a three-sticker pack through the library tab's endpoint, then remove it."""
        from gradio_client import Client, handle_file

        client = Client(self.url, verbose=False)
        name = f"soak{round_number}"
        client.predict([handle_file(str(p)) for p in tiny_pack(folder, round_number)], name, False,
                       api_name="/library_add")
        client.predict(name, api_name="/library_remove")
        client.close()
        self.requests += 2

    def train(self) -> None:
        self.call("request_training", "sticker_emotion", "")
        self.requests += 1


def run(seconds: float = 600, pack_every: int = 10, backend: str = "retrieval") -> dict:
    data_dir = fresh_data_dir(Settings.from_env().data_dir)
    process, url = start_server({"MEMEUI_DATA_DIR": str(data_dir), "MEMEUI_LOG_LEVEL": "WARNING",
                                 "MEMEUI_TRAIN_EVERY": "0", "MEMEUI_REPLY_BACKEND": backend,
                                 "MEMEUI_CHAT_PER_MINUTE": "0", "MEMEUI_LABELS_PER_MINUTE": "0"},
                                timeout=900)
    try:
        after_start = rss_mb(process.pid)
        traffic = Traffic(url, messages(400, skip=Settings.from_env().retrieval_conversations))
        with tempfile.TemporaryDirectory(prefix="memeui-soak-") as tmp:
            def one_round(number: int) -> None:
                for _ in range(3):
                    traffic.chat()
                    traffic.search()
                    traffic.label()
                if number % pack_every == 0:
                    traffic.pack(Path(tmp), number)

            one_round(0)
            after_warmup, warmed_at = rss_mb(process.pid), traffic.requests
            samples: list[tuple[int, float]] = [(warmed_at, after_warmup)]
            started, number, trained = time.monotonic(), 1, False
            while time.monotonic() - started < seconds:
                if not trained and time.monotonic() - started > seconds / 2:
                    traffic.train()
                    trained = True
                one_round(number)
                samples.append((traffic.requests, rss_mb(process.pid)))
                number += 1
        end = rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
    counts, sizes = np.array([s[0] for s in samples], float), np.array([s[1] for s in samples])
    slope = float(np.polyfit(counts, sizes, 1)[0]) * 100 if len(samples) > 2 else 0.0
    return {"seconds": round(seconds, 1), "requests": traffic.requests, "rounds": number,
            "backend": backend, "trained": trained,
            "rss_mb_after_start": round(after_start, 1), "rss_mb_after_warmup": round(after_warmup, 1),
            "rss_mb_end": round(end, 1), "rss_mb_peak": round(float(sizes.max()), 1),
            "growth_pct": round(100 * (end - after_warmup) / after_warmup, 2),
            "growth_mb_per_100_requests": round(slope, 2)}
