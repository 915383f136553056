"""The engine's services as Ray Serve deployments, sized by the settings file (``config``).

- ``Encoder``: text → vectors, ``@serve.batch`` (one model call for the requests that arrive
  within a few ms); every other replica reads text through it, so the text model sits in one
  place (and on one shared GPU, with ``num_gpus`` < 1).
- ``Stickers``: ranking over the live index version; ``Emotion``: turn emotions, forecast,
  the bot's mood; ``Reply``: the reply text, streamed through the handle, and its checks.
- ``ChatTurn``: mood, then reply, then sticker, composed from the three (no model of its own).

Every replica runs the same ``Engine`` code over the shared data dir, so the cluster answers as
one process does; each looks for a promoted model or a new index version every ``refresh_s``
(``Engine.catch_up``), and a request in flight finishes on the objects it started with.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Iterator

import numpy as np
from ray import serve

from engine.cluster.client import ClusterEngine, RemoteEncoder
from engine.cluster.config import ClusterConfig
from engine.dialogue import Dialogue, Reply, SearchResult
from engine.engine import Engine
from engine.settings import Settings

log = logging.getLogger(__name__)


class ReplicaEngine(Engine):
    """The engine of one replica: its text model is the Encoder deployment's (``encoder``
    given) or its own (the Encoder replica itself)."""

    def __init__(self, encoder=None) -> None:
        self._remote_encoder = encoder
        super().__init__(Settings.from_env())

    def _text_encoder(self, name: str):
        if self._remote_encoder is not None and name == self.settings.text_encoder:
            return RemoteEncoder(self._remote_encoder, timeout_s=self.settings.reply_timeout)
        return super()._text_encoder(name)


def follow_shared_storage(engine: Engine, every_s: float) -> threading.Thread:
    """``engine.catch_up()`` every ``every_s`` in a daemon thread, for the replica's life."""
    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(every_s):
            try:
                changed = engine.catch_up()
                if changed:
                    log.info("caught up with the shared storage: %s", ", ".join(changed))
            except Exception:  # the next round tries again; requests keep being answered
                log.exception("catching up with the shared storage failed")

    thread = threading.Thread(target=loop, name="memeui-catch-up", daemon=True)
    thread.start()
    return thread


@serve.deployment
class Encoder:
    def __init__(self, max_batch_size: int = 32, batch_wait_timeout_s: float = 0.002) -> None:
        self.engine = ReplicaEngine()
        self.model = self.engine.encoder.get()
        self.encode.set_max_batch_size(max_batch_size)
        self.encode.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def facts(self) -> dict:
        return {"name": self.model.name, "key": self.model.key, "dim": self.model.dim}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def encode(self, calls: list[list[str]]) -> list[np.ndarray]:
        """Each call's texts → its vectors, from one model call for the whole batch."""
        texts = [text for call in calls for text in call]
        vectors = self.model.encode_turns(texts) if texts else np.zeros((0, self.model.dim), np.float32)
        out, start = [], 0
        for call in calls:
            out.append(vectors[start:start + len(call)])
            start += len(call)
        return out


class _Served:
    """What every model-holding replica shares: its engine over the Encoder, its models
    loading in the background from the start, following the shared storage, and the version
    ids it serves (what a test or `cluster status` asks). A handle is not called in a
    constructor (Serve runs it on the replica's event loop): the loading thread does."""

    def __init__(self, encoder, refresh_s: float) -> None:
        self.engine = ReplicaEngine(encoder)
        self.loading = threading.Thread(target=self._load_logged, name="memeui-replica-load",
                                        daemon=True)
        self.loading.start()
        follow_shared_storage(self.engine, refresh_s)

    def load(self) -> None:
        """What this replica's requests need, before they come (they wait on it otherwise)."""

    def readers(self) -> list[Engine]:
        """The engine's language readers, built (their own encoder, in this replica): a
        Chinese message's steps are theirs."""
        return [reader.get() for reader in self.engine.readers.values()]

    def _load_logged(self) -> None:
        try:
            self.load()
        except Exception:  # the requests that need it raise it again, visibly
            log.exception("loading this replica's models failed")

    def versions(self) -> dict:
        live = self.engine.live.current()
        return {**self.engine.serving, "index": live.index.key if live is not None else None,
                "pid": os.getpid()}


