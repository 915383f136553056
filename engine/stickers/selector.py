"""The learned part of sticker selection: fusion weights, a text adapter and sticker priors.

score(dialogue, sticker) = w_text · cos(dialogue, sticker text)      (IEF's query↔caption)
                         + w_emotion · fit(mood, sticker emotion)    (PBR's emotion awareness)
                         + adapter(dialogue n-grams) · sticker text  (learned from choices)
                         + bias[sticker]                             (how often people pick it)

Untrained, the adapter and biases are zero and the score is the zero-shot fusion the engine
uses with the weights from settings. ``fit`` learns the fusion weights, the adapter and the
biases from (dialogue, chosen sticker) pairs with a softmax over the
chosen sticker and its negatives: semantically similar stickers and stickers of the opposite
sentiment (PBR's hard negatives), or every candidate when there are few.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.metrics import macro_f1
from engine.schemes import EKMAN7, ekman_compatibility

log = logging.getLogger(__name__)
SELECTOR_FORMAT = 6  # bump when saved selectors change shape, so caches are not misread
BUCKETS = 2**18  # hashed word and character n-grams (fastText's trick, fewer buckets)
NGRAM_DIM = 48
TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
POSITIVE = {"joy", "trust", "anticipation"}
NEGATIVE = {"anger", "disgust", "fear", "sadness"}
PATIENCE = 2  # epochs without held-out improvement before training stops
COMPATIBILITY = ekman_compatibility()
MAX_TUNED_STICKERS = 256  # per-sticker offsets are tuned only for closed, small candidate sets


def ngram_ids(text: str) -> list[int]:
    """Stable bucket ids of a text's words, word bigrams and character 3–5-grams."""
    words = TOKEN.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    for word in words:
        padded = f"<{word}>"
        grams += [padded[i:i + n] for n in (3, 4, 5) for i in range(len(padded) - n + 1)]
    return [zlib.crc32(gram.encode()) % BUCKETS for gram in grams] or [0]


@dataclass
class FitReport:
    epochs: int
    seconds: float
    holdout_macro_f1: float
    examples: int
    parts: list[str]  # the score parts the kept variant uses


