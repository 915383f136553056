"""Emotion of conversations: each turn's (recognition) and the next one's (pre-recognition).

The engine works in Ekman-7 internally and shows the deployment's label scheme
(``engine.schemes``). ``ConversationEmotion`` owns the models: the pre-recognizer (bundled
default weights, or a folder fitted on labels) and, optionally, a fine-tuned recognizer; without
one, turns are recognized by the pre-recognizer's own turn view, which reads the sentence
embedding the engine computes anyway, so recognition and forecasting cost one cached encoder call
per new turn.

``NadeEmotion`` (Plutchik intensities from text) is the teacher of the bundled weights: its
reading of chitchat messages is their weak label.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.dialogue import HAN, Dialogue
from engine.schemes import EKMAN7, convert, scheme
from engine.emotion.prerecognizer import PreRecognizer
from engine.encoders import Encoded
from engine.emotion.recognizer import Recognition

PLUTCHIK = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")
BOT = "bot"
EMPATHY = 0.5  # how much the bot's mood mirrors the last speaker's emotion
# How much the emotion words' reading (DescribedEmotion) moves the recognizer's reading of the
# last turn: chosen on MELD's dev utterances read alone (macro-F1 24.2 recognizer alone; 27.6
# at 0.25 and 0.5, 26.1 at 1), the smaller of the best two.
WORDS_WEIGHT = 0.25


class NadeEmotion:
    """Text → distribution over Plutchik-8 + neutral; thread-safe, loads on first use.

    Intensities are independent, so they become a distribution here, with ``neutral`` taking
    the mass that no emotion claims: (1 − strongest intensity)².
    """

    labels = scheme("plutchik8").labels

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

    def predict_ekman(self, texts: list[str]) -> np.ndarray:
        return convert(self.predict(texts), "plutchik8", "ekman7")


@dataclass
class TurnEmotion:
    speaker: str
    text: str
    emotion: dict[str, float]  # in the deployment's scheme


@dataclass
class EmotionReading:
    """What the Emotion tab and the API show: each turn, and the forecast for the next one."""

    scheme: str
    turns: list[TurnEmotion]
    next_speaker: str
    forecast: dict[str, float]
    forecast_sentiment: dict[str, float]

    def to_dict(self) -> dict:
        rounded = lambda d: {k: round(float(v), 4) for k, v in d.items()}  # noqa: E731
        return {"scheme": self.scheme, "next_speaker": self.next_speaker,
                "forecast": rounded(self.forecast),
                "forecast_sentiment": rounded(self.forecast_sentiment),
                "turns": [{"speaker": t.speaker, "text": t.text, "emotion": rounded(t.emotion)}
                          for t in self.turns]}


class ConversationEmotion:
    """Recognition and pre-recognition over one text encoder; thread-safe."""

    def __init__(self, encoder, prerecognizer: PreRecognizer, recognizer=None,
                 fingerprint: str = "") -> None:
        self.encoder = encoder
        self.fingerprint = fingerprint  # names the models, so caches of their output are keyed
        self.prerecognizer = prerecognizer  # in torch, for training and batch forecasts
        self.served = prerecognizer.frozen()  # what every chat turn runs: no lock, no torch
        self.recognizer = recognizer  # a fine-tuned engine.emotion.recognizer.Recognizer, or None
        self._lock = threading.Lock()  # torch modules are not re-entrant under inference

    @classmethod
    def load(cls, encoder, prerecognizer: Path, recognizer: str = "default") -> "ConversationEmotion":
        model = PreRecognizer.load(Path(prerecognizer))
        if model.dim != encoder.dim:
            raise ValueError(f"the pre-recognizer in {prerecognizer} reads {model.dim}-d "
                             f"embeddings but the text encoder {encoder.name} gives {encoder.dim}")
        fine_tuned = None
        if recognizer != "default":
            from engine.encoders import EMOTION_SPACE, encoder_weights
            from engine.emotion.recognizer import Recognizer

            base = encoder_weights(EMOTION_SPACE)
            fine_tuned = Recognizer.load(Path(recognizer), base)
        digest = hashlib.sha256((Path(prerecognizer) / "prerecognizer.pt").read_bytes())
        return cls(encoder, model, fine_tuned, f"e{digest.hexdigest()[:8]}")

    def encode(self, dialogue: Dialogue) -> Encoded:
        texts = [turn.content() for turn in dialogue.turns]
        return Encoded(self.encoder.encode_turns(texts), [turn.speaker for turn in dialogue.turns])

    def recognize_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Ekman-7 of texts already embedded by this encoder (sticker texts), by the turn view."""
        return self._views(vectors)[:, :len(EKMAN7)]

    def _views(self, vectors: np.ndarray) -> np.ndarray:
        """The pre-recognizer's turn view: (n, 7 emotions + 3 sentiments)."""
        return self.served.views(np.asarray(vectors, np.float32))

    def recognize(self, dialogue: Dialogue) -> Recognition:
        """Each turn's emotion (Ekman-7) and sentiment, read in its conversation."""
        if self.recognizer is not None and dialogue.turns:
            with self._lock:
                return self.recognizer.recognize(dialogue)
        views = self._views(self.encode(dialogue).vectors)
        return Recognition(views[:, :len(EKMAN7)], views[:, len(EKMAN7):])

    def forecast(self, dialogue: Dialogue, next_speaker: str = BOT) -> tuple[np.ndarray, np.ndarray]:
        """(Ekman-7, sentiment-3) distributions of ``next_speaker``'s coming utterance."""
        return self.served.forecast(self.encode(dialogue), next_speaker)

    def read(self, dialogue: Dialogue, next_speaker: str, scheme_name: str) -> EmotionReading:
        """Each turn's emotion and the next speaker's forecast, in ``scheme_name``."""
        target = scheme(scheme_name)
        if target.ekman_links is None:
            raise ValueError(f"cannot show emotions in the {scheme_name} scheme: it has no "
                             "mapping from Ekman-7")
        recognized = self.recognize(dialogue)
        emotion, sentiment = self.forecast(dialogue, next_speaker)
        if scheme_name == "sentiment3":  # the models' own sentiment heads, not a mapping
            turns, ahead = recognized.sentiment, sentiment
        else:
            turns = convert(recognized.emotion, "ekman7", scheme_name)
            ahead = convert(emotion, "ekman7", scheme_name)
        as_dict = lambda row: dict(zip(target.labels, row.tolist()))  # noqa: E731
        return EmotionReading(
            scheme_name,
            [TurnEmotion(turn.speaker, turn.content(), as_dict(row))
             for turn, row in zip(dialogue.turns, turns)],
            next_speaker, as_dict(ahead),
            dict(zip(scheme("sentiment3").labels, sentiment.tolist())))


