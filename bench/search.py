"""Text-query sticker search end to end on the configured packs (encode, faiss, re-rank)."""

from __future__ import annotations

import platform
import time

import numpy as np

QUERIES = [
    "I am so happy today", "I just failed my exam", "good morning!", "that's hilarious",
    "I'm so tired of this", "happy birthday my friend", "I miss you so much", "what?! no way",
    "this makes me angry", "let's grab some pizza", "I'm scared of the dark", "congratulations",
    "thank you so much", "ugh, mondays", "see you tomorrow", "I love you", "that is disgusting",
    "I can't stop laughing", "I'm nervous about the interview", "good night, sleep well",
    "we won the game!", "my cat is sick", "it's raining again", "coffee time", "so bored",
    "you are the best", "oops, my bad", "I'm thinking about it", "party tonight!", "sorry",
]


def run(engine, queries: int = 200) -> dict:
    started = time.perf_counter()
    engine.live.get()
    engine.emotion.get()
    load_s = time.perf_counter() - started
    for query in QUERIES[:5]:  # warm caches and lazy paths
        engine.search(query, 8)
    latencies = []
    for i in range(queries):
        query = QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" #{i}")
        t0 = time.perf_counter()
        engine.search(query, 8)
        latencies.append((time.perf_counter() - t0) * 1000.0)
    ms = np.array(latencies)
    return {
        "benchmark": "search",
        "query_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "query_p95_ms": round(float(np.percentile(ms, 95)), 2),
        "query_mean_ms": round(float(ms.mean()), 2),
        "queries": queries,
        "k": 8,
        "stickers": len(engine.live.get().library),
        "text_encoder": engine.settings.text_encoder,
        "load_s": round(load_s, 2),
        "device": engine.device,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
    }