class Selector:
    """Scores candidate stickers for dialogues; see the module docstring for the formula."""

    def __init__(self, emotion_weight: float = 0.3, image_weight: float = 0.0,
                 usage_weight: float = 0.0, text_weight: float = 1.0) -> None:
        self.w_text = text_weight
        self.w_emotion = emotion_weight
        self.w_image = image_weight
        self.w_usage = usage_weight
        self.adapter = None  # torch module after fit
        self.bias: dict[str, float] = {}
        self.threshold: float | None = None  # learned from "no sticker" answers, else settings

    @property
    def trained(self) -> bool:
        return self.adapter is not None

    def score_parts(self, texts: list[str], text_similarity: np.ndarray, moods: np.ndarray,
                    sticker_ids: list[str], sticker_emotions: np.ndarray,
                    sticker_vectors: Callable[[], np.ndarray],
                    dialogue_vectors: Callable[[], np.ndarray] = lambda: None,
                    image_similarity: np.ndarray | None = None,
                    usage: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each term of the score, (n_dialogues, n_stickers) each: why a sticker ranks where it
        does. The vectors are asked for only when the learned adapter needs them. ``usage``:
        each sticker's usage prior (engine/stickers/usage.py)."""
        parts = {"text": text_similarity, "emotion": emotion_fit(moods, sticker_emotions)}
        if image_similarity is not None:
            parts["image"] = image_similarity
        if usage is not None:
            parts["usage"] = np.broadcast_to(np.asarray(usage, np.float32)[None, :],
                                             text_similarity.shape)
        if self.trained:
            parts["learned"] = (self._adapter_scores(texts, dialogue_vectors(), sticker_vectors())
                                + np.array([self.bias.get(sid, 0.0) for sid in sticker_ids])[None, :])
        return parts

    def _weight(self, part: str) -> float:
        return {"text": self.w_text, "emotion": self.w_emotion, "image": self.w_image,
                "usage": self.w_usage}[part]

    def combine(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        total = sum(self._weight(name) * part for name, part in parts.items() if name != "learned")
        return total + parts["learned"] if "learned" in parts else total

    def scores(self, texts: list[str], dialogue_vectors: np.ndarray, moods: np.ndarray,
               sticker_ids: list[str], sticker_vectors: np.ndarray,
               sticker_emotions: np.ndarray,
               image_similarity: np.ndarray | None = None,
               usage: np.ndarray | None = None) -> np.ndarray:
        """(n_dialogues, n_stickers) scores, higher is better."""
        return self.combine(self.score_parts(texts, dialogue_vectors @ sticker_vectors.T, moods,
                                             sticker_ids, sticker_emotions,
                                             lambda: sticker_vectors, lambda: dialogue_vectors,
                                             image_similarity, usage))

    def _adapter_scores(self, texts: list[str], dialogue_vectors: np.ndarray,
                        sticker_vectors: np.ndarray) -> np.ndarray:
        return self.adapter_queries(texts, dialogue_vectors) @ sticker_vectors.T

    def adapter_queries(self, texts: list[str], dialogue_vectors: np.ndarray) -> np.ndarray:
        """What the adapter adds to each dialogue's query, in the sticker-text space: the
        index can be searched with it, so learned choices are found, not only re-ranked."""
        with torch.inference_mode():
            return self.adapter(*_bags([ngram_ids(t) for t in texts]), torch.from_numpy(
                np.ascontiguousarray(dialogue_vectors, np.float32))).numpy()

    def fit(self, texts: list[str], dialogue_vectors: np.ndarray, moods: np.ndarray,
            chosen: list[str], sticker_ids: list[str], sticker_vectors: np.ndarray,
            sticker_emotions: np.ndarray, emotion_labels: list[str], max_seconds: float = 600,
            image_similarity: np.ndarray | None = None, seed: int = 0,
            negatives: list[list[str]] | None = None, usage: np.ndarray | None = None) -> FitReport:
        """Learn from dialogues and the sticker chosen for each. The emotion part earns its
        place: the selector is fitted with and without it and the variant with the better
        held-out macro-F1 is kept (weight 0 when dropped). Its inputs are two models' guesses
        (the mood, the stickers' emotions), which fit some sticker sets and not others.
        ``negatives``: per example, stickers a person saw and passed over (scored against it
        besides the hard negatives found here)."""
        started = time.perf_counter()
        variants = [None, "emotion"]  # drop nothing, or drop the emotion part
        best = None
        for i, dropped in enumerate(variants):
            budget = (max_seconds - (time.perf_counter() - started)) / (len(variants) - i)
            fitted = self._fit_variant(
                texts, dialogue_vectors, moods, chosen, sticker_ids, sticker_vectors,
                sticker_emotions, emotion_labels, seed=seed, max_seconds=budget,
                image_similarity=image_similarity, dropped=dropped, negatives=negatives,
                usage=usage)
            if best is None or fitted[3] > best[3]:
                best = fitted
        adapter, bias, epochs, score, fusion = best
        self.adapter = adapter
        self.bias = {sid: float(b) for sid, b in zip(sticker_ids, bias)}
        self.w_text = fusion["text"]
        self.w_emotion = fusion.get("emotion", 0.0)
        self.w_image = fusion.get("image", self.w_image)
        self.w_usage = fusion.get("usage", self.w_usage)
        return FitReport(epochs, time.perf_counter() - started, score, len(texts),
                         sorted(fusion))

    def _fit_variant(self, texts, dialogue_vectors, moods, chosen, sticker_ids, sticker_vectors,
                    sticker_emotions, emotion_labels, seed: int, max_seconds: float,
                    image_similarity=None, max_epochs: int = 30, dropped: str | None = None,
                    negatives: list[list[str]] | None = None, usage=None):
        """The adapter and sticker biases. A held-out 10% stops training when it stops
        helping, then sets per-sticker offsets so that rare stickers get picked as often as
        they should (macro-F1 on the held-out part)."""
        torch.manual_seed(seed)
        started = time.perf_counter()
        column = {sid: i for i, sid in enumerate(sticker_ids)}
        target = np.array([column[sid] for sid in chosen])
        candidates = hard_negative_candidates(target, sticker_vectors, sticker_emotions,
                                              emotion_labels)
        for row, passed_over in enumerate(negatives or []):
            candidates[row, [column[sid] for sid in passed_over if sid in column]] = True
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(texts))
        holdout, train = order[: len(order) // 10], order[len(order) // 10:]
        bags = [ngram_ids(t) for t in texts]
        parts = self.score_parts(texts, dialogue_vectors @ sticker_vectors.T, moods, sticker_ids,
                                 sticker_emotions, lambda: sticker_vectors,
                                 image_similarity=image_similarity, usage=usage)
        names = [n for n in parts if n != dropped]  # text, emotion (, image): weights learned too
        part_values = torch.stack([torch.tensor(parts[n], dtype=torch.float32) for n in names], -1)
        fusion = torch.nn.Parameter(torch.tensor([self._weight(n) for n in names]))
        queries = torch.tensor(dialogue_vectors, dtype=torch.float32)
        stickers = torch.tensor(sticker_vectors, dtype=torch.float32)
        adapter = NgramAdapter(sticker_vectors.shape[1])
        bias = torch.zeros(len(sticker_ids), requires_grad=True)

        def logits(rows: np.ndarray) -> torch.Tensor:
            learned = adapter(*_bags([bags[i] for i in rows]), queries[rows]) @ stickers.T
            return _mask(part_values[rows] @ fusion + learned + bias, candidates[rows])

        weights = _balanced_weights(target[train], len(sticker_ids))
        optimiser = torch.optim.Adam([*adapter.parameters(), bias, fusion], lr=2e-3)
        batch_size = min(256, max(16, len(train) // 8))  # small data still takes many steps
        best, best_state, epochs, stale = -1.0, None, 0, 0
        for epoch in range(max_epochs):
            adapter.train()
            for batch in np.array_split(rng.permutation(train), -(-len(train) // batch_size)):
                loss = torch.nn.functional.cross_entropy(
                    logits(batch), torch.tensor(target[batch]), weight=weights)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            adapter.eval()
            with torch.inference_mode():
                score = macro_f1(logits(holdout).argmax(1).numpy(), target[holdout],
                                 len(sticker_ids))
            epochs = epoch + 1
            if score > best:
                best, stale = score, 0
                best_state = ({k: v.clone() for k, v in adapter.state_dict().items()},
                              bias.detach().clone(), fusion.detach().clone())
            else:
                stale += 1
                if stale >= PATIENCE:
                    break  # held-out macro-F1 stopped improving
            if time.perf_counter() - started > max_seconds:
                break
        adapter.load_state_dict(best_state[0])
        adapter.eval()
        bias = best_state[1]
        with torch.no_grad():
            fusion.copy_(best_state[2])
        if len(sticker_ids) <= MAX_TUNED_STICKERS:
            with torch.inference_mode():
                held = logits(holdout).numpy()
            offsets, best = tune_offsets(held, target[holdout])
            bias = bias + torch.from_numpy(offsets).float()
        return adapter, bias, epochs, best, dict(zip(names, fusion.detach().tolist()))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.half() if v.dtype == torch.float32 else v
                 for k, v in self.adapter.state_dict().items()}
        torch.save({"adapter": state, "bias": self.bias,
                    "w_text": self.w_text, "w_emotion": self.w_emotion, "w_image": self.w_image,
                    "w_usage": self.w_usage, "threshold": self.threshold},
                   folder / "selector.pt")

    @classmethod
    def load(cls, folder: Path, dim: int | None = None) -> "Selector":
        """A saved selector; ``dim`` (the sticker vectors') is read from the file if not given."""
        saved = torch.load(folder / "selector.pt", weights_only=True)
        selector = cls(saved["w_emotion"], saved.get("w_image", 0.0))
        selector.w_text = saved["w_text"]
        selector.w_usage = saved.get("w_usage", 0.0)
        selector.adapter = NgramAdapter(dim or saved["adapter"]["mix.weight"].shape[0])
        selector.adapter.load_state_dict({k: v.float() for k, v in saved["adapter"].items()})
        selector.adapter.eval()
        selector.bias = saved["bias"]
        selector.threshold = saved.get("threshold")
        return selector


class NgramAdapter(torch.nn.Module):
    """Hashed n-grams (a fastText-like tower) plus a linear map of the dialogue embedding, into
    the sticker-text embedding space. Output layers start at zero, so an untrained adapter
    leaves the zero-shot scores."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(BUCKETS, NGRAM_DIM, mode="mean")
        torch.nn.init.normal_(self.bag.weight, std=0.05)
        self.project = torch.nn.Linear(NGRAM_DIM, dim)
        self.mix = torch.nn.Linear(dim, dim, bias=False)
        for layer in (self.project.weight, self.project.bias, self.mix.weight):
            torch.nn.init.zeros_(layer)
        self.dropout = torch.nn.Dropout(0.2)

    def forward(self, ids, offsets, dialogue_vectors):
        return self.project(self.dropout(self.bag(ids, offsets))) + self.mix(dialogue_vectors)


def hard_negative_candidates(target: np.ndarray, vectors: np.ndarray, emotions: np.ndarray,
                             labels: list[str], per_kind: int = 16) -> np.ndarray:
    """Boolean (n, n_stickers) mask of the stickers each example is scored against: the chosen
    one, its most similar stickers, stickers of opposite sentiment, and all when few."""
    n_stickers = len(vectors)
    mask = np.zeros((len(target), n_stickers), dtype=bool)
    if n_stickers <= 4 * per_kind:
        mask[:] = True
        return mask
    chosen = np.unique(target)  # only stickers someone chose need neighbours: not n² memory
    nearest = np.argsort(-(vectors[chosen] @ vectors.T), axis=1)[:, 1:per_kind + 1]
    similar = dict(zip(chosen.tolist(), nearest))
    polarity = _polarity(emotions, labels)
    rng = np.random.default_rng(0)
    for row, gold in enumerate(target):
        opposite = np.flatnonzero(polarity * polarity[gold] < 0)
        mask[row, gold] = True
        mask[row, similar[gold]] = True
        if len(opposite):
            mask[row, rng.choice(opposite, min(per_kind, len(opposite)), replace=False)] = True
        mask[row, rng.choice(n_stickers, per_kind, replace=False)] = True
    return mask


def _polarity(emotions: np.ndarray, labels: list[str]) -> np.ndarray:
    positive = [i for i, label in enumerate(labels) if label in POSITIVE]
    negative = [i for i, label in enumerate(labels) if label in NEGATIVE]
    return emotions[:, positive].sum(axis=1) - emotions[:, negative].sum(axis=1)


def _mask(logits, mask: np.ndarray):
    return logits.masked_fill(~torch.tensor(mask), float("-inf"))


def _bags(id_lists: list[list[int]]):
    offsets = np.cumsum([0] + [len(ids) for ids in id_lists[:-1]])
    flat = np.fromiter((i for ids in id_lists for i in ids), dtype=np.int64)
    return torch.from_numpy(flat), torch.from_numpy(offsets.astype(np.int64))


def _balanced_weights(target: np.ndarray, n_classes: int):
    """Rare stickers weigh more, so the selector does not learn to always pick the popular ones
    (macro-F1 counts every sticker alike)."""
    counts = np.bincount(target, minlength=n_classes).astype(np.float32)
    weights = np.where(counts > 0, np.sqrt(len(target) / (n_classes * np.maximum(counts, 1))), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def tune_offsets(scores: np.ndarray, target: np.ndarray, passes: int = 2,
                 grid: np.ndarray = np.linspace(-1.0, 1.0, 41)) -> tuple[np.ndarray, float]:
    """Per-sticker score offsets that maximise macro-F1 on held-out choices (coordinate
    ascent): the usual correction for a model trained on skewed choices."""
    n_classes = scores.shape[1]
    offsets = np.zeros(n_classes)
    best = macro_f1(scores.argmax(1), target, n_classes)
    for _ in range(passes):
        for c in range(n_classes):
            for value in grid:
                trial = offsets.copy()
                trial[c] = value
                score = macro_f1((scores + trial).argmax(1), target, n_classes)
                if score > best:
                    best, offsets = score, trial
    return offsets, best


def emotion_fit(moods: np.ndarray, sticker_emotions: np.ndarray) -> np.ndarray:
    """How well each sticker's emotion answers each mood (Ekman-7), in [0, 1].

    Each emotion j fits the mood by ``a_j`` (the mood's expected compatibility with j,
    ``ekman_compatibility``), scaled so the emotion that fits best gets 1. A sticker's fit is its
    expected ``a`` over its emotion distribution, each emotion's share capped at what its main
    emotion earns: an uncertain reading never fits better than a sure one, so certainty never
    lowers a score. A person confirming the model's main emotion, or any one-hot people label,
    therefore fits at least as well as any model reading with that main emotion (the cosine of
    two distributions did the opposite: a one-hot label scored below a flat reading)."""
    if moods.shape[1] != len(EKMAN7) or sticker_emotions.shape[1] != len(EKMAN7):
        raise ValueError(f"emotion fit reads Ekman-7 distributions, not {moods.shape[1]} and "
                         f"{sticker_emotions.shape[1]} columns")
    fits = np.asarray(moods, np.float32) @ COMPATIBILITY
    fits /= np.maximum(fits.max(axis=1, keepdims=True), 1e-12)
    cap = fits[:, np.asarray(sticker_emotions).argmax(axis=1)]  # (n_moods, n_stickers)
    total = np.zeros_like(cap)
    for j in range(len(EKMAN7)):
        total += sticker_emotions[None, :, j] * np.minimum(fits[:, j:j + 1], cap)
    return total / np.maximum(np.asarray(sticker_emotions).sum(axis=1), 1e-12)[None, :]
