"""Text written in stickers, read with RapidOCR (PP-OCRv4, Chinese and English, ONNX models
inside the ``rapidocr-onnxruntime`` wheel: no download)."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

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
                result, _ = self._rapidocr()(on_white(frame))
                for _box, text, confidence in result or []:
                    text = text.strip()
                    if text and float(confidence) >= MIN_CONFIDENCE and text not in lines:
                        lines.append(text)
        return " ".join(lines)


def on_white(frame: Image.Image) -> np.ndarray:
    """RGB pixels with transparency flattened onto white (OCR models expect opaque images)."""
    background = Image.new("RGBA", frame.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(background, frame.convert("RGBA")).convert("RGB"))
