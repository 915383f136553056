"""Held-out slices and classification scores (scikit-learn's), in one place.

Two slicing rules, both by a hash of the key, so every machine and every later snapshot keeps
the same items out: ``held_out`` for people's labels (what every recipe's gate measures on), and
``in_share`` for the fixed splits the bundled weights were trained with (the response selector's
conversations, the image tower's stickers): moving those onto ``held_out`` means retraining the
bundled weights, or their held-out figures would count what they trained on.
"""

from __future__ import annotations

import hashlib

import numpy as np

HOLDOUT_EVERY = 5  # one labelled item (or dialogue) in five is kept out of training


def held_out(key: str) -> bool:
    """Whether a labelled item (or dialogue) ``key`` is in the held-out slice of people's labels:
    a candidate is never measured on what it trained on."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % HOLDOUT_EVERY == 0


def in_share(key: str, share: float) -> bool:
    """Whether ``key`` falls in a fixed ``share`` of keys (a smaller share holds out a subset
    of a larger one's): the bundled weights' splits."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def f1_per_class(predicted: np.ndarray, gold: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class 0…n_classes-1 (0 for a class never predicted right), as fractions."""
    from sklearn.metrics import f1_score

    return f1_score(gold, predicted, labels=np.arange(n_classes), average=None, zero_division=0)


def macro_f1(predicted: np.ndarray, gold: np.ndarray, n_classes: int | None = None) -> float:
    """Mean F1, as a fraction: over classes 0…n_classes-1 when given (a class nobody predicted
    or said counts 0), else over the classes present in gold or predicted."""
    if n_classes is not None:
        return float(np.mean(f1_per_class(predicted, gold, n_classes)))
    from sklearn.metrics import f1_score

    return float(f1_score(gold, predicted, average="macro", zero_division=0))


def per_class(predicted: np.ndarray, gold: np.ndarray, names: tuple[str, ...]) -> dict:
    """Each class's ``n`` (gold items), precision, recall and F1 in percent: what a person
    reads first of a reader (the emotion it misses, the one it says too often)."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=np.arange(len(names)), zero_division=0)
    return {name: {"n": int(support[i]), "precision": round(100 * float(precision[i]), 2),
                   "recall": round(100 * float(recall[i]), 2), "f1": round(100 * float(f1[i]), 2)}
            for i, name in enumerate(names)}


def scores(predicted: np.ndarray, gold: np.ndarray) -> dict:
    """Accuracy and macro-F1 (over the classes present in gold or predicted), in percent."""
    if len(gold) == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None}
    return {"n": int(len(gold)), "accuracy": round(100 * float(np.mean(predicted == gold)), 2),
            "macro_f1": round(100 * macro_f1(predicted, gold), 2)}


def class_metrics(predicted: np.ndarray, gold: np.ndarray, n_classes: int) -> dict:
    """In percent: accuracy (WA), mean per-class recall (AA), macro-F1 and weighted-F1."""
    f1s = f1_per_class(predicted, gold, n_classes)
    support = np.array([np.sum(gold == c) for c in range(n_classes)], dtype=np.float64)
    recalls = [np.sum((predicted == c) & (gold == c)) / s for c, s in enumerate(support) if s]
    return {"wa": round(100 * float(np.mean(predicted == gold)), 2),
            "aa": round(100 * float(np.mean(recalls)), 2),
            "macro_f1": round(100 * float(np.mean(f1s)), 2),
            "weighted_f1": round(100 * float(np.dot(f1s, support) / max(support.sum(), 1)), 2)}