def forecast_mood(model: ConversationEmotion, dialogue: Dialogue,
                  described: "DescribedEmotion | None" = None) -> np.ndarray:
    """The mood the bot answers in (Ekman-7): the pre-recognizer's forecast of the bot's own
    turn, pulled toward what the last speaker feels. Forecasts lean to neutral (most replies in
    conversations are), and a bot that meets "I failed my exam" in a neutral mood reads as
    cold; the mirror half is the empathy. With ``described``, what the last speaker feels is
    the recognizer's reading times the words' reading to the power WORDS_WEIGHT (the recognizer
    alone read "I am furious" as fear)."""
    forecast, _ = model.forecast(dialogue, BOT)
    last = model.recognize(Dialogue(dialogue.turns[-2:])).emotion[-1]
    if described is not None and dialogue.turns[-1].content():
        last = last * described.read(dialogue.turns[-1].content()) ** WORDS_WEIGHT
        last = last / last.sum()
    mood = (1.0 - EMPATHY) * forecast + EMPATHY * last
    return mood / mood.sum()


# Each Ekman-7 emotion in words, English and Chinese, for a multilingual encoder: a message is
# read by its similarity to them (zero-shot classification by label words). The emotion
# models read MiniLM vectors, which cannot read Chinese.
EMOTION_WORDS = {
    "anger": ("angry", "furious", "annoyed", "生气", "愤怒", "恼火", "火大"),
    "disgust": ("disgusting", "gross", "yuck", "恶心", "讨厌", "反胃", "真脏"),
    "fear": ("scared", "afraid", "nervous", "害怕", "恐惧", "担心", "发慌"),
    "joy": ("happy", "glad", "fun", "开心", "高兴", "快乐", "愉快"),
    "neutral": ("ok", "sure", "noted", "嗯", "知道了", "行", "可以"),
    "sadness": ("sad", "crying", "heartbroken", "难过", "伤心", "哭", "失望"),
    "surprise": ("surprised", "shocked", "wow", "惊讶", "意外", "震惊", "居然"),
}


OWN_EMOTION = 0.8  # a lexicon word joins an emotion's words when it reads that sure


def emotion_words() -> dict[str, list[str]]:
    """``EMOTION_WORDS`` with the Chinese words the kaomoji lexicon reads as each emotion
    (engine/emotion/kaomoji.py: "无所谓", "淡定", "困惑" for neutral; "笑死", "好耶" for joy). The
    lexicon's English words as well did worse in a search-only check of the regression set
    (hit@5 76.19 against 80.95), so they are left out."""
    from engine.emotion.kaomoji import bundled_lexicon

    words = {emotion: list(own) for emotion, own in EMOTION_WORDS.items()}
    for word, reading in bundled_lexicon().words.items():
        emotion = EKMAN7[int(reading.argmax())]
        if HAN.search(word) and reading.max() >= OWN_EMOTION and word not in words[emotion]:
            words[emotion].append(word)
    return words


class DescribedEmotion:
    """Ekman-7 from a multilingual encoder's similarity to each emotion's words
    (``emotion_words()``): an emotion scores the mean cosine of its TOP_WORDS nearest words.

    TOP_WORDS was chosen on a hand-written Chinese dev set (assets/labels/chinese_moods_dev.csv,
    42 messages, 6 per emotion, none from the regression set): right 25 of 42 with the nearest
    word alone, 27 with 2, 29 with 3, 28 with 5, and 26 with each emotion's words as one text
    (the reader before). On the regression set's 21 Chinese messages: 17 against 15."""

    TEMPERATURE = 0.01  # E5's cosines sit within a few hundredths of each other
    TOP_WORDS = 3

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        words = emotion_words()
        self.words = [encoder.encode_turns(words[label]) for label in EKMAN7]

    def read(self, text: str) -> np.ndarray:
        query = self.encoder.encode_turns([text])[0]
        scores = np.array([np.sort(vectors @ query)[-self.TOP_WORDS:].mean() for vectors in self.words])
        logits = scores / self.TEMPERATURE
        probabilities = np.exp(logits - logits.max())
        return (probabilities / probabilities.sum()).astype(np.float32)
