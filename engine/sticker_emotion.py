"""The sticker emotion model and its recipe: people's sticker-emotion labels → a head that reads
every sticker's emotion from what the engine knows of it.

Features per sticker (``sticker_features``): its text embedding (label, tags, OCR text), its
picture in the image tower's space, and the bundled reader's Ekman-7 reading (the recognizer
mixed with the nade lexicon). The head is a multinomial logistic regression on
those features, on top of the bundled reading (its log is the head's offset, so a head that
learned nothing reads as the bundled reader does); ``fit`` trains it on the labelled stickers
of a Parquet snapshot, keeping one
labelled sticker in five (by a hash of its id) out as the held-out slice, and measures both the
candidate and the reader it would replace on that slice and on the project's labelled stickers
(``assets/labels/sticker_emotions.csv``, the role's fixed public check) not used in training.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from engine.labels import EKMAN7
from engine.snapshot import emotion_labels, held_out, scores
PUBLIC_CHECK = Path(__file__).resolve().parent.parent / "assets" / "labels" / "sticker_emotions.csv"
HEAD_FILE = "head.npz"


class StickerEmotionHead:
    """Ekman-7 from sticker features; what a promoted sticker-emotion version serves."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, mean: np.ndarray,
                 scale: np.ndarray) -> None:
        self.weights, self.bias, self.mean, self.scale = weights, bias, mean, scale

    @classmethod
    def load(cls, folder: Path) -> "StickerEmotionHead":
        data = np.load(Path(folder) / HEAD_FILE)
        return cls(data["weights"], data["bias"], data["mean"], data["scale"])

    def save(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        np.savez(Path(folder) / HEAD_FILE, weights=self.weights, bias=self.bias, mean=self.mean,
                 scale=self.scale)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The bundled reading's log (the last columns of the features) plus the correction."""
        offset = np.log(features[:, -len(EKMAN7):] + 1e-4)
        return offset + ((features - self.mean) / self.scale) @ self.weights + self.bias

    def predict(self, features: np.ndarray) -> np.ndarray:
        logits = self.logits(features)
        logits -= logits.max(axis=1, keepdims=True)
        odds = np.exp(logits)
        return (odds / odds.sum(axis=1, keepdims=True)).astype(np.float32)


def sticker_features(text_vectors: np.ndarray, image_vectors: np.ndarray | None,
                     readings: np.ndarray) -> np.ndarray:
    """One row per sticker: text embedding, picture embedding (if a tower is set), reading."""
    parts = [text_vectors] + ([image_vectors] if image_vectors is not None else []) + [readings]
    return np.concatenate(parts, axis=1).astype(np.float32)


def people_labels(snapshot: Path) -> dict[str, str]:
    """Sticker id → the majority Ekman-7 label of its annotators, from a snapshot."""
    return emotion_labels(snapshot, "sticker_emotion")


def public_labels(path: Path = PUBLIC_CHECK) -> dict[str, str]:
    with Path(path).open(encoding="utf-8", newline="") as file:
        return {row["id"]: row["emotion"] for row in csv.DictReader(file)}


L2 = 0.01  # weight decay of the correction: more labels, more room to move off the reading
STEPS = 300
LEARNING_RATE = 0.5


def train_head(head: StickerEmotionHead, x: np.ndarray, y: np.ndarray, l2: float,
               progress) -> None:
    """Full-batch gradient descent on the softmax cross-entropy of ``head`` (a convex problem:
    a few hundred steps on a few hundred stickers take well under a second)."""
    targets = np.eye(len(EKMAN7), dtype=np.float32)[y]
    standardized = (x - head.mean) / head.scale
    for step in range(1, STEPS + 1):
        logits = head.logits(x)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        gradient = (p - targets) / len(y)
        head.weights -= LEARNING_RATE * (standardized.T @ gradient + l2 * head.weights)
        head.bias -= LEARNING_RATE * gradient.sum(axis=0)
        if step % 30 == 0:
            loss = float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-9)))
            progress(0.2 + 0.6 * step / STEPS, f"step {step}/{STEPS}", loss=round(loss, 4))


def fit(args: dict, out: Path, progress) -> dict:
    """The recipe. ``args``: ``snapshot`` (folder), ``features`` (an .npz with ``ids``,
    ``features``, ``readings`` written by the engine), ``base`` (a head folder or "")."""
    progress(0.05, "reading the labels and the sticker features")
    data = np.load(args["features"], allow_pickle=False)
    ids = [str(i) for i in data["ids"]]
    row = {sticker_id: i for i, sticker_id in enumerate(ids)}
    features, readings = data["features"], data["readings"]
    labels = {k: v for k, v in people_labels(Path(args["snapshot"])).items() if k in row}
    train = [k for k in labels if not held_out(k)]
    holdout = [k for k in labels if held_out(k)]
    if len({labels[k] for k in train}) < 2:
        raise ValueError(f"{len(train)} labelled stickers for training, of fewer than two "
                         "emotions: label more first")
    progress(0.2, f"fitting on {len(train)} labelled stickers ({len(holdout)} held out)")
    x = features[[row[k] for k in train]]
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    y = np.array([EKMAN7.index(labels[k]) for k in train])
    head = StickerEmotionHead(np.zeros((features.shape[1], len(EKMAN7)), dtype=np.float32),
                              np.zeros(len(EKMAN7), dtype=np.float32), mean.astype(np.float32),
                              scale.astype(np.float32))
    train_head(head, x, y, float(args.get("l2", L2)), progress)
    progress(0.8, "measuring the candidate and the live reader")
    base = StickerEmotionHead.load(args["base"]).predict(features) if args.get("base") else readings
    candidate = head.predict(features)
    public = {k: v for k, v in public_labels().items() if k in row and k not in train}

    def measured(predictions: np.ndarray) -> dict:
        result = {}
        for name, gold in (("holdout", {k: labels[k] for k in holdout}), ("public", public)):
            keys = list(gold)
            result[name] = scores(predictions[[row[k] for k in keys]].argmax(axis=1),
                                  np.array([EKMAN7.index(gold[k]) for k in keys], dtype=int))
        return result

    head.save(out)
    metrics = {"candidate": measured(candidate), "live": measured(base),
               "train": len(train), "holdout": len(holdout)}
    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    progress(1.0, "done")
    return metrics
