"""An index version: sticker vectors in faiss plus the sticker emotions, immutable on disk.

A version lives in ``<data_dir>/index/<key>/`` where the key names the library content and the
encoder, so a changed pack or encoder builds a new version and an unchanged one loads in
milliseconds. Versions are written to a temporary folder and renamed into place, so a crash never
leaves a half-written version behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class StickerIndex:
    """Rows of the faiss index are the library's stickers, in library order."""

    key: str
    sticker_ids: list[str]
    index: faiss.Index
    emotions: np.ndarray  # (n_stickers, n_labels) distributions
    emotion_labels: list[str]
    images: np.ndarray | None = None  # (n_stickers, d) image-tower vectors, if a tower is set
    index_type: str = "Flat"
    recall_at_10: float | None = None  # against exact search; None for an exact index
    signatures: list[str] = field(default_factory=list)  # Sticker.signature() per row
    reader: str = ""  # the sticker emotion model that read the emotions ("": the bundled reader)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product (cosine, as vectors are normalised) top-k: (scores, rows)."""
        k = min(k, self.index.ntotal)
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


FLAT_MAX = 10_000  # exact search is fast enough below this many stickers
HNSW_MAX = 500_000  # graph search up to here; IVF-PQ (compressed, memory-light) beyond
MMAP_BYTES = 256 * 1024 * 1024  # index files larger than this are memory-mapped, not read
RECALL_SAMPLE = 200


def index_spec(n: int, dim: int) -> str:
    """The faiss factory string for a collection of n vectors (autofaiss' rule of thumb)."""
    if n <= FLAT_MAX:
        return "Flat"
    if n <= HNSW_MAX:
        return "HNSW32,Flat"
    nlist = 4096 if n < 4_000_000 else 16384
    return f"IVF{nlist},PQ{dim // 8}x4fs,RFlat"


