"""The engine of an app process without models (``MEMEUI_ENGINE=ray``): the same ``Engine``,
whose model-holding steps are calls to the Serve deployments (``deployments``) through their
handles. The UI, CLI and API call it as they call the in-process one.

Every call has a timeout and, when it fails, says which deployment did: a replica that died
with the call ("busy, try again"; Serve starts another and routes the next calls to the ones
alive), a deployment too slow, or the request's own refusal (a ValueError, raised as is).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.chat.backends import ReplyError
from engine.dialogue import Dialogue, Reply, SearchResult
from engine.encoders import TextEncoder
from engine.engine import Engine
from engine.settings import Settings
from engine.stickers.ingest import IngestError, IngestReport, Limits, check_pack_name
from engine.stickers.library import StickerLibrary

log = logging.getLogger(__name__)


class ClusterBusy(ReplyError, ValueError):
    """A deployment did not answer (a replica died with the call, or it was too slow): the
    caller is told to try again. Caught wherever a refusal (ValueError) or a failed reply
    (ReplyError) is, so every face says it plainly."""


PASSED_ON = (ValueError, ReplyError, FileNotFoundError)  # a replica's answer to the request itself


def failure(deployment: str, method: str, error: BaseException, timeout_s: float) -> BaseException:
    """What the caller sees of a failed call to ``deployment``: the request's own refusal as
    it was raised, else ClusterBusy naming the deployment."""
    cause = getattr(error, "cause", None)
    if isinstance(error, PASSED_ON) and cause is None and not _is_ray_error(error):
        return error
    if isinstance(cause, PASSED_ON):
        return cause
    if isinstance(error, TimeoutError):
        return ClusterBusy(f"the {deployment} deployment did not answer {method} in "
                           f"{timeout_s:g} s: busy, try again")
    log.warning("%s.%s failed: %r", deployment, method, error)
    return ClusterBusy(f"the {deployment} deployment failed ({type(error).__name__}): "
                       "busy, try again")


def _is_ray_error(error: BaseException) -> bool:
    return type(error).__module__.startswith("ray.")


class Deployments:
    """Handles to the application's deployments, by name; each call with a timeout."""

    def __init__(self, handles: dict | None, app_name: str, timeout_s: float) -> None:
        self._handles = dict(handles or {})
        self.app_name, self.timeout_s = app_name, timeout_s
        self._lock = threading.Lock()

    def handle(self, name: str):
        with self._lock:
            if name not in self._handles:
                connect()  # first: it says how Ray authenticates before Ray loads
                from ray import serve

                self._handles[name] = serve.get_deployment_handle(name, app_name=self.app_name)
            return self._handles[name]

    def call(self, name: str, method: str, *args):
        try:
            return getattr(self.handle(name), method).remote(*args).result(timeout_s=self.timeout_s)
        except Exception as error:  # noqa: BLE001 - every failure is told, by deployment
            raise failure(name, method, error, self.timeout_s) from None

    def stream(self, name: str, method: str, *args) -> Iterator:
        """A streaming method's items; each must come within the timeout."""
        responses = getattr(self.handle(name).options(stream=True), method).remote(*args)
        items: queue.Queue = queue.Queue()

        def pump() -> None:
            try:
                for item in responses:
                    items.put((True, item))
                items.put((False, None))
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                items.put((False, error))

        threading.Thread(target=pump, name=f"memeui-{name}-stream", daemon=True).start()
        while True:
            try:
                more, value = items.get(timeout=self.timeout_s)
            except queue.Empty:
                responses.cancel()
                raise failure(name, method, TimeoutError(), self.timeout_s) from None
            if not more:
                if value is None:
                    return
                raise failure(name, method, value, self.timeout_s) from None
            yield value


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (else ``RAY_ADDRESS``, else the local head) once."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # as `ray start` runs the head (Ray 2.60)
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # after a shutdown, Serve's client
    # threads would join a new Ray session, which kills this process once the head is gone
    import ray

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto",
                 log_to_driver=False, logging_level=logging.WARNING)


class RemoteEncoder(TextEncoder):
    """The Encoder deployment as a text encoder: vectors come from its replicas (batched with
    other callers'); recent turns are remembered here as the local encoder does."""

    def __init__(self, handle, timeout_s: float = 30.0) -> None:
        self._deployment = Deployments({"Encoder": handle}, "", timeout_s)
        facts = self._deployment.call("Encoder", "facts")
        self.name, self.key, self.dim = facts["name"], facts["key"], facts["dim"]
        self.on_gpu, self.batch_size = False, 0
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._deployment.call("Encoder", "encode", list(texts))