@serve.deployment
class Stickers(_Served):
    def load(self) -> None:
        self.engine.live.get()
        for reader in self.readers():
            reader.live.get()

    def search(self, query: str, k: int = 8, emotion: str | None = None) -> list[SearchResult]:
        return self.engine.search(query, k, emotion)

    def select(self, dialogue: Dialogue, mood: np.ndarray, k: int, emotion: str | None = None,
               reply: str = "") -> list[SearchResult]:
        return self.engine.select_stickers(dialogue, mood, k, emotion, reply)

    def threshold(self, dialogue: Dialogue | None = None) -> float:
        return self.engine.send_threshold(dialogue) if dialogue else self.engine.sticker_threshold

    def readings(self) -> list[dict]:
        return self.engine.sticker_readings()

    def packs(self) -> list[dict]:
        return self.engine.list_packs()

    def model_version(self) -> str:
        return self.engine.emotion_model_version


@serve.deployment
class Emotion(_Served):
    def load(self) -> None:
        self.engine.emotion.get()
        for engine in [self.engine, *self.readers()]:
            engine.described_emotion.get()  # the emotion words' reading of the last turn

    def mood(self, dialogue: Dialogue) -> np.ndarray:
        return self.engine.mood(dialogue)

    def read(self, dialogue: Dialogue, next_speaker: str | None, scheme_name: str | None):
        return self.engine.read_emotion(dialogue, next_speaker, scheme_name)


@serve.deployment
class ReplyText(_Served):  # deployed as "Reply"
    def load(self) -> None:
        for engine in [self.engine, *self.readers()]:
            engine.reply_backend.get()
            engine.fallback_replies.get()

    def stream(self, dialogue: Dialogue, mood: np.ndarray) -> Iterator[str]:
        yield from self.engine.reply_pieces(dialogue, mood)

    def checked(self, dialogue: Dialogue, mood: np.ndarray, text: str) -> tuple[str, str, dict]:
        timings: dict[str, float] = {}
        said, source = self.engine.checked_reply(dialogue, mood, text, timings)
        return said, source, timings


@serve.deployment
class ChatTurn:
    """The chat turn of ``Engine.chat_stream``, its steps calls to the other deployments."""

    def __init__(self, stickers, emotion, reply, timeout_s: float = 30.0) -> None:
        self.engine = ClusterEngine(Settings.from_env(), handles={
            "Stickers": stickers, "Emotion": emotion, "Reply": reply}, timeout_s=timeout_s,
            compose=True)

    def stream(self, dialogue: Dialogue) -> Iterator[str | Reply]:
        yield from self.engine.chat_stream(dialogue)


def build_app(config: ClusterConfig | None = None, environ: dict[str, str] | None = None):
    """The Serve application of ``config``: every deployment with its options, bound to the
    handles it calls."""
    config = config or ClusterConfig.load()
    sized = {name: deployment.options(name=name, **config.options(name, environ))
             for name, deployment in (("Encoder", Encoder), ("Stickers", Stickers),
                                      ("Emotion", Emotion), ("Reply", ReplyText),
                                      ("ChatTurn", ChatTurn))}
    encoder = sized["Encoder"].bind(**config.batching("Encoder"))
    stickers = sized["Stickers"].bind(encoder, config.refresh_s)
    emotion = sized["Emotion"].bind(encoder, config.refresh_s)
    reply = sized["Reply"].bind(encoder, config.refresh_s)
    return sized["ChatTurn"].bind(stickers, emotion, reply, config.timeout_s)