def build_faiss(vectors: np.ndarray, spec: str, train_sample: int = 200_000,
                seed: int = 0) -> faiss.Index:
    """An inner-product index of ``spec`` over ``vectors``, trained and tuned for search."""
    index = faiss.index_factory(vectors.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rows = np.random.default_rng(seed).choice(len(vectors), min(train_sample, len(vectors)),
                                                  replace=False)
        index.train(vectors[np.sort(rows)])
    index.add(vectors)
    tune(index)
    return index


def tune(index: faiss.Index, nprobe: int = 256, ef_search: int = 128, k_factor: int = 32) -> None:
    """Search-time knobs: more probes / a wider beam buy recall with time."""
    try:
        faiss.extract_index_ivf(index).nprobe = nprobe
    except RuntimeError:
        pass  # not an IVF index
    hnsw = faiss.downcast_index(index)
    if hasattr(hnsw, "hnsw"):
        hnsw.hnsw.efSearch = ef_search
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = k_factor


def recall_at_k(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int = 10,
                exact: np.ndarray | None = None) -> float:
    """Share of the exact top-k that the index returns, averaged over the queries."""
    if exact is None:
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        exact = flat.search(queries, k)[1]
    found = index.search(queries, k)[1]
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact)]))


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """Move Flat and IVF indexes to the GPU when faiss-gpu and a CUDA device are present."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    if "HNSW" in type(faiss.downcast_index(index)).__name__:
        return index  # faiss has no GPU HNSW; the CPU graph is fast already
    try:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    except RuntimeError as error:
        log.warning("keeping the index on the CPU: %s", error)
        return index


def index_key(library_fingerprint: str, encoder_name: str, image_tower: str = "none") -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{encoder_name}-{image_tower}")[-64:]
    return f"{safe}-{library_fingerprint}"


def open_or_build(
    root: Path,
    key: str,
    stickers: list,
    encode: Callable[[list[str]], np.ndarray],
    estimate_emotions: Callable[[list, np.ndarray], tuple[list[str], np.ndarray]],
    previous: StickerIndex | None = None,
    encode_images: Callable[[list], np.ndarray] | None = None,
    reader: str = "",
    describe: Callable = lambda sticker: sticker.text(),
) -> StickerIndex:
    """Load version ``key`` from ``root``, building and saving it first if it is missing.

    Stickers already in ``previous`` (same encoder) keep their vectors and emotions, so adding
    a pack embeds only the new stickers.
    """
    folder = root / key
    if not (folder / "manifest.json").is_file():
        started = time.perf_counter()
        vectors, labels, emotions, images = _features(stickers, encode, estimate_emotions,
                                                      encode_images, previous, reader, describe)
        _write_version(folder, key, [s.id for s in stickers], vectors, labels, emotions, images,
                       previous, [s.signature() for s in stickers], reader)
        log.info("built index %s (%d stickers) in %.1fs", key, len(stickers),
                 time.perf_counter() - started)
    return _read_version(folder)


def _can_reconstruct(previous: StickerIndex | None) -> bool:
    if previous is None or previous.index.ntotal == 0:
        return False
    try:
        previous.index.reconstruct(0)
        return True
    except RuntimeError:  # e.g. a GPU index: embed everything again
        return False


def _features(stickers, encode, estimate_emotions, encode_images, previous, reader="",
              describe: Callable = lambda sticker: sticker.text()):
    """Vectors, pictures and emotions of ``stickers``. What ``previous`` holds is reused: text
    vectors while a sticker's signature is unchanged, pictures while its id is, emotions while
    both its signature and the emotion reader are."""
    reusable = _can_reconstruct(previous)
    old_rows = {sid: row for row, sid in enumerate(previous.sticker_ids)} if reusable else {}
    old_signatures = previous.signatures if reusable else []
    signatures = {s.id: s.signature() for s in stickers}
    same_text = {sid: row for sid, row in old_rows.items()
                 if row < len(old_signatures) and old_signatures[row] == signatures.get(sid)}

    def merged(fresh: list, new_block: np.ndarray, reused: dict, old_row) -> np.ndarray:
        rows = {s.id: i for i, s in enumerate(fresh)}
        out = np.zeros((len(stickers), new_block.shape[1]), dtype=np.float32)
        for row, sticker in enumerate(stickers):
            out[row] = new_block[rows[sticker.id]] if sticker.id in rows \
                else old_row(reused[sticker.id])
        return out

    fresh = [s for s in stickers if s.id not in same_text]
    vectors = merged(fresh, encode([describe(s) for s in fresh]), same_text,
                     previous.index.reconstruct if same_text else None)
    images = None
    if encode_images is not None:
        pictured = old_rows if reusable and previous.images is not None else {}
        unpictured = [s for s in stickers if s.id not in pictured]
        images = merged(unpictured, encode_images(unpictured), pictured,
                        lambda row: previous.images[row])
    same_reading = same_text if previous is not None and previous.reader == reader else {}
    unread = [row for row, s in enumerate(stickers) if s.id not in same_reading]
    labels, read = estimate_emotions([stickers[row] for row in unread], vectors[unread])
    if same_reading and previous.emotion_labels != labels:  # the label scheme changed
        same_reading, unread = {}, list(range(len(stickers)))
        labels, read = estimate_emotions(list(stickers), vectors)
    emotions = merged([stickers[row] for row in unread], read, same_reading,
                      lambda row: previous.emotions[row])
    return vectors, labels, emotions, images


def grown(previous: StickerIndex | None, sticker_ids: list[str], vectors: np.ndarray,
          spec: str) -> faiss.Index | None:
    """The previous version's index with the new stickers added, when the new version only
    appends stickers and keeps the index type: a trained IVF keeps its centroids and codebooks,
    an HNSW graph grows. None when it must be built anew (a Flat index costs nothing to build)."""
    if previous is None or spec == "Flat" or previous.index_type != spec:
        return None
    old = len(previous.sticker_ids)
    if sticker_ids[:old] != previous.sticker_ids or previous.index.ntotal != old:
        return None
    try:
        index = faiss.clone_index(previous.index)
    except RuntimeError:  # e.g. a GPU or memory-mapped index: build anew
        return None
    index.add(vectors[old:])
    tune(index)
    return index


def _write_version(folder, key, sticker_ids, vectors, labels, emotions, images,
                   previous=None, signatures=(), reader="") -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    spec = index_spec(len(vectors), vectors.shape[1])
    index = grown(previous, sticker_ids, vectors, spec)
    built_from = previous.key if index is not None else None
    index = index if index is not None else build_faiss(vectors, spec)
    recall = None
    if spec != "Flat":  # every approximate index reports what it loses against exact search
        sample = vectors[np.random.default_rng(0).choice(len(vectors), RECALL_SAMPLE, replace=False)]
        recall = recall_at_k(index, vectors, sample)
    faiss.write_index(index, str(staging / "index.faiss"))
    np.save(staging / "emotions.npy", emotions.astype(np.float32))
    if images is not None:
        np.save(staging / "images.npy", images.astype(np.float32))
    manifest = {"key": key, "sticker_ids": sticker_ids, "emotion_labels": labels,
                "dim": int(vectors.shape[1]), "index_type": spec, "recall_at_10": recall,
                "grown_from": built_from, "signatures": list(signatures), "reader": reader}
    (staging / "manifest.json").write_text(json.dumps(manifest))
    try:
        os.rename(staging, folder)
    except OSError:  # another process built the same version first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)


def read_index(path: Path) -> faiss.Index:
    """Large index files are memory-mapped, so the OS pages in only what searches touch."""
    if path.stat().st_size > MMAP_BYTES:
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            tune(index)
            return index
        except RuntimeError as error:
            log.info("memory-mapping %s failed (%s); reading it", path, error)
    index = faiss.read_index(str(path))
    tune(index)
    return index


def prune(root: Path, keep: set[str], spare: int = 2, stale_staging_s: float = 3600) -> list[str]:
    """Delete old index versions: all but ``keep`` and the ``spare`` most recently opened
    others (another process or a rollback may want them), plus staging folders left by a
    build that died. Searches still holding a deleted version keep working: its index is in
    memory, or memory-mapped from a file the OS keeps until it is closed."""
    if not root.is_dir():
        return []
    versions = sorted((p for p in root.iterdir() if (p / "manifest.json").is_file()
                       and p.name not in keep),
                      key=lambda p: (p / "manifest.json").stat().st_mtime, reverse=True)
    now = time.time()
    staging = [p for p in root.iterdir() if p.name.startswith(".")
               and now - p.stat().st_mtime > stale_staging_s]
    removed = []
    for folder in versions[spare:] + staging:
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    if removed:
        log.info("removed old index versions: %s", ", ".join(removed))
    return removed


def _read_version(folder: Path) -> StickerIndex:
    os.utime(folder / "manifest.json")  # "recently opened", for prune()
    manifest = json.loads((folder / "manifest.json").read_text())
    return StickerIndex(
        key=manifest["key"],
        sticker_ids=manifest["sticker_ids"],
        index=to_gpu_if_available(read_index(folder / "index.faiss")),
        emotions=np.load(folder / "emotions.npy"),
        emotion_labels=manifest["emotion_labels"],
        images=np.load(folder / "images.npy") if (folder / "images.npy").is_file() else None,
        index_type=manifest.get("index_type", "Flat"),
        recall_at_10=manifest.get("recall_at_10"),
        signatures=manifest.get("signatures", []),
        reader=manifest.get("reader", ""),
    )
