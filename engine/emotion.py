"""Emotion of texts and the mood forecast for the bot's next turn.

The default model is ``nade``: per-label intensities for Plutchik's eight emotions from text.
Intensities are independent, so they become a distribution here, with ``neutral`` taking the
mass that no emotion claims: (1 − strongest intensity)², so a text whose strongest emotion
stays under about 0.38 reads as neutral.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np

from engine.dialogue import Dialogue

PLUTCHIK = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")
MOOD_LABELS = PLUTCHIK + ("neutral",)
RECENCY_DECAY = 0.5  # each older turn counts half as much as the one after it
FORECAST_TURNS = 4


class NadeEmotion:
    """Text → distribution over ``MOOD_LABELS``; thread-safe, loads on first use."""

    labels = MOOD_LABELS

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def _nade(self):
        if self._model is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nade warns about unpacking its own models
                from nade import Nade

                self._model = Nade()
        return self._model

    def predict(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        with self._lock:
            scores = self._nade().predict(list(texts))
        intensities = np.clip(
            np.array([scores[label].to_pylist() for label in PLUTCHIK], dtype=np.float32).T,
            0.0, 1.0,
        )
        neutral = (1.0 - intensities.max(axis=1, keepdims=True)) ** 2
        distribution = np.concatenate([intensities, neutral], axis=1) + 1e-6
        return distribution / distribution.sum(axis=1, keepdims=True)


EMOTION_MODELS = {"nade": NadeEmotion}


def create_emotion_model(name: str) -> NadeEmotion:
    if name not in EMOTION_MODELS:
        raise ValueError(f"unknown emotion model {name!r}; known: {', '.join(EMOTION_MODELS)}")
    return EMOTION_MODELS[name]()


def forecast_mood(model: NadeEmotion, dialogue: Dialogue) -> np.ndarray:
    """The mood the bot answers in: the recent conversation's emotion, latest turns weighing most.

    A mirror of the conversation is the empathetic baseline; the trained pre-recognizer
    (forecasting the next utterance's emotion) replaces it when it lands.
    """
    turns = [turn.content() for turn in dialogue.turns[-FORECAST_TURNS:] if turn.content()]
    if not turns:
        neutral = np.zeros(len(model.labels), dtype=np.float32)
        neutral[model.labels.index("neutral")] = 1.0
        return neutral
    weights = RECENCY_DECAY ** np.arange(len(turns) - 1, -1, -1, dtype=np.float32)
    mood = (model.predict(turns) * weights[:, None]).sum(axis=0)
    return mood / mood.sum()
