"""The one Engine per process: models load once, lazily, and every session shares them."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Generic, TypeVar

import numpy as np

from engine import index as index_versions
from engine.dialogue import Dialogue, Reply, SearchResult, Turn, check_message
from engine.emotion import RECENCY_DECAY, create_emotion_model, forecast_mood
from engine.encoders import create_text_encoder
from engine.reply import create_reply_backend
from engine.settings import Settings
from engine.stickers import StickerLibrary

log = logging.getLogger(__name__)
T = TypeVar("T")
CANDIDATES = 64  # stickers fetched from the index before emotion re-ranking
DIALOGUE_TURNS = 4  # turns of context the sticker selector reads


class Lazy(Generic[T]):
    """A value built on first use, once, even when several threads ask at the same time."""

    def __init__(self, name: str, factory: Callable[[], T]) -> None:
        self.name, self._factory = name, factory
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    started = time.perf_counter()
                    self._value = self._factory()
                    log.info("loaded %s in %.1fs", self.name, time.perf_counter() - started)
        return self._value

    @property
    def ready(self) -> bool:
        return self._value is not None


class Engine:
    """Sticker search and chat turns over the configured packs and models."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.settings.apply_offline_mode()
        self.device = self.settings.resolved_device()
        self.library = StickerLibrary.load(self.settings.packs)
        self.encoder = Lazy("text encoder", lambda: create_text_encoder(
            self.settings.text_encoder, self.device))
        self.emotion = Lazy("emotion model", lambda: create_emotion_model("nade"))
        self.index = Lazy("sticker index", self._open_index)
        self.reply_backend = Lazy("reply backend", lambda: create_reply_backend(
            self.settings.reply_backend, self.device, self.settings.max_new_tokens))

    def warm_up(self, reply: bool = True) -> threading.Thread:
        """Load everything in a background thread, so the first request waits less or not at all."""
        parts = [self.index] + ([self.reply_backend] if reply else [])

        def load_all() -> None:
            for part in parts:
                try:
                    part.get()
                except Exception:  # the request that needs it will raise it again, visibly
                    log.exception("background loading of %s failed", part.name)

        thread = threading.Thread(target=load_all, name="memeui-warm-up", daemon=True)
        thread.start()
        return thread

    def _open_index(self) -> index_versions.StickerIndex:
        encoder, emotion = self.encoder.get(), self.emotion.get()
        return index_versions.open_or_build(
            root=self.settings.data_dir / "index",
            key=index_versions.index_key(self.library.fingerprint(), encoder.name),
            sticker_ids=[sticker.id for sticker in self.library.stickers],
            texts=[sticker.text() for sticker in self.library.stickers],
            encode=encoder.encode,
            estimate_emotions=lambda texts: (list(emotion.labels), emotion.predict(texts)),
        )

    def search(self, query: str, k: int = 8) -> list[SearchResult]:
        """Stickers for a text query, best first."""
        query = check_message(query)
        dialogue = Dialogue((Turn("user", query),))
        return self.select_stickers(dialogue, self.emotion.get().predict([query])[0], k)

    def select_stickers(self, dialogue: Dialogue, mood: np.ndarray, k: int) -> list[SearchResult]:
        """Rank stickers for a dialogue: text similarity to recent turns plus emotion fit."""
        index = self.index.get()
        scores, rows = index.search(self._dialogue_vector(dialogue)[None, :], max(k, CANDIDATES))
        scores, rows = scores[0], rows[0]
        fit = emotion_fit(index.emotions[rows], mood)
        total = scores + self.settings.emotion_weight * fit
        order = np.argsort(-total)[:k]
        return [self._result(index, int(rows[i]), float(total[i]),
                             {"text": float(scores[i]), "emotion": float(fit[i])})
                for i in order]

    def _dialogue_vector(self, dialogue: Dialogue) -> np.ndarray:
        texts = [turn.content() for turn in dialogue.turns[-DIALOGUE_TURNS:] if turn.content()]
        vectors = self.encoder.get().encode(texts)
        weights = RECENCY_DECAY ** np.arange(len(texts) - 1, -1, -1, dtype=np.float32)
        vector = (vectors * weights[:, None]).sum(axis=0)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def _result(self, index, row: int, score: float, parts: dict[str, float]) -> SearchResult:
        sticker = self.library.by_id[index.sticker_ids[row]]
        emotion = index.emotion_labels[int(np.argmax(index.emotions[row]))]
        return SearchResult(id=sticker.id, label=sticker.label, score=score, path=sticker.path,
                            emotion=emotion, emoji=sticker.emoji, pack=sticker.pack, parts=parts)

    def chat(self, dialogue: Dialogue) -> Reply:
        """The bot's next turn: mood, then text, then the sticker that fits both."""
        if not dialogue.turns:
            raise ValueError("The conversation is empty: say something first.")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        emotion = self.emotion.get()
        mood = forecast_mood(emotion, dialogue)
        mood_label = emotion.labels[int(np.argmax(mood))]
        timings["mood"] = _ms_since(started)

        step = time.perf_counter()
        text = self.reply_backend.get().generate(dialogue, mood_label)
        timings["reply"] = _ms_since(step)

        step = time.perf_counter()
        ranked = self.select_stickers(dialogue.then(Turn("bot", text)), mood,
                                      1 + self.settings.alternatives)
        timings["sticker"] = _ms_since(step)
        timings["total"] = _ms_since(started)
        return Reply(
            text=text,
            sticker=ranked[0] if ranked else None,
            mood={label: float(p) for label, p in zip(emotion.labels, mood)},
            alternatives=ranked[1:],
            timings_ms=timings,
        )


def emotion_fit(sticker_emotions: np.ndarray, mood: np.ndarray) -> np.ndarray:
    """Cosine between each sticker's emotion distribution and the mood: 1 = same feeling."""
    norms = np.linalg.norm(sticker_emotions, axis=1) * max(float(np.linalg.norm(mood)), 1e-12)
    return (sticker_emotions @ mood) / np.maximum(norms, 1e-12)


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