class ClusterEngine(Engine):
    """``Engine`` whose models are the cluster's. ``compose``: run the chat turn here from
    the deployments' steps (the ChatTurn replica); otherwise the whole turn is the ChatTurn
    deployment's (an app process)."""

    def __init__(self, settings: Settings | None = None, handles: dict | None = None,
                 timeout_s: float | None = None, compose: bool = False) -> None:
        from engine.cluster.config import ClusterConfig

        config = ClusterConfig.load(settings.cluster_config if settings else None)
        self.deployments = Deployments(handles, config.name, timeout_s or config.timeout_s)
        self.compose = compose
        super().__init__(settings)
        self.readers = {}  # each step's deployment reads the dialogue's language itself

    def _load_head(self, version):
        return None  # the sticker reader is the Stickers replicas'

    def _serve(self, role: str, version) -> None:
        """A promotion here is a registry entry on the shared storage: the replicas serve it
        within their refresh interval (``Engine.catch_up``)."""
        self.serving[role] = version.id if version else None

    # ------------------------------------------------------------ the deployments' steps

    def search(self, query: str, k: int = 8, emotion: str | None = None) -> list[SearchResult]:
        return self.deployments.call("Stickers", "search", query, k, emotion)

    def select_stickers(self, dialogue: Dialogue, mood: np.ndarray, k: int,
                        emotion: str | None = None, reply: str = "") -> list[SearchResult]:
        return self.deployments.call("Stickers", "select", dialogue, mood, k, emotion, reply)

    @property
    def sticker_threshold(self) -> float:
        return self.deployments.call("Stickers", "threshold")

    def send_threshold(self, dialogue: Dialogue) -> float:
        return self.deployments.call("Stickers", "threshold", dialogue)

    def sticker_readings(self) -> list[dict]:
        return self.deployments.call("Stickers", "readings")

    @property
    def emotion_model_version(self) -> str:
        return self.deployments.call("Stickers", "model_version")

    def list_packs(self) -> list[dict]:
        return self.deployments.call("Stickers", "packs")

    def mood(self, dialogue: Dialogue) -> np.ndarray:
        return self.deployments.call("Emotion", "mood", dialogue)

    def read_emotion(self, dialogue: Dialogue, next_speaker: str | None = None,
                     scheme_name: str | None = None):
        return self.deployments.call("Emotion", "read", dialogue, next_speaker, scheme_name)

    def reply_pieces(self, dialogue: Dialogue, mood: np.ndarray) -> Iterator[str]:
        return self.deployments.stream("Reply", "stream", dialogue, mood)

    def checked_reply(self, dialogue: Dialogue, mood: np.ndarray, text: str,
                      timings: dict[str, float]) -> tuple[str, str]:
        said, source, steps = self.deployments.call("Reply", "checked", dialogue, mood, text)
        timings.update(steps)
        return said, source

    def chat_stream(self, dialogue: Dialogue) -> Iterator[str | Reply]:
        if self.compose:
            return super().chat_stream(dialogue)
        if not dialogue.turns:
            raise ValueError("The conversation is empty: say something first.")
        return self.deployments.stream("ChatTurn", "stream", dialogue)

    def warm_up(self, reply: bool = True) -> threading.Thread:
        """Join the cluster and find the deployments in the background (the models are the
        replicas' and load there)."""
        def find() -> None:
            try:
                for name in ("ChatTurn", "Stickers", "Emotion"):
                    self.deployments.handle(name)
            except Exception:  # the first request says it again, by deployment
                log.exception("the cluster's deployments cannot be reached")

        thread = threading.Thread(target=find, name="memeui-cluster", daemon=True)
        thread.start()
        return thread

    def library(self) -> StickerLibrary:
        """The packs on the shared storage, read here (no index, no model)."""
        dirs = tuple(self.pack_dirs())
        if getattr(self, "_library_of", None) != dirs:
            self._library, self._library_of = StickerLibrary.load(dirs, self.sticker_overrides), dirs
        return self._library

    def versions(self, deployment: str = "Stickers") -> dict:
        """The model and index versions a replica of ``deployment`` serves."""
        return self.deployments.call(deployment, "versions")

    # ------------------------------------------------------------ the library, on shared storage

    def add_pack(self, source: Path, name: str | None = None, ocr: bool = True,
                 limits: Limits = Limits(), progress=lambda fraction, message: None) -> IngestReport:
        """The pack is written into the shared data dir here; the Stickers replicas index it
        within their refresh interval."""
        name = check_pack_name(name or Path(source).stem)
        with self._library_lock:
            known = {r["id"] for r in self.sticker_readings()}
            packs = [p["name"] for p in self.list_packs()]
            return self._ingest(source, name, packs, known, ocr, limits, progress)

    def remove_pack(self, name: str) -> None:
        with self._library_lock:
            folder = self.user_packs_dir / check_pack_name(name)
            if not (folder / "pack.json").is_file():
                raise IngestError(f"there is no added pack named {name!r}")
            shutil.rmtree(folder)
