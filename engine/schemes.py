"""Emotion label schemes and the explicit mappings between them.

A deployment picks one scheme (default Ekman-7, as in MELD and SER30K); models may speak another
(``nade`` speaks Plutchik). Each scheme except MOD's says which Ekman-7 labels each of its labels
is compatible with, once. That one table serves both directions: A → Ekman spreads a label evenly
over its compatible Ekman labels, Ekman → B spreads an Ekman label evenly over the B labels
compatible with it. So surprise becomes half positive, half negative (as MELD's annotators split
it: 591 vs 614 train utterances) and a positive sentiment becomes half joy, half surprise.
Converting A → B goes through Ekman-7.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EKMAN7 = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


@dataclass(frozen=True)
class LabelScheme:
    name: str
    labels: tuple[str, ...]
    ekman_links: dict[str, tuple[str, ...]] | None = field(default=None, compare=False)
    about: str = ""

    def index(self, label: str) -> int:
        """The column of ``label`` (case and spaces ignored); unknown labels are refused."""
        key = str(label).strip().lower()
        for column, known in enumerate(self.labels):
            if known == key:
                return column
        raise ValueError(f"unknown {self.name} label {label!r}; known: {', '.join(self.labels)}")

    def one_hot(self, label: str) -> np.ndarray:
        vector = np.zeros(len(self.labels), dtype=np.float32)
        vector[self.index(label)] = 1.0
        return vector

    def links(self) -> np.ndarray:
        """(len(labels), 7) of 0/1: which Ekman-7 labels each label is compatible with."""
        if self.ekman_links is None:
            raise ValueError(f"the {self.name} scheme has no published mapping to other schemes")
        matrix = np.zeros((len(self.labels), len(EKMAN7)), dtype=np.float32)
        for row, label in enumerate(self.labels):
            matrix[row, [EKMAN7.index(target) for target in self.ekman_links[label]]] = 1.0
        return matrix


def _identity(labels: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {label: (label,) for label in labels}


SCHEMES: dict[str, LabelScheme] = {
    scheme.name: scheme for scheme in (
        LabelScheme("ekman7", EKMAN7, _identity(EKMAN7),
                    "Ekman's six basic emotions plus neutral (MELD, SER30K)"),
        LabelScheme("sentiment3", ("positive", "neutral", "negative"),
                    {"positive": ("joy", "surprise"), "neutral": ("neutral",),
                     "negative": ("anger", "disgust", "fear", "sadness", "surprise")},
                    "MELD's sentiment"),
        LabelScheme("plutchik8", ("anger", "anticipation", "disgust", "fear", "joy", "sadness",
                                  "surprise", "trust", "neutral"),
                    {**_identity(("anger", "disgust", "fear", "joy", "sadness", "surprise",
                                  "neutral")),
                     "anticipation": ("joy", "neutral"), "trust": ("joy", "neutral")},
                    "Plutchik's eight (what nade predicts) plus neutral"),
        LabelScheme("iemocap", ("neutral", "happiness", "excited", "sadness", "anger",
                                "frustration", "fear", "surprise", "disgust", "other"),
                    {"neutral": ("neutral",), "happiness": ("joy",), "excited": ("joy",),
                     "sadness": ("sadness",), "anger": ("anger",), "frustration": ("anger",),
                     "fear": ("fear",), "surprise": ("surprise",), "disgust": ("disgust",),
                     "other": ("neutral",)},
                    "IEMOCAP's categorical labels"),
        LabelScheme("emorynlp", ("joyful", "mad", "neutral", "peaceful", "powerful", "sad",
                                 "scared"),
                    {"joyful": ("joy", "surprise"), "mad": ("anger", "disgust"),
                     "neutral": ("neutral",), "peaceful": ("joy", "neutral"), "powerful": ("joy",),
                     "sad": ("sadness",), "scared": ("fear", "surprise")},
                    "EmoryNLP's seven (Willcox's feeling wheel: disgust is mad, surprise joyful "
                    "or scared)"),
        LabelScheme("mod", tuple(str(i) for i in range(100)), None,
                    "MOD's numeric emotion ids (DSTC10 baselines use a 100-way head); the ids "
                    "are published without names, so they map to no other scheme"),
    )
}
DEFAULT_SCHEME = "ekman7"


def scheme(name: str) -> LabelScheme:
    if name not in SCHEMES:
        raise ValueError(f"unknown label scheme {name!r}; known: {', '.join(SCHEMES)}")
    return SCHEMES[name]


def conversion(source: str, target: str) -> np.ndarray:
    """(len(source labels), len(target labels)) matrix whose rows sum to 1."""
    if source == target:
        return np.eye(len(scheme(source).labels), dtype=np.float32)
    return _rows_sum_to_one(scheme(source).links()) @ _rows_sum_to_one(scheme(target).links().T)


def _rows_sum_to_one(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1e-12)


def convert(distribution: np.ndarray, source: str, target: str) -> np.ndarray:
    """Distributions (…, len(source labels)) → (…, len(target labels)), renormalised."""
    mapped = np.asarray(distribution, dtype=np.float32) @ conversion(source, target)
    return mapped / np.maximum(mapped.sum(axis=-1, keepdims=True), 1e-12)


# How well a sticker of one emotion answers a mood of another (chosen on 5,000 tweets of
# TweetEval emoji's train split, whole library: MRR 13.71 against 10.70 for the cosine of the
# two distributions, the regression set checked beside; README "Ranking that trusts people")
RELATED_FIT = 0.25  # another emotion of the same sentiment (disgust for anger)
NEUTRAL_STICKER_FIT = 0.0  # a neutral sticker (a keycap, a flag) for an emotional mood
NEUTRAL_MOOD_FIT = 0.5  # any sticker for a neutral mood: a feeling is rarely wrong there


def ekman_compatibility() -> np.ndarray:
    """(7, 7): how well a sticker of Ekman emotion j (column) answers a mood of emotion i (row).
    1 for the same emotion, ``RELATED_FIT`` for two emotions that share a sentiment
    (sentiment3's links, so surprise is related to both sides), 0 across sentiments (a laughing
    sticker for grief); a neutral sticker fits an emotional mood ``NEUTRAL_STICKER_FIT``, any
    sticker fits a neutral mood ``NEUTRAL_MOOD_FIT``."""
    sentiment = scheme("sentiment3").links()  # (3, 7)
    matrix = np.where((sentiment.T @ sentiment) > 0, RELATED_FIT, 0.0).astype(np.float32)
    neutral = EKMAN7.index("neutral")
    matrix[:, neutral] = NEUTRAL_STICKER_FIT
    matrix[neutral, :] = NEUTRAL_MOOD_FIT
    np.fill_diagonal(matrix, 1.0)
    return matrix
