"""The one Engine per process: models load once, lazily, and every session shares them."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

import numpy as np

from engine import gpu
from engine.chat import checks
from engine.chat.wording import load_dictionaries
from engine.chat.backends import ReplyBackend, ReplyError, RetrievalReply, create_reply_backend, tidy_reply
from engine.chat.responses import ResponseSelector
from engine.corpora import CHINESE_CORPUS
from engine.dialogue import Dialogue, Reply, SearchResult, check_message, is_chinese, ms_since
from engine.emotion.conversation import ConversationEmotion, DescribedEmotion, NadeEmotion, forecast_mood
from engine.emotion.kaomoji import bundled_lexicon, sticker_terms
from engine.encoders import (EMOTION_SPACE, create_text_encoder, dialogue_vector, encoder_facts,
                             recency_vector, routed_encoders, text_weight)
from engine.paths import CACHE_DIR, INDEX_DIR, JOBS_DIR, MODELS_DIR, REGISTRY_DIR
from engine.schemes import EKMAN7, SCHEMES, convert, scheme
from engine.settings import Settings
from engine.stickers import index as index_versions
from engine.stickers.emotion_head import HEAD_FILE, StickerEmotionHead
from engine.stickers.image import LitTower, TowerMismatch, create_image_tower, encode_sticker_images
from engine.stickers.ingest import IngestError, IngestReport, Limits, build_pack, check_pack_name, read_frames
from engine.stickers.library import Sticker, StickerLibrary
from engine.stickers.ocr import StickerOCR
from engine.stickers.ranking import LiveVersion, rank
from engine.stickers.selector import Selector
from engine.stickers.usage import read_threshold, read_usage, usage_prior
from engine.training.jobs import Job, JobRunner
from engine.training.registry import GATE_KEYS, GATE_KEYS_OF_ROLE, ROLES, Registry, gate

log = logging.getLogger(__name__)
T = TypeVar("T")
NO_TOWER = object()  # the image tower setting is "none"
REPLY_WEIGHT = 0.5  # the bot's reply, when fully on topic, counts half as much as the dialogue
LEXICON_WEIGHT = 0.5  # share of the lexicon model (nade) in a sticker's emotion
# The kaomoji lexicon's exponent in a sticker's emotion (engine/emotion/kaomoji.py): chosen on the
# hand-labelled stickers and the regression set's hit@5 (README, "Sticker emotions").
KAOMOJI_WEIGHT = 0.2
STALE_STAGING_S = 600  # an ingest folder untouched this long was left by a killed process
SERVED_ROLES = ("sticker-emotion", "prerecognizer", "selector")  # roles a promotion swaps in
_SHARED: dict[Settings, "Engine"] = {}  # Engine.shared: this process's engines by settings
_SHARED_LOCK = threading.Lock()


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

    def current(self) -> T | None:
        """The value if it was built already (None: nobody asked for it yet)."""
        return self._value

    def replace(self, value: T) -> None:
        """Swap in a new value at once; callers holding the old one finish with it."""
        with self._lock:
            self._value = value


class Engine:
    """Sticker search and chat turns over the configured packs and models."""

    @classmethod
    def shared(cls, settings: Settings) -> "Engine":
        """The process's engine for ``settings``: one Engine per process, so models load once
        whoever asks (a command, the studio of a command, a test session's fixture)."""
        with _SHARED_LOCK:
            if settings not in _SHARED:
                _SHARED[settings] = cls(settings)
            return _SHARED[settings]

    def __init__(self, settings: Settings | None = None, parent: "Engine | None" = None) -> None:
        settings = settings or Settings.from_env()
        primary, routes = routed_encoders(settings.text_encoder)
        self.settings = replace(settings, text_encoder=primary)
        self.settings.apply_offline_mode()
        self.parent = parent  # the engine a language reader serves (see _language_reader)
        self.device = self.settings.resolved_device()
        self.encoder = Lazy("text encoder", lambda: self._text_encoder(self.settings.text_encoder))
        self.scheme = scheme(self.settings.label_scheme)  # what people see; Ekman-7 inside
        self.registry = Registry(self.settings.data_dir / REGISTRY_DIR)
        self.emotion = parent.emotion if parent else Lazy(
            "emotion models", lambda: self._load_emotion(self._model_folder("prerecognizer")))
        self.readers = {language: Lazy(f"{language} reader",
                                       partial(self._language_reader, language, encoder))
                        for language, encoder in routes.items()}
        self.image_tower = Lazy("image tower", self._image_tower)
        self.live = Lazy("sticker index", lambda: self._build_live(previous=None))
        self.reply_backend = Lazy("reply backend", self._create_reply_backend)
        self.described_emotion = Lazy("emotion descriptions",
                                      lambda: DescribedEmotion(self.encoder.get()))
        self.responses = Lazy("response selector", lambda: ResponseSelector.load(
            self.encoder.get().key, self.encoder.get().dim))
        self.fallback_replies = Lazy("retrieval replies", self._corpus_replies)
        self.ocr = StickerOCR()
        self.lexicon = NadeEmotion()
        self.usage_counts = read_usage()
        self.serving = {role: getattr(self.registry.live(role), "id", None)  # version ids
                        for role in SERVED_ROLES}  # of the models this engine serves
        self.selector = self.zero_shot_selector() if parent else \
            self._load_selector(self._model_folder("selector"))
        self._library_lock = threading.Lock()  # one pack change at a time
        self.sticker_overrides: dict[str, dict] = {}  # people's corrections: id → fields
        self.sticker_head = None if parent else self._load_head(self.registry.live("sticker-emotion"))
        self.jobs = parent.jobs if parent else JobRunner(
            self.settings.data_dir / JOBS_DIR, self.settings.training_jobs,
            self.settings.training_threads, on_finished=self.adopt)

    def _language_reader(self, language: str, encoder: str) -> "Engine":
        """The engine that reads messages in ``language`` (the ``auto`` text encoder): its own
        encoder, index, image tower, response selector, send threshold and corpus replies in
        that language; this engine's emotion models, sticker emotions, corrections, reply
        model and jobs. It serves search and chat turns only; everything else stays here."""
        return Engine(replace(self.settings, text_encoder=encoder,
                              retrieval_corpus=self._corpus_of(language)), parent=self)

    def _corpus_of(self, language: str) -> str:
        """A language reader's corpus replies: the configured files (e.g. MOD's Chinese
        dialogues) and the shipped corpus of its language, not chitchat's English ones (a
        reply in the message's language wins whenever there is one; embedding 10k English
        turns with a second encoder would only slow its start)."""
        sources = [s for s in self.settings.retrieval_corpus.split(":") if s.strip() != "chitchat"]
        if language == "zh" and CHINESE_CORPUS not in sources:
            sources.append(CHINESE_CORPUS)
        return ":".join(sources)

    def reader_of(self, dialogue: Dialogue) -> "Engine":
        """The engine that reads ``dialogue``: the reader of its last turn's language. Each
        step of a turn (mood, reply, its check, stickers, the send threshold) asks it, so a
        turn composed of the cluster's deployments is read as one process reads it."""
        if "zh" in self.readers and dialogue.turns and is_chinese(dialogue.turns[-1].content()):
            return self.readers["zh"].get()
        return self

    def _image_tower(self):
        """The configured tower; the bundled one with another text encoder than it was trained
        for is turned off (a log line says how to train a matching one)."""
        try:
            return create_image_tower(self.settings.image_tower, self.encoder.get(),
                                      self.device) or NO_TOWER
        except TowerMismatch as mismatch:
            log.warning("%s; sticker pictures are left out of the ranking", mismatch)
            return NO_TOWER

    def _text_encoder(self, name: str):
        copies = self.settings.encoder_copies or \
            (1 if self.device != "cpu" else min(4, os.cpu_count() or 1))
        onnx_dir = self.settings.data_dir / MODELS_DIR if self.settings.text_runtime == "onnx" else None
        return create_text_encoder(name, self.device, copies, onnx_dir)

    def emotion_encoder(self):
        """The emotion models read MiniLM embeddings: the engine's own encoder when it is
        MiniLM (one cache for both), else a second MiniLM just for them."""
        if self.settings.text_encoder == EMOTION_SPACE:
            return self.encoder.get()
        return self._text_encoder(EMOTION_SPACE)

    def _create_reply_backend(self) -> ReplyBackend:
        if self.parent and self.settings.reply_backend != "retrieval":  # one reply model
            return self.parent.reply_backend.get()
        return create_reply_backend(self.settings, self.device, self._retrieval_reply)

    def _corpus_replies(self) -> RetrievalReply:
        """The corpus replies a generated reply is checked against: the backend's own when it
        is the retrieval backend (embedded once)."""
        backend = self.reply_backend.get()
        return backend if isinstance(backend, RetrievalReply) else self._retrieval_reply()

    def _retrieval_reply(self) -> RetrievalReply:
        """Replies from real conversations, embedded once (cached under data/cache); the
        corpus setting may name several sources, ``:``-separated (e.g. chitchat and MOD's
        Chinese dialogues: a Chinese message is then answered in Chinese)."""
        from engine.corpora import read_conversations
        from engine.encoders import encode_dialogues

        dialogues = [dialogue for source in self.settings.retrieval_corpus.split(":")
                     for dialogue in read_conversations(source.strip(),
                                                        self.settings.retrieval_conversations)]
        encoded = encode_dialogues(self.encoder.get(), dialogues, self.settings.data_dir / CACHE_DIR)
        return RetrievalReply.from_dialogues(dialogues, [e.vectors for e in encoded],
                                             self.text_emotions, self._dialogue_vector,
                                             remember=self.encoder.get().remember,
                                             selector=self.responses.get())

    def text_emotions(self, texts: list[str], vectors: np.ndarray) -> np.ndarray:
        """Ekman-7 of each text, read from its vector in the engine's encoder space (the
        emotion models embed the texts again when they use another encoder)."""
        emotion = self.emotion.get()
        if emotion.encoder is not self.encoder.get():
            vectors = emotion.encoder.encode(texts)
        return emotion.recognize_vectors(vectors)

    @property
    def user_packs_dir(self) -> Path:
        return self.settings.data_dir / "packs"

    def pack_dirs(self) -> list[Path]:
        """Configured packs first, then the packs people added (in name order); a folder an
        ingest was still writing when the app was killed (``.name-…``) is none of them."""
        added = sorted(p for p in self.user_packs_dir.glob("*")
                       if not p.name.startswith(".") and (p / "pack.json").is_file()) \
            if self.user_packs_dir.is_dir() else []
        return [*self.settings.packs, *added]

    def warm_up(self, reply: bool = True) -> threading.Thread:
        """Load everything in a background thread, so the first request waits less or not at all."""
        parts = [self.live, self.responses, self.described_emotion] + (
            [self.reply_backend, self.fallback_replies] if reply else [])

        def load_all() -> None:
            for part in [*parts, *self.readers.values()]:  # English first, then the others
                try:
                    loaded = part.get()
                    if part in self.readers.values():
                        loaded.warm_up(reply).join()
                except Exception:  # the request that needs it will raise it again, visibly
                    log.exception("background loading of %s failed", part.name)
            if reply and not self.parent and not isinstance(self.reply_backend.current(), RetrievalReply):
                try:
                    load_dictionaries()  # what the checks of generated replies read
                except Exception:
                    log.exception("loading the reply checks' dictionaries failed")

        thread = threading.Thread(target=load_all, name="memeui-warm-up", daemon=True)
        thread.start()
        return thread

    @property
    def index_root(self) -> Path:
        """Where this engine's index versions lie (a language reader's apart, so that pruning
        one engine's old versions never removes the other's live one)."""
        root = self.settings.data_dir / INDEX_DIR
        return root / f"reader-{self.encoder.get().key}" if self.parent else root

    def _build_live(self, previous: LiveVersion | None) -> LiveVersion:
        self.live_pack_dirs = self.pack_dirs()  # what catch_up compares the disk with
        owner = self.parent or self  # a reader serves its engine's corrections and emotions
        library = StickerLibrary.load(self.live_pack_dirs, owner.sticker_overrides)
        encoder, tower = self.encoder.get(), self.image_tower.get()
        chinese = encoder_facts(encoder.name).multilingual
        index = index_versions.open_or_build(
            root=self.index_root,
            key=index_versions.index_key(
                f"{library.fingerprint()}{self.emotion.get().fingerprint}lex{LEXICON_WEIGHT}"
                f"kao{KAOMOJI_WEIGHT}"
                f"{self.sticker_reader}{'zh' if chinese else ''}",
                                         encoder.key,
                                         tower.name if tower is not NO_TOWER else "none"),
            stickers=library.stickers,
            encode=encoder.encode,
            estimate_emotions=self._sticker_emotions,
            previous=previous.index if previous else None,
            encode_images=None if tower is NO_TOWER else partial(encode_sticker_images, tower),
            reader=self.sticker_reader,
            describe=partial(Sticker.text, chinese=chinese),
        )
        usage = usage_prior([library.by_id[i] for i in index.sticker_ids], self.usage_counts)
        return LiveVersion.of(library, index, usage, encoder.dim)

    def read_sticker_emotions(self, stickers: list[Sticker], vectors: np.ndarray | None = None,
                              fine_tuned: bool = True) -> np.ndarray:
        """What the models read of each sticker's emotion (Ekman-7), ignoring people's labels:
        the bundled reader (the recognizer over everything written of it, mixed with the
        emotion lexicon model nade over the same words), or, once one is promoted, that reading
        corrected by people's labels of stickers named and read alike (``StickerEmotionHead``)."""
        texts = [sticker.text() for sticker in stickers]
        if vectors is None:
            vectors = self.encoder.get().encode(texts)
        recognized = self.text_emotions(texts, vectors)
        lexical = self.lexicon.predict_ekman([_sticker_words(s) for s in stickers])
        mixed = (1 - LEXICON_WEIGHT) * recognized + LEXICON_WEIGHT * lexical
        reading = bundled_lexicon().weigh(
            mixed / mixed.sum(axis=1, keepdims=True),
            [sticker_terms(s.label, s.tags, s.label_zh, s.tags_zh) for s in stickers], KAOMOJI_WEIGHT)
        head = self.sticker_head
        if not fine_tuned or head is None:
            return reading
        return head[1].predict(vectors, reading)

    @property
    def sticker_reader(self) -> str:
        """The sticker emotion model serving now: a version id, or "" for the bundled reader
        (a language reader's: its engine's index version, whose emotions it serves)."""
        if self.parent:
            return f"of-{self.parent.live.get().index.key}"
        return self.sticker_head[0] if self.sticker_head else ""

    def _sticker_emotions(self, stickers: list[Sticker], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Ekman-7 per sticker: a label people gave wins (in the deployment's scheme, or any
        scheme that names it), otherwise what the models read of its words. A language
        reader serves its engine's, so that a sticker reads alike in every language."""
        if self.parent:
            index = self.parent.live.get().index
            rows = {sticker_id: row for row, sticker_id in enumerate(index.sticker_ids)}
            return list(index.emotion_labels), index.emotions[[rows[s.id] for s in stickers]]
        emotions = self.read_sticker_emotions(stickers, vectors)
        for row, sticker in enumerate(stickers):
            given = self._given_emotion(sticker.emotion)
            if given is not None:
                emotions[row] = given
        return list(EKMAN7), emotions

    def _given_emotion(self, label: str) -> np.ndarray | None:
        if not label.strip():
            return None
        for candidate in (self.scheme, *SCHEMES.values()):
            if candidate.ekman_links is not None and label.strip().lower() in candidate.labels:
                return convert(candidate.one_hot(label), candidate.name, "ekman7")
        log.warning("sticker emotion %r is in no known label scheme; estimating it", label)
        return None

    def apply_sticker_corrections(self, overrides: dict[str, dict]) -> bool:
        """People's corrections (sticker id → label, tags, ocr, emotion) go live in a new
        index version; False when they are what is live already."""
        with self._library_lock:
            if overrides == self.sticker_overrides:
                return False
            live = self.live.get()
            self.sticker_overrides = {key: dict(value) for key, value in overrides.items()}
            self._switch_to(self._build_live(previous=live), live)
        return True

    def sticker_readings(self) -> list[dict]:
        """Every sticker of the live library with its emotion in the deployment's scheme,
        whether people or the model gave it, and the model's confidence."""
        live = self.live.get()
        shown = self.shown(live.index.emotions)
        readings = []
        for row, sticker_id in enumerate(live.index.sticker_ids):
            sticker = live.library.by_id[sticker_id]
            best = int(np.argmax(shown[row]))
            people = self._given_emotion(sticker.emotion) is not None
            readings.append({
                "id": sticker.id, "label": sticker.label, "pack": sticker.pack,
                "emoji": sticker.emoji, "emotion": self.scheme.labels[best],
                "emotion_source": "people" if people else "model",
                "confidence": round(float(shown[row, best]), 4),
                "tags": list(sticker.tags), "ocr": sticker.ocr, "file": str(sticker.path),
                "animated": sticker.animated})
        return readings

    @property
    def emotion_model_version(self) -> str:
        """Names the models that read emotions, recorded with every suggestion they make."""
        return self.sticker_reader or f"emotion-{self.emotion.get().fingerprint[:12]}"

    # ------------------------------------------------------------ fine-tuning

    def _model_folder(self, role: str) -> Path | None:
        """The live version's folder of ``role``; else the bundled model's (None: none)."""
        version = self.registry.live(role)
        if version is not None:
            return self.registry.folder(version)
        return Path(self.settings.prerecognizer) if role == "prerecognizer" else None

    def _load_emotion(self, prerecognizer: Path) -> ConversationEmotion:
        return ConversationEmotion.load(self.emotion_encoder(), prerecognizer,
                                        self.settings.recognizer)

    def _load_head(self, version) -> tuple[str, StickerEmotionHead] | None:
        """The promoted sticker reader; None (the bundled one) for none, for a version of the
        logistic head of before, or for one trained over another text encoder's vectors."""
        if version is None:
            return None
        folder = self.registry.folder(version)
        if not (folder / HEAD_FILE).is_file():
            log.warning("sticker-emotion version %s is of an older format; serving the bundled "
                        "reader (train again to use people's labels)", version.id)
            return None
        head = StickerEmotionHead.load(folder)
        if head.vectors.shape[1] != self.encoder.get().dim:
            log.warning("sticker-emotion version %s reads %d-d text vectors, not %s's; serving "
                        "the bundled reader", version.id, head.vectors.shape[1],
                        self.settings.text_encoder)
            return None
        return version.id, head

    def _load_selector(self, folder: Path | None) -> Selector:
        return self.zero_shot_selector() if folder is None else Selector.load(folder)

    def zero_shot_selector(self) -> Selector:
        return Selector(self.settings.emotion_weight, self.settings.image_weight,
                        self.settings.usage_weight, text_weight(self.settings.text_encoder))

    def sticker_feature_file(self) -> Path:
        """What the sticker recipes read of the live index, written once per index version:
        every sticker's text vector and bundled reading for the sticker-emotion head; its
        served emotion, usage and emoji besides for the selector."""
        live = self.live.get()
        path = self.settings.data_dir / CACHE_DIR / f"stickers-{live.index.key}.npz"
        if path.is_file():
            return path
        stickers = [live.library.by_id[i] for i in live.index.sticker_ids]
        vectors = live.index.index.reconstruct_n(0, live.index.index.ntotal)
        reading = self.read_sticker_emotions(stickers, vectors, fine_tuned=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.npz")
        np.savez(staging, ids=np.array(live.index.sticker_ids), readings=reading,
                 vectors=vectors, emotions=live.index.emotions, usage=live.usage,
                 emojis=np.array([sticker.emoji for sticker in stickers]))
        os.replace(staging, path)
        return path

    def train(self, recipe: str, snapshot: Path, trigger: str, meld: str | None = None) -> Job:
        """Queue a fine-tuning job on a label snapshot (a folder of Parquet files); each
        recipe starts from the live version of its role (``meld``: MELD's folder, whose train
        split the pre-recognizer recipe adds; by default the ``meld`` setting)."""
        base = self._model_folder(recipe) if recipe in ROLES else None
        args = {"snapshot": str(snapshot), "base": str(base or ""),
                "device": gpu.job_device(self.device)}
        if recipe == "sticker-emotion":
            args |= {"features": str(self.sticker_feature_file()),
                     "public": str(self.settings.sticker_check)}
        elif recipe == "prerecognizer":
            args |= {"encoder": EMOTION_SPACE, "meld": str(meld or self.settings.meld),
                     "cache": str(self.settings.data_dir / CACHE_DIR),
                     "rehearsal": self.settings.rehearsal_conversations}
        elif recipe == "selector":
            args |= {"stickers": str(self.sticker_feature_file()),
                     "encoder": self.settings.text_encoder,
                     "prerecognizer": str(self._model_folder("prerecognizer")),
                     "emotion_weight": self.settings.emotion_weight,
                     "image_weight": self.settings.image_weight,
                     "usage_weight": self.settings.usage_weight,
                     "threshold": self.sticker_threshold}
        return self.jobs.submit(recipe, args, trigger)  # an unknown recipe is refused there

    def adopt(self, job: Job, folder: Path) -> str:
        """A finished job's candidate: registered, gated against the live model on the
        held-out labels and the public check, and served at once if it is not worse."""
        live = self.registry.live(job.recipe)
        version = self.registry.add(job.recipe, folder, parent=live.id if live else None,
                                    snapshot=Path(job.args["snapshot"]).name,
                                    metrics=job.metrics, trigger=job.trigger)
        ok, note = gate(job.metrics["candidate"], job.metrics["live"],
                        GATE_KEYS_OF_ROLE.get(job.recipe, GATE_KEYS))
        if not ok:
            self.registry.reject(version, note)
            return f"rejected {version.id}: {note}"
        self.promote(job.recipe, version.id, note)
        return f"promoted {version.id}: {note}"

    def promote(self, role: str, version_id: str, note: str = "") -> None:
        """Serve ``version_id`` now: requests in flight finish on the version they started."""
        version = self.registry.get(role, version_id)
        self._serve(role, version)
        self.registry.promote(role, version_id, note)  # on record once it answers requests

    def catch_up(self) -> list[str]:
        """Serve what the shared storage says is live, when another process changed it (a
        promotion or rollback in the registry, a pack added or removed): what a replica of
        the cluster runs every few seconds. Returns what changed."""
        changed = []
        for role in SERVED_ROLES:
            live = self.registry.live(role)
            if (live.id if live else None) != self.serving.get(role):
                self._serve(role, live)
                changed.append(role)
        if self.live.current() is not None and self.pack_dirs() != self.live_pack_dirs:
            with self._library_lock:
                live = self.live.get()
                self._switch_to(self._build_live(previous=live), live)
            changed.append("packs")
        return changed

    def rollback(self, role: str, version_id: str | None = None) -> None:
        self.registry.rollback(role, version_id)
        self._serve(role, self.registry.live(role))

    def _serve(self, role: str, version) -> None:
        """Swap the model of ``role`` for ``version`` (None: the bundled one). Emotion models
        and sticker readers change what the index holds, so a new index version goes live
        with them; a request holds the objects it started with until it ends."""
        if role not in SERVED_ROLES:
            raise ValueError(f"{role} versions are not served by this engine; served: "
                             f"{', '.join(SERVED_ROLES)}")
        folder = self.registry.folder(version) if version else None
        self.serving[role] = version.id if version else None
        if role == "selector":
            self.selector = self._load_selector(folder)
            return
        with self._library_lock:
            live = self.live.get()
            if role == "sticker-emotion":
                self.sticker_head = self._load_head(version)
            else:
                self.emotion.replace(self._load_emotion(folder or Path(self.settings.prerecognizer)))
            self._switch_to(self._build_live(previous=live), live)

    @property
    def sticker_threshold(self) -> float:
        """Below this score the bot sends no sticker: the live selector's (learned from people's
        "no sticker" answers), else the setting, else the one calibrated for the text encoder
        (`memeui train threshold`)."""
        if self.selector.threshold is not None:
            return self.selector.threshold
        if self.settings.sticker_threshold >= 0:
            return self.settings.sticker_threshold
        return read_threshold(self.settings.text_encoder)

    def send_threshold(self, dialogue: Dialogue) -> float:
        """The sticker threshold of the engine that reads ``dialogue``."""
        return self.reader_of(dialogue).sticker_threshold

    def shown(self, ekman: np.ndarray) -> np.ndarray:
        """Ekman-7 distributions in the deployment's label scheme."""
        return convert(ekman, "ekman7", self.scheme.name)

    # ------------------------------------------------------------ the library

    def add_pack(self, source: Path, name: str | None = None, ocr: bool = True,
                 limits: Limits = Limits(), progress=lambda fraction, message: None) -> IngestReport:
        """Ingest a folder, zip or file as pack ``name``, then switch to the index that has it."""
        name = check_pack_name(name or Path(source).stem)
        with self._library_lock:
            live = self.live.get()
            report = self._ingest(source, name, live.library.packs, set(live.library.by_id),
                                  ocr, limits, progress)
            self._switch_to(self._build_live(previous=live), live)
        return report

    def _ingest(self, source: Path, name: str, packs: list[str], known_ids: set[str], ocr: bool,
                limits: Limits, progress) -> IngestReport:
        """Write pack ``name`` into the added packs' folder (``packs``, ``known_ids``: the
        library's now)."""
        if name in packs:
            raise IngestError(f"a pack named {name!r} exists already: remove it or pick "
                              "another name")
        self.user_packs_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.user_packs_dir.glob(".*"):  # left by a kill mid-ingest
            if time.time() - stale.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(stale, ignore_errors=True)
        return build_pack(Path(source), self.user_packs_dir / name, name, limits,
                          ocr=self.ocr if ocr else None, known_ids=known_ids, progress=progress)

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
            self._switch_to(self._build_live(previous=live), live)

    def _switch_to(self, new: LiveVersion, old: LiveVersion) -> None:
        """Go live with ``new``; old versions beyond a few spares leave the disk. Language
        readers that serve already follow at once (the same stickers, emotions, corrections)."""
        self.live.replace(new)
        index_versions.prune(self.index_root, keep={new.index.key, old.index.key})
        for reader in self.readers.values():
            if reader.current() is not None and reader.current().live.current() is not None:
                engine = reader.current()
                engine._switch_to(engine._build_live(previous=engine.live.get()), engine.live.get())

    def library(self) -> StickerLibrary:
        """The stickers being served (the live index version's)."""
        return self.live.get().library

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
        query = query if isinstance(query, str) and "\n" in query.strip() else check_message(query)
        dialogue = Dialogue.from_transcript(query)
        return self.select_stickers(dialogue, self.mood(dialogue), k, emotion)

    def mood(self, dialogue: Dialogue) -> np.ndarray:
        """The mood the bot answers in (``forecast_mood``). A Chinese last turn with a
        multilingual text encoder is read through that encoder instead (``DescribedEmotion``):
        the emotion models read MiniLM vectors, which cannot read Chinese."""
        if (reader := self.reader_of(dialogue)) is not self:
            return reader.mood(dialogue)
        last = dialogue.turns[-1].content()
        if encoder_facts(self.settings.text_encoder).multilingual and is_chinese(last):
            return self.described_emotion.get().read(last)
        return forecast_mood(self.emotion.get(), dialogue, self.described_emotion.get())

    def select_stickers(self, dialogue: Dialogue, mood: np.ndarray, k: int,
                        emotion: str | None = None, reply: str = "") -> list[SearchResult]:
        """Rank stickers for a dialogue: text similarity to recent turns plus emotion fit.
        ``reply``: the bot's text that the sticker goes with (see ``_sticker_query``)."""
        if (reader := self.reader_of(dialogue)) is not self:
            return reader.select_stickers(dialogue, mood, k, emotion, reply)
        live = self.live.get()  # this request's version, even if a new one goes live meanwhile
        if emotion and emotion not in self.scheme.labels:
            raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(self.scheme.labels)}")
        wanted = self.scheme.index(emotion) if emotion else None
        query = self._sticker_query(dialogue, reply)
        ranked = rank(live, self.selector, query, dialogue.turns[-1].content(), mood, k,
                      keep=(lambda rows: self.shown(live.index.emotions[rows]).argmax(axis=1) == wanted)
                      if emotion else None,
                      image_similarity=lambda rows: self._image_similarity(live, dialogue, query, rows))
        return [self._result(live, r.row, r.score, r.parts) for r in ranked]

    def _sticker_query(self, dialogue: Dialogue, reply: str) -> np.ndarray:
        """The dialogue's query vector, nudged towards the bot's reply only as far as the reply
        is about the user's last turn: a sticker answers the user; an off-topic reply (a weak
        model's, or a corpus reply) must not drag it to the reply's nouns."""
        query = self._dialogue_vector(dialogue)
        if not reply:
            return query
        last, said = self.encoder.get().encode_turns([dialogue.turns[-1].content(), reply])
        weight = REPLY_WEIGHT * max(0.0, float(last @ said))
        nudged = query + weight * said
        return (nudged / max(float(np.linalg.norm(nudged)), 1e-12)).astype(np.float32)

    def _image_similarity(self, live: LiveVersion, dialogue: Dialogue, text_query: np.ndarray,
                          rows: np.ndarray) -> np.ndarray | None:
        """Dialogue ↔ sticker picture (IEF's QI), in the image tower's space."""
        tower = self.image_tower.get()
        if tower is NO_TOWER or live.index.images is None:
            return None
        query = text_query if isinstance(tower, LitTower) else \
            self._dialogue_vector(dialogue, tower.encode_texts)
        return (live.index.images[rows] @ query)[None, :]

    def search_image(self, image_path: Path, k: int = 8) -> list[SearchResult]:
        """Stickers that look like the given picture (image-tower space), best first."""
        tower = self.image_tower.get()
        live = self.live.get()
        if tower is NO_TOWER or live.index.images is None:
            raise ValueError("search by image needs an image tower (MEMEUI_IMAGE_TOWER)")
        query = tower.encode_images([read_frames(image_path)])[0]
        similarity = live.index.images @ query
        rows = np.argsort(-similarity)[:k]
        return [self._result(live, int(row), float(similarity[row]),
                             {"image": float(similarity[row])}) for row in rows]

    def describe_image(self, image_path: Path) -> str:
        """What the bot reads of a picture a user sends: the text in it (OCR), else its name."""
        text = self.ocr(read_frames(image_path)) if self.settings.ocr else ""
        return text or f"a picture called {Path(image_path).stem}"

    def _dialogue_vector(self, dialogue: Dialogue, encode=None) -> np.ndarray:
        return dialogue_vector(dialogue, encode or self.encoder.get().encode_turns)

    def _result(self, live: LiveVersion, row: int, score: float,
                parts: dict[str, float]) -> SearchResult:
        sticker = live.library.by_id[live.index.sticker_ids[row]]
        emotion = self.scheme.labels[int(np.argmax(self.shown(live.index.emotions[row])))]
        return SearchResult(id=sticker.id, label=sticker.label, score=score, path=sticker.path,
                            emotion=emotion, emoji=sticker.emoji, pack=sticker.pack, parts=parts)

    def read_emotion(self, dialogue: Dialogue, next_speaker: str | None = None,
                     scheme_name: str | None = None):
        """Each turn's emotion and the forecast for ``next_speaker`` (by default whoever spoke
        before the last speaker, as in a two-person chat), in the deployment's scheme unless
        another is asked for."""
        if not dialogue.turns:
            raise ValueError("The conversation is empty: add a turn first.")
        if not next_speaker:
            others = [s for s in reversed(dialogue.speakers) if s != dialogue.speakers[-1]]
            next_speaker = others[0] if others else "bot"
        return self.emotion.get().read(dialogue, next_speaker.strip(),
                                       scheme(scheme_name or self.scheme.name).name)

    def chat(self, dialogue: Dialogue) -> Reply:
        """The bot's next turn: mood, then text, then the sticker that fits both."""
        for step in self.chat_stream(dialogue):
            pass
        return step

    def chat_stream(self, dialogue: Dialogue) -> Iterator[str | Reply]:
        """The bot's next turn as it is made: the reply text so far (str) while the backend
        writes, then the finished Reply. Raises ReplyError when the backend cannot answer."""
        if not dialogue.turns:
            raise ValueError("The conversation is empty: say something first.")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        mood = self.mood(dialogue)
        timings["mood"] = ms_since(started)

        step, text = time.perf_counter(), ""
        try:
            for piece in self.reply_pieces(dialogue, mood):
                timings.setdefault("first_text", ms_since(started))
                text += piece
                yield text
        except ReplyError:
            raise
        except Exception as error:  # a backend's own failure: said plainly, logged in full
            log.exception("the reply backend failed")
            raise ReplyError(f"The reply backend failed ({type(error).__name__}): try "
                             "again.") from None
        text = tidy_reply(text, whole=self.settings.reply_backend == "retrieval")
        if not text:
            raise ReplyError("The reply backend returned nothing: try again.")
        timings["reply"] = ms_since(step)
        said, source = self.checked_reply(dialogue, mood, text, timings)
        if said != text:
            text = said
            yield text

        step = time.perf_counter()
        ranked = self.select_stickers(dialogue, mood, 1 + self.settings.alternatives, reply=text)
        timings["sticker"] = ms_since(step)
        timings["total"] = ms_since(started)
        fits = bool(ranked) and ranked[0].score >= self.send_threshold(dialogue)
        yield Reply(
            text=text,
            sticker=ranked[0] if fits else None,  # MOD's meme-usage flag: none beats a misfit
            mood={label: float(p) for label, p in zip(self.scheme.labels, self.shown(mood))},
            alternatives=ranked[1:] if fits else ranked[: self.settings.alternatives],
            timings_ms=timings,
            source=source,
        )

    def reply_pieces(self, dialogue: Dialogue, mood: np.ndarray) -> Iterator[str]:
        """The reply backend's text as it writes it (the cluster's engine streams it from the
        Reply deployment instead)."""
        if (reader := self.reader_of(dialogue)) is not self:
            return reader.reply_pieces(dialogue, mood)
        return self.reply_backend.get().stream(dialogue, mood)

    def checked_reply(self, dialogue: Dialogue, mood: np.ndarray, text: str,
                      timings: dict[str, float]) -> tuple[str, str]:
        """``text`` as the checks allow it (``engine/chat/checks.py``), with where it came
        from; a retrieval backend's reply is a corpus reply already."""
        if (reader := self.reader_of(dialogue)) is not self:
            return reader.checked_reply(dialogue, mood, text, timings)
        backend = self.reply_backend.get()
        if isinstance(backend, RetrievalReply):
            return text, "retrieval"
        return checks.checked_reply(
            dialogue, mood, text, backend, self.reply_problem,
            lambda d, m: self.fallback_replies.get().choose(d, m), timings,
            self.answer_scores if self.weighs_against_corpus else None)

    @property
    def weighs_against_corpus(self) -> bool:
        """Whether this backend's replies give way to a corpus reply that answers better."""
        names = {name.strip() for name in self.settings.weigh_against_corpus.split(",")}
        return "all" in names or self.settings.reply_backend in names

    def reply_problem(self, dialogue: Dialogue, text: str) -> str:
        """Why ``text`` should not be said after ``dialogue`` ("" if it may)."""
        selector = self.responses.get()
        return checks.reply_problem(
            dialogue, text, lambda context, reply: self.answer_scores(context, [reply])[0] >= selector.floor)

    def answer_scores(self, context: list[str], replies: list[str]) -> np.ndarray:
        """How well each reply answers the context's turns: the response selector's score."""
        vectors = self.encoder.get().encode_turns([*context, *replies])
        return self.responses.get().scores(recency_vector(vectors[:len(context)]),
                                           vectors[len(context):])[0]


def _sticker_words(sticker: Sticker) -> str:
    """A sticker's words as the lexicon model reads them: label, tags and its own text."""
    return " ".join([sticker.label, *sticker.tags, sticker.ocr, sticker.caption]).strip()
