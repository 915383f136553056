"""Image towers by name: sticker pictures → vectors comparable with dialogue text (IEF's QI).

- ``lit`` (default, offline): a small CNN the project trains itself, LiT-style: the text
  encoder stays frozen and the CNN learns to map each pack image onto the text embedding of
  its own annotations (``memeui train image-tower``; weights in ``assets/models/``).
- ``open_clip:MODEL[:PRETRAINED]``: any open_clip model with a pretrained tag, a local
  checkpoint path, or ``local-dir:``/``hf-hub:`` names (the Hub needs network; on Spaces use
  ``preload_from_hub``). Dialogue text then goes through the CLIP text tower.
- ``none``: no image side.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine import gpu
from engine.stickers.ingest import Limits, decode, on_white
from engine.metrics import in_share
from engine.paths import LIT_WEIGHTS

log = logging.getLogger(__name__)
LIT_SIZE = 64


def sticker_frames(path: Path, max_frames: int = 4) -> list[Image.Image]:
    """The frames a tower sees: the still, or the quartile frames of an animation."""
    return decode(path.name, path.read_bytes(), Limits()).frames[:max_frames]


class LitCNN(torch.nn.Module):
    """Four strided conv blocks and a linear head into the text embedding space."""

    def __init__(self, dim: int, width: int = 32) -> None:
        super().__init__()
        layers, channels = [], 3
        for out in (width, width * 2, width * 4, width * 8):
            layers += [torch.nn.Conv2d(channels, out, 3, stride=2, padding=1),
                       torch.nn.BatchNorm2d(out), torch.nn.ReLU(inplace=True)]
            channels = out
        self.features = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten())
        self.head = torch.nn.Linear(channels, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.head(self.features(pixels)), dim=-1)


def to_tensor(images: list[Image.Image], size: int = LIT_SIZE) -> torch.Tensor:
    arrays = np.stack([np.asarray(on_white(image, size), dtype=np.float32) / 255.0
                       for image in images])
    return torch.from_numpy((arrays - 0.5) / 0.25).permute(0, 3, 1, 2).contiguous()


class TowerMismatch(ValueError):
    """An image tower trained for another text encoder than the engine's."""


class LitTower:
    """The project's own image tower; the query side is the engine's text encoder."""

    def __init__(self, text_encoder, weights: Path = LIT_WEIGHTS, device: str = "cpu") -> None:
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing: run `memeui train image-tower`")
        saved = torch.load(weights, weights_only=True, map_location="cpu")
        if saved["text_encoder"] != text_encoder.name:
            raise TowerMismatch(f"{weights.name} was trained for the {saved['text_encoder']!r} "
                                f"text encoder, not {text_encoder.name!r}: train one for it with "
                                "`memeui train image-tower --out FILE` and set "
                                "MEMEUI_IMAGE_TOWER=lit:FILE")
        self.name = f"lit-{saved['digest']}"
        self.text_encoder = text_encoder
        self.model = LitCNN(saved["dim"], saved["width"])
        self.model.load_state_dict({k: v.float() for k, v in saved["state"].items()})
        self.model.to(device).eval()
        self.device = device
        self.on_gpu = device.startswith("cuda")  # each batch of pictures a GPU task
        self.dim = saved["dim"]
        self._lock = threading.Lock()

    def encode_images(self, frame_lists: list[list[Image.Image]]) -> np.ndarray:
        """One vector per sticker: the mean of its frames' vectors, normalised."""
        flat = [frame for frames in frame_lists for frame in frames]
        with self._lock:
            vectors = np.concatenate([gpu.run(self, "pixel_vectors", to_tensor(flat[i:i + 256]).numpy())
                                      for i in range(0, len(flat), 256)]) if flat else \
                np.zeros((0, self.dim), np.float32)
        return _mean_per_sticker(vectors, [len(frames) for frames in frame_lists])

    def pixel_vectors(self, pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(pixels).to(self.device)).float().cpu().numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.text_encoder.encode(texts)


