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


def run(engine, queries: int = 200, knn_vectors: int = 1_000_000, ingest_stickers: int = 200) -> dict:
    """Everything `memeui bench search` prints: query latency, 1M-vector knn, ingest rates."""
    return {**query_latency(engine, queries), **knn_million(knn_vectors),
            **ingest_rates(engine, ingest_stickers)}


def query_latency(engine, queries: int = 200) -> dict:
    started = time.perf_counter()
    engine.live.get()
    engine.emotion.get()
    engine.image_tower.get()
    load_s = time.perf_counter() - started
    for query in QUERIES[:5]:  # warm lazy paths (other texts: the turn cache must not help)
        engine.search(f"warm-up: {query}", 8)
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


def synthetic_vectors(n: int, dim: int = 384, latent: int = 24, noise: bool = True,
                      seed: int = 0, mixing_seed: int = 42) -> np.ndarray:
    """Vectors with well-defined neighbours (DESIGN.md): a 24-d standard normal latent mapped
    by one fixed random 24×dim matrix, plus N(0, 0.05²·24) noise, L2-normalised."""
    mixing = np.random.default_rng(mixing_seed).standard_normal((latent, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks, to bound peak memory
        z = rng.standard_normal((min(100_000, n - start), latent)).astype(np.float32)
        block = z @ mixing
        if noise:
            block += rng.normal(0, 0.05 * np.sqrt(latent), block.shape).astype(np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def knn_million(n: int = 1_000_000, queries: int = 200, k: int = 10) -> dict:
    """The index type the library picks at n vectors, against exact search on the same data."""
    import faiss

    from engine.stickers.index import build_faiss, index_spec, recall_at_k

    vectors = synthetic_vectors(n)
    probes = synthetic_vectors(queries, noise=False, seed=1)
    exact_index = faiss.IndexFlatIP(vectors.shape[1])
    exact_index.add(vectors)
    started = time.perf_counter()
    exact = exact_index.search(probes, k)[1]
    exact_ms = (time.perf_counter() - started) * 1000 / queries
    del exact_index
    spec = index_spec(n, vectors.shape[1])
    started = time.perf_counter()
    index = build_faiss(vectors, spec)
    build_s = time.perf_counter() - started
    latencies = []
    for probe in probes:
        t0 = time.perf_counter()
        index.search(probe[None, :], k)
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "knn_1m_index": spec,
        "knn_1m_p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "knn_1m_p95_ms": round(float(np.percentile(latencies, 95)), 3),
        "knn_1m_recall_at_10": round(recall_at_k(index, vectors, probes, k, exact), 4),
        "knn_1m_build_s": round(build_s, 1),
        "knn_1m_exact_ms_per_query": round(exact_ms, 1),
        "knn_1m_vectors": n,
    }


def ingest_rates(engine, stickers: int = 200, ocr_stickers: int = 40) -> dict:
    """Stickers per second into a pack, from real pack images, without and with OCR."""
    import shutil
    import tempfile
    from pathlib import Path

    from engine.stickers.ingest import build_pack

    sources = [s.path for s in engine.live.get().library.stickers[:stickers]]
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, count, ocr in (("ingest_per_s", len(sources), None),
                                 ("ingest_ocr_per_s", min(ocr_stickers, len(sources)), engine.ocr)):
            folder = Path(tmp) / name
            folder.mkdir()
            for path in sources[:count]:
                shutil.copy(path, folder / path.name)
            started = time.perf_counter()
            report = build_pack(folder, Path(tmp) / f"{name}-pack", name, ocr=ocr)
            rates[name] = round(len(report.added) / (time.perf_counter() - started), 1)
    return rates
