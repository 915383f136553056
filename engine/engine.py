"""The one Engine per process: models load once, lazily, and every session shares them."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

import numpy as np

from engine import index as index_versions
from engine.dialogue import Dialogue, Reply, SearchResult, Turn, check_message
from engine.emotion import RECENCY_DECAY, create_emotion_model, forecast_mood
from engine.encoders import create_text_encoder
from engine.reply import create_reply_backend
from engine.settings import Settings
from engine.ingest import IngestError, IngestReport, Limits, build_pack, check_pack_name
from engine.ocr import StickerOCR
from engine.stickers import Sticker, StickerLibrary

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

    def replace(self, value: T) -> None:
        """Swap in a new value at once; callers holding the old one finish with it."""
        with self._lock:
            self._value = value


@dataclass(frozen=True)
class LiveVersion:
    """What one request reads: a library and the index built from it, always a matching pair."""

    library: StickerLibrary
    index: index_versions.StickerIndex


class Engine:
    """Sticker search and chat turns over the configured packs and models."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.settings.apply_offline_mode()
        self.device = self.settings.resolved_device()
        self.encoder = Lazy("text encoder", lambda: create_text_encoder(
            self.settings.text_encoder, self.device))
        self.emotion = Lazy("emotion model", lambda: create_emotion_model("nade"))
        self.live = Lazy("sticker index", lambda: self._build_live(previous=None))
        self.reply_backend = Lazy("reply backend", lambda: create_reply_backend(
            self.settings.reply_backend, self.device, self.settings.max_new_tokens))
        self.ocr = StickerOCR()
        self._library_lock = threading.Lock()  # one pack change at a time

    @property
    def user_packs_dir(self) -> Path:
        return self.settings.data_dir / "packs"

    def pack_dirs(self) -> list[Path]:
        """Configured packs first, then the packs people added (in name order)."""
        added = sorted(p for p in self.user_packs_dir.glob("*") if (p / "pack.json").is_file()) \
            if self.user_packs_dir.is_dir() else []
        return [*self.settings.packs, *added]

    def warm_up(self, reply: bool = True) -> threading.Thread:
        """Load everything in a background thread, so the first request waits less or not at all."""
        parts = [self.live] + ([self.reply_backend] if reply else [])

        def load_all() -> None:
            for part in parts:
                try:
                    part.get()
                except Exception:  # the request that needs it will raise it again, visibly
                    log.exception("background loading of %s failed", part.name)

        thread = threading.Thread(target=load_all, name="memeui-warm-up", daemon=True)
        thread.start()
        return thread

    def _build_live(self, previous: LiveVersion | None) -> LiveVersion:
        library = StickerLibrary.load(self.pack_dirs())
        encoder, emotion = self.encoder.get(), self.emotion.get()
        index = index_versions.open_or_build(
            root=self.settings.data_dir / "index",
            key=index_versions.index_key(library.fingerprint(), encoder.name),
            stickers=library.stickers,
            encode=encoder.encode,
            estimate_emotions=self._sticker_emotions,
            previous=previous.index if previous else None,
        )
        return LiveVersion(library, index)

    def _sticker_emotions(self, stickers: list[Sticker]) -> tuple[list[str], np.ndarray]:
        """A label people gave wins; otherwise the emotion model reads the sticker's text."""
        model = self.emotion.get()
        labels = list(model.labels)
        emotions = model.predict([sticker.text() for sticker in stickers])
        for row, sticker in enumerate(stickers):
            if sticker.emotion.lower() in labels:
                emotions[row] = np.eye(len(labels), dtype=np.float32)[labels.index(sticker.emotion.lower())]
        return labels, emotions

    # ------------------------------------------------------------ the library

    def add_pack(self, source: Path, name: str | None = None, ocr: bool = True,
                 limits: Limits = Limits(), progress=lambda fraction, message: None) -> IngestReport:
        """Ingest a folder, zip or file as pack ``name``, then switch to the index that has it."""
        name = check_pack_name(name or Path(source).stem)
        with self._library_lock:
            live = self.live.get()
            if name in live.library.packs:
                raise IngestError(f"a pack named {name!r} exists already: remove it or pick "
                                  "another name")
            self.user_packs_dir.mkdir(parents=True, exist_ok=True)
            report = build_pack(Path(source), self.user_packs_dir / name, name, limits,
                                ocr=self.ocr if ocr else None,
                                known_ids=set(live.library.by_id), progress=progress)
            self.live.replace(self._build_live(previous=live))
        return report

    def remove_pack(self, name: str) -> None:
        with self._library_lock:
            folder = self.user_packs_dir / check_pack_name(name)
            if not (folder / "pack.json").is_file():
                configured = name in self.live.get().library.packs
                raise IngestError(f"{name!r} is configured in MEMEUI_PACKS, not added here: "
                                  "change the setting to drop it" if configured
                                  else f"there is no pack named {name!r}")
            live = self.live.get()
            shutil.rmtree(folder)
            self.live.replace(self._build_live(previous=live))

    def added_pack_names(self) -> list[str]:
        """Packs people added (removable), read from disk without loading any model."""
        return [path.name for path in self.pack_dirs()[len(self.settings.packs):]]

    def list_packs(self) -> list[dict]:
        library = self.live.get().library
        added = set(self.added_pack_names())
        counts: dict[str, int] = {}
        for sticker in library.stickers:
            counts[sticker.pack] = counts.get(sticker.pack, 0) + 1
        return [{"name": name, "stickers": counts.get(name, 0),
                 "source": "added" if name in added else "configured"}
                for name in library.packs]

    # ------------------------------------------------------------ ranking and chat

    def search(self, query: str, k: int = 8, emotion: str | None = None) -> list[SearchResult]:
        """Stickers for a text query or a pasted dialogue (``Name: text`` per line), best
        first; ``emotion`` keeps only stickers whose strongest emotion it is."""
        query = query if "\n" in (query or "").strip() else check_message(query)
        dialogue = Dialogue.from_transcript(query)
        mood = forecast_mood(self.emotion.get(), dialogue)
        return self.select_stickers(dialogue, mood, k, emotion)

    def select_stickers(self, dialogue: Dialogue, mood: np.ndarray, k: int,
                        emotion: str | None = None) -> list[SearchResult]:
        """Rank stickers for a dialogue: text similarity to recent turns plus emotion fit."""
        live = self.live.get()  # this request's version, even if a new one goes live meanwhile
        if emotion and emotion not in live.index.emotion_labels:
            raise ValueError(f"unknown emotion {emotion!r}; "
                             f"known: {', '.join(live.index.emotion_labels)}")
        pool = max(k, CANDIDATES) * (8 if emotion else 1)
        scores, rows = live.index.search(self._dialogue_vector(dialogue)[None, :], pool)
        scores, rows = scores[0][rows[0] >= 0], rows[0][rows[0] >= 0]  # -1: fewer hits than asked
        if emotion:
            keep = live.index.emotions[rows].argmax(axis=1) == live.index.emotion_labels.index(emotion)
            scores, rows = scores[keep], rows[keep]
        fit = emotion_fit(live.index.emotions[rows], mood)
        total = scores + self.settings.emotion_weight * fit
        order = np.argsort(-total)[:k]
        return [self._result(live, int(rows[i]), float(total[i]),
                             {"text": float(scores[i]), "emotion": float(fit[i])})
                for i in order]

    def _dialogue_vector(self, dialogue: Dialogue) -> np.ndarray:
        texts = [turn.content() for turn in dialogue.turns[-DIALOGUE_TURNS:] if turn.content()]
        vectors = self.encoder.get().encode(texts)
        weights = RECENCY_DECAY ** np.arange(len(texts) - 1, -1, -1, dtype=np.float32)
        vector = (vectors * weights[:, None]).sum(axis=0)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def _result(self, live: LiveVersion, row: int, score: float,
                parts: dict[str, float]) -> SearchResult:
        sticker = live.library.by_id[live.index.sticker_ids[row]]
        emotion = live.index.emotion_labels[int(np.argmax(live.index.emotions[row]))]
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