class OpenClipTower:
    """Any open_clip model; pictures through its image tower, text through its text tower."""

    def __init__(self, model_name: str, pretrained: str | None, device: str = "cpu") -> None:
        import open_clip

        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.model.eval()
        self.device = device
        self.on_gpu = device.startswith("cuda")
        self.name = f"open_clip-{model_name}-{pretrained or 'random'}".replace("/", "_")
        self.dim = int(gpu.run(self, "token_vectors", self.tokenizer(["x"]).numpy()).shape[-1])
        self._lock = threading.Lock()

    def encode_images(self, frame_lists: list[list[Image.Image]]) -> np.ndarray:
        flat = [frame for frames in frame_lists for frame in frames]
        if not flat:
            return np.zeros((0, self.dim), np.float32)
        pixels = torch.stack([self.preprocess(on_white(f)) for f in flat]).numpy()
        with self._lock:
            vectors = gpu.run(self, "pixel_vectors", pixels)
        return _mean_per_sticker(vectors, [len(frames) for frames in frame_lists])

    def pixel_vectors(self, pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.encode_image(torch.from_numpy(pixels).to(self.device)).float().cpu().numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return _normalise(gpu.run(self, "token_vectors", self.tokenizer(texts).numpy()))

    def token_vectors(self, tokens: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.encode_text(torch.from_numpy(tokens).to(self.device)).float().cpu().numpy()


def encode_sticker_images(tower, stickers) -> np.ndarray:
    """Image vectors of stickers; one that cannot be decoded any more gets a zero vector."""
    frame_lists, broken = [], []
    for row, sticker in enumerate(stickers):
        try:
            frame_lists.append(sticker_frames(sticker.path))
        except (OSError, ValueError) as error:
            log.warning("no image vector for %s: %s", sticker.path, error)
            frame_lists.append([Image.new("RGBA", (LIT_SIZE, LIT_SIZE))])
            broken.append(row)
    vectors = tower.encode_images(frame_lists) if frame_lists else np.zeros((0, tower.dim), np.float32)
    vectors[broken] = 0.0
    return vectors


def _mean_per_sticker(vectors: np.ndarray, counts: list[int]) -> np.ndarray:
    starts = np.cumsum([0] + counts[:-1])
    means = np.stack([vectors[s:s + c].mean(axis=0) for s, c in zip(starts, counts)]) \
        if counts else vectors
    return _normalise(means)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def tower_file(text_encoder_name: str) -> Path:
    """Where `memeui train image-tower` writes the tower of a text encoder by default."""
    if text_encoder_name == "minilm":
        return LIT_WEIGHTS
    return LIT_WEIGHTS.with_name(f"{LIT_WEIGHTS.stem}-{text_encoder_name.replace('/', '_')}.pt")


def bundled_tower(text_encoder_name: str) -> Path:
    """The tower ``lit`` loads for a text encoder: its own file, else MiniLM's (which then
    reports the mismatch)."""
    own = tower_file(text_encoder_name)
    return own if own.is_file() else LIT_WEIGHTS


def create_image_tower(name: str, text_encoder, device: str = "cpu"):
    """``none`` → None; ``lit`` (the bundled weights of the text encoder) or ``lit:FILE``;
    ``open_clip:MODEL[:PRETRAINED]``."""
    if name == "none":
        return None
    if name == "lit" or name.startswith("lit:"):
        weights = Path(name[4:]) if name.startswith("lit:") else bundled_tower(text_encoder.name)
        return LitTower(text_encoder, weights, device)
    if name.startswith("open_clip:"):
        _, model_name, *pretrained = name.split(":", 2)
        return OpenClipTower(model_name, pretrained[0] if pretrained else None, device)
    raise ValueError(f"unknown image tower {name!r}: use lit, lit:FILE, none or "
                     "open_clip:MODEL[:PRETRAINED]")


# ---------------------------------------------------------------- training the LiT tower


@dataclass
class TowerReport:
    heldout_recall_at_10: float
    heldout_stickers: int
    train_stickers: int
    epochs: int
    seconds: float


STICKERS_HELD_OUT = 0.1  # a stable 10 % of stickers, by id, never seen in training


def train_lit_tower(stickers, text_encoder, out: Path = LIT_WEIGHTS, epochs: int = 60,
                    width: int = 32, seed: int = 0, progress=log.info,
                    chinese: bool = False) -> TowerReport:
    """Fit the CNN so each pack image lands on its annotation's text embedding (InfoNCE with
    the frozen text vectors of the batch as negatives); report held-out image→label recall@10
    against the labels of every sticker. ``chinese``: the annotations in both languages, as a
    multilingual encoder's index reads them."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    texts = text_encoder.encode([s.text(chinese=chinese) for s in stickers])
    images = [to_tensor(sticker_frames(s.path)[:1])[0] for s in stickers]
    test = np.array([in_share(s.id, STICKERS_HELD_OUT) for s in stickers])
    train_rows = np.flatnonzero(~test)
    model = LitCNN(texts.shape[1], width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs)
    targets = torch.from_numpy(texts)
    pixels = torch.stack(images)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        model.train()
        for batch in np.array_split(rng.permutation(train_rows), max(1, len(train_rows) // 128)):
            batch_pixels = augment(pixels[batch])
            logits = model(batch_pixels) @ targets[batch].T / 0.05
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        schedule.step()
        if (epoch + 1) % 10 == 0:
            progress(f"epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}")
    model.eval()
    with torch.inference_mode():
        vectors = model(pixels[test]).numpy()
    recall = recall_at_10(vectors, texts, np.flatnonzero(test))
    digest = hashlib.sha256(str(sorted(s.id for s in stickers)).encode()).hexdigest()[:8]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": {k: v.half() for k, v in model.state_dict().items()},
                "dim": texts.shape[1], "width": width, "text_encoder": text_encoder.name,
                "digest": digest, "heldout_recall_at_10": recall}, out)
    return TowerReport(round(100 * recall, 2), int(test.sum()), len(train_rows), epochs,
                       round(time.perf_counter() - started, 1))


def augment(pixels: torch.Tensor) -> torch.Tensor:
    """Random flips, shifts and brightness: the tower must not memorise exact pixels."""
    flipped = torch.where(torch.rand(len(pixels), 1, 1, 1) < 0.5, pixels.flip(-1), pixels)
    shift = [int(v) for v in torch.randint(-6, 7, (2,))]
    shifted = torch.roll(flipped, shifts=shift, dims=(-2, -1))
    return shifted * (0.8 + 0.4 * torch.rand(len(pixels), 1, 1, 1))


def recall_at_10(image_vectors: np.ndarray, text_vectors: np.ndarray, rows: np.ndarray) -> float:
    """Share of images whose own annotation is among the 10 nearest of all sticker texts."""
    similarity = image_vectors @ text_vectors.T
    top = np.argsort(-similarity, axis=1)[:, :10]
    return float(np.mean([row in hits for row, hits in zip(rows, top)])) if len(rows) else 0.0
