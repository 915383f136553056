"""Chat turn speed: whole bot turns (mood → reply → sticker) on real user messages.

- ``retrieval_turn_p50_ms`` / ``_p95_ms``: the retrieval backend, in process;
- ``smollm2_turn_p50_ms``: SmolLM2-135M writing at most 40 new tokens, in process, sampled
  from a seeded generator (``seed``) so two runs write the same replies;
  ``smollm2_ms_per_token``: those turns' time over the tokens of the replies they said (less
  moved by how long the sampled replies happen to be; a reply the checks had written again
  counts in the time, not in the tokens);
- ``concurrency_speedup``: turns per second of 16 clients at once through the HTTP API
  (``/chat`` over Gradio's REST API, each client with its session as ``gradio_client`` calls
  it, retrieval backend, ``memeui serve`` in its own process) over one client asking one turn
  at a time: the median of three alternating rounds; ``concurrent_p95_ms`` is a turn's
  latency under that load.
In-process turns run with the server's thread setting (``MEMEUI_THREADS``, default 1).
Messages are the opening lines of chitchat-dataset conversations that the retrieval corpus
does not hold; each turn answers a one-turn dialogue, so no turn is a cache hit.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import numpy as np

from annotations.local_postgres import free_port  # one free-port probe for servers of every kind
from engine import Dialogue, Engine, Settings, Turn

CLIENTS = 16


def messages(count: int, skip: int) -> list[str]:
    from engine.corpora import read_chitchat

    dialogues = read_chitchat(limit=skip + count)[skip:]
    return [d.turns[0].text[:300] for d in dialogues if d.turns[0].text][:count]


def turn_latencies(engine: Engine, texts: list[str], replies: list[str] | None = None) -> list[float]:
    """Each text's whole turn in ms (the replies' texts go to ``replies`` when it is a list)."""
    latencies = []
    for text in texts:
        started = time.perf_counter()
        reply = engine.chat(Dialogue((Turn("user", text),)))
        latencies.append((time.perf_counter() - started) * 1000)
        if replies is not None:
            replies.append(reply.text)
    return latencies


def http_turn(connection: http.client.HTTPConnection, text: str, session: str) -> None:
    """One turn through the HTTP API, as ``gradio_client`` calls ``/chat``: with the client's
    session, so the server keeps one session state per client instead of building one per
    turn. The client is the standard library's, kept alive: the server and the clients share
    the machine's cores, and a heavier client (httpx: 2–3 ms of CPU per request against 0.5)
    would measure the load generator as much as the server."""
    body = json.dumps({"data": [text, []], "session_hash": session})
    connection.request("POST", "/gradio_api/run/chat", body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    payload = answer.read()
    if answer.status != 200 or not json.loads(payload)["data"][0]["text"]:
        raise RuntimeError(f"/chat answered {answer.status}: {payload[:300]!r}")


def http_throughput(url: str, texts: list[str], clients: int) -> tuple[float, list[float]]:
    """Turns per second with ``clients`` HTTP clients working through ``texts`` together."""
    address = urllib.parse.urlsplit(url)
    pool = [http.client.HTTPConnection(address.hostname, address.port, timeout=120)
            for _ in range(clients)]
    latencies: list[float] = []

    def work(worker: int) -> None:
        for text in texts[worker::clients]:
            started = time.perf_counter()
            http_turn(pool[worker], text, f"bench-{worker}")
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as executor:
        list(executor.map(work, range(clients)))
    elapsed = time.perf_counter() - started
    for connection in pool:
        connection.close()
    return len(texts) / elapsed, latencies


def http_speedup(url: str, texts: list[str], turns: int, rounds: int = 3) -> dict:
    """Turns per second of one client and of ``CLIENTS`` clients, measured in alternating
    rounds (a shared 2-core VM drifts by ±20 % between runs): the median of each, the
    median of the rounds' ratios, and the latencies under load. Every turn is a message the
    server has not seen (its encoder caches texts)."""
    http_throughput(url, texts[:CLIENTS], CLIENTS)  # load lazy parts, warm every client
    fresh = iter(texts[CLIENTS:])
    sequential, concurrent, ratios, loaded = [], [], [], []
    for _ in range(rounds):
        one, _ = http_throughput(url, list(islice(fresh, turns // 2)), 1)
        many, latencies = http_throughput(url, list(islice(fresh, turns)), CLIENTS)
        sequential.append(one)
        concurrent.append(many)
        ratios.append(many / one)
        loaded += latencies
    return {"sequential": float(np.median(sequential)), "concurrent": float(np.median(concurrent)),
            "speedup": float(np.median(ratios)), "latencies": loaded}


def start_server(environ: dict[str, str], output=subprocess.DEVNULL, cwd=None,
                 timeout: float = 300, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """``memeui serve`` in its own process, as users run it: the process and its URL, once it
    answers (RuntimeError if it exits or stays silent for ``timeout`` seconds)."""
    port = port or free_port()
    memeui = Path(sys.executable).parent / "memeui"
    process = subprocess.Popen([str(memeui), "serve", "--port", str(port)], cwd=cwd,
                               env={**os.environ, **environ}, stdout=output,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("memeui serve did not start") from None
            time.sleep(0.5)


@contextmanager
def served(environ: dict[str, str]):
    """The URL of a ``memeui serve`` that stops when the block ends."""
    process, url = start_server({**environ, "MEMEUI_LOG_LEVEL": "WARNING"})
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(turns: int = 200, smollm2_turns: int | None = None, seed: int = 0) -> dict:
    import torch

    smollm2_turns = smollm2_turns or min(8, turns)
    from bench.labels import fresh_data_dir

    settings = Settings.from_env(reply_backend="retrieval")
    engine = Engine.shared(settings)
    engine.warm_up().join()
    texts = messages(5 * turns + CLIENTS, skip=settings.retrieval_conversations)
    turn_latencies(engine, texts[:8])  # warm lazy paths
    retrieval = turn_latencies(engine, texts[8:turns + 8])

    data_dir = fresh_data_dir(settings.data_dir)  # its own store: the data dir's may be held
    with served({"MEMEUI_REPLY_BACKEND": "retrieval", "MEMEUI_DATA_DIR": str(data_dir),
                 "MEMEUI_CHAT_PER_MINUTE": "0"}) as url:  # the clients share one address
        load = http_speedup(url, texts, turns)
    shutil.rmtree(data_dir, ignore_errors=True)

    generator = Engine.shared(Settings.from_env(reply_backend="smollm2", max_new_tokens=40))
    generator.warm_up().join()
    turn_latencies(generator, texts[:1])
    torch.manual_seed(seed)  # generation samples from torch's global generator
    replies: list[str] = []
    smollm2 = turn_latencies(generator, texts[1:smollm2_turns + 1], replies)
    tokenizer = generator.reply_backend.get().tokenizer
    tokens = sum(len(tokenizer(reply, add_special_tokens=False)["input_ids"]) for reply in replies)
    return {
        "retrieval_turn_p50_ms": round(float(np.percentile(retrieval, 50)), 2),
        "retrieval_turn_p95_ms": round(float(np.percentile(retrieval, 95)), 2),
        "smollm2_turn_p50_ms": round(float(np.percentile(smollm2, 50)), 1),
        "smollm2_ms_per_token": round(sum(smollm2) / max(tokens, 1), 1),
        "smollm2_turns": len(smollm2),
        "concurrency_speedup": round(load["speedup"], 2),
        "sequential_turns_per_s": round(load["sequential"], 2),
        "concurrent_turns_per_s": round(load["concurrent"], 2),
        "concurrent_p95_ms": round(float(np.percentile(load["latencies"], 95)), 1),
        "clients": CLIENTS,
        "turns": len(retrieval),
        "cpu": platform.processor() or platform.machine(),
    }
