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
from dataclasses import dataclass
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

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product (cosine, as vectors are normalised) top-k: (scores, rows)."""
        k = min(k, self.index.ntotal)
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def index_key(library_fingerprint: str, encoder_name: str) -> str:
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_name)[-48:]
    return f"{safe_name}-{library_fingerprint}"


def open_or_build(
    root: Path,
    key: str,
    stickers: list,
    encode: Callable[[list[str]], np.ndarray],
    estimate_emotions: Callable[[list], tuple[list[str], np.ndarray]],
    previous: StickerIndex | None = None,
) -> StickerIndex:
    """Load version ``key`` from ``root``, building and saving it first if it is missing.

    Stickers already in ``previous`` (same encoder) keep their vectors and emotions, so adding
    a pack embeds only the new stickers.
    """
    folder = root / key
    if not (folder / "manifest.json").is_file():
        started = time.perf_counter()
        vectors, labels, emotions = _features(stickers, encode, estimate_emotions, previous)
        _write_version(folder, key, [s.id for s in stickers], vectors, labels, emotions)
        log.info("built index %s (%d stickers) in %.1fs", key, len(stickers),
                 time.perf_counter() - started)
    return _read_version(folder)


def _features(stickers, encode, estimate_emotions, previous):
    known = {} if previous is None else {sid: row for row, sid in enumerate(previous.sticker_ids)}
    new = [s for s in stickers if s.id not in known]
    labels, new_emotions = estimate_emotions(new)
    if previous is not None and known and previous.emotion_labels != labels:
        known, new = {}, list(stickers)  # the label scheme changed: estimate everything anew
        labels, new_emotions = estimate_emotions(new)
    new_vectors = encode([s.text() for s in new])
    new_rows = {s.id: i for i, s in enumerate(new)}
    dim = new_vectors.shape[1]
    vectors = np.zeros((len(stickers), dim), dtype=np.float32)
    emotions = np.zeros((len(stickers), len(labels)), dtype=np.float32)
    for row, sticker in enumerate(stickers):
        if sticker.id in new_rows:
            vectors[row], emotions[row] = new_vectors[new_rows[sticker.id]], new_emotions[new_rows[sticker.id]]
        else:
            old = known[sticker.id]
            vectors[row] = previous.index.reconstruct(old)
            emotions[row] = previous.emotions[old]
    return vectors, labels, emotions


def _write_version(folder, key, sticker_ids, vectors, labels, emotions) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(staging / "index.faiss"))
    np.save(staging / "emotions.npy", emotions.astype(np.float32))
    manifest = {"key": key, "sticker_ids": sticker_ids, "emotion_labels": labels,
                "dim": int(vectors.shape[1]), "index_type": "Flat"}
    (staging / "manifest.json").write_text(json.dumps(manifest))
    try:
        os.rename(staging, folder)
    except OSError:  # another process built the same version first: theirs is as good
        shutil.rmtree(staging, ignore_errors=True)


def _read_version(folder: Path) -> StickerIndex:
    manifest = json.loads((folder / "manifest.json").read_text())
    return StickerIndex(
        key=manifest["key"],
        sticker_ids=manifest["sticker_ids"],
        index=faiss.read_index(str(folder / "index.faiss")),
        emotions=np.load(folder / "emotions.npy"),
        emotion_labels=manifest["emotion_labels"],
    )
