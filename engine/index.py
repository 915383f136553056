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
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self.index.reconstruct(int(row)) for row in rows])


def index_key(library_fingerprint: str, encoder_name: str) -> str:
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_name)[-48:]
    return f"{safe_name}-{library_fingerprint}"


def open_or_build(
    root: Path,
    key: str,
    sticker_ids: list[str],
    texts: list[str],
    encode: Callable[[list[str]], np.ndarray],
    estimate_emotions: Callable[[list[str]], tuple[list[str], np.ndarray]],
) -> StickerIndex:
    """Load version ``key`` from ``root``, building and saving it first if it is missing."""
    folder = root / key
    if not (folder / "manifest.json").is_file():
        started = time.perf_counter()
        vectors = encode(texts)
        labels, emotions = estimate_emotions(texts)
        _write_version(folder, key, sticker_ids, vectors, labels, emotions)
        log.info("built index %s (%d stickers) in %.1fs", key, len(texts),
                 time.perf_counter() - started)
    return _read_version(folder)


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
