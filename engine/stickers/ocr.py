"""Text written in stickers, read with RapidOCR (PP-OCRv4, Chinese and English, ONNX models
inside the ``rapidocr-onnxruntime`` wheel: no download)."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from engine.stickers.ingest import on_white

MIN_CONFIDENCE = 0.5


class StickerOCR:
    """Frames → the distinct lines of text they show, in reading order of first appearance."""

    def __init__(self) -> None:
        self._engine = None
        self._lock = threading.Lock()

    def _rapidocr(self):
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            self._engine = RapidOCR()
        return self._engine

    def __call__(self, frames: list[Image.Image]) -> str:
        lines: list[str] = []
        with self._lock:
            for frame in frames:
                result, _ = self._rapidocr()(np.asarray(on_white(frame)))
                for _box, text, confidence in result or []:
                    text = text.strip()
                    if text and float(confidence) >= MIN_CONFIDENCE and text not in lines:
                        lines.append(text)
        return " ".join(lines)
