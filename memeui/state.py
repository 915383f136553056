"""State that outlives the machine: labels, model versions and added packs kept in a repo.

A Space's disk is wiped at every restart. With ``MEMEUI_STATE_REPO`` set (a Hub dataset repo id,
or a folder: a mounted disk, or the tests' stand-in for the Hub), the app restores the latest
state at start, before the engine loads, and pushes it every ``MEMEUI_STATE_EVERY_MINUTES`` and
at shutdown. A push writes a staging folder (the label store's Parquet backup, the model
registry, the added packs) and hands it to the repo; a push that fails is logged and tried
again at the next tick, in a thread of its own, so no request ever waits for the Hub.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from annotations.store import LabelStore

log = logging.getLogger(__name__)
LABELS, REGISTRY, PACKS = "labels", "registry", "packs"  # the state folder's parts
RETRY_SECONDS = 30.0  # after a failed push, the next try comes this soon


class FolderRepo:
    """A folder standing in for the repo: a mounted disk, or the Hub in tests."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()

    def pull(self, into: Path) -> bool:
        if not (self.path / LABELS).is_dir():
            return False
        shutil.copytree(self.path, into, dirs_exist_ok=True)
        return True

    def push(self, folder: Path) -> None:
        """Replace the repo's content with ``folder``'s, whole (a rename, never half)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}-", dir=self.path.parent))
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        old = self.path.with_name(f".{self.path.name}-old")
        shutil.rmtree(old, ignore_errors=True)
        if self.path.exists():
            os.rename(self.path, old)
        os.rename(staging, self.path)
        shutil.rmtree(old, ignore_errors=True)


class HubRepo:
    """A Hub dataset repo: ``snapshot_download`` to restore, ``CommitScheduler`` to push (it
    uploads what changed in the staging folder; its lock keeps it from reading a folder being
    rewritten)."""

    def __init__(self, repo_id: str, staging: Path, every_minutes: float) -> None:
        from huggingface_hub import CommitScheduler

        self.repo_id = repo_id
        self.scheduler = CommitScheduler(repo_id=repo_id, repo_type="dataset", private=True,
                                         folder_path=staging, every=every_minutes)
        self.lock = self.scheduler.lock

    def pull(self, into: Path) -> bool:
        from huggingface_hub import snapshot_download

        snapshot_download(self.repo_id, repo_type="dataset", local_dir=into)
        return (Path(into) / LABELS).is_dir()

    def push(self, folder: Path) -> None:
        self.scheduler.trigger().result()  # the scheduler's folder is ``folder``


def open_repo(setting: str, staging: Path, every_minutes: float):
    """``owner/name`` is a Hub dataset; a path (absolute, or starting with ``.``) a folder."""
    if setting.startswith(("/", ".", "file:")):
        return FolderRepo(Path(setting.removeprefix("file:")))
    return HubRepo(setting, staging, every_minutes)


class StateSync:
    def __init__(self, data_dir: Path, repo, every_minutes: float) -> None:
        self.data_dir, self.repo = Path(data_dir), repo
        self.every = every_minutes * 60
        self.staging = self.data_dir / "state"
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> dict:
        """At start, before the engine loads: a fresh data dir gets the repo's latest state
        (labels only into an empty store; model versions and packs it does not have)."""
        restored: dict = {}
        with tempfile.TemporaryDirectory() as pulled:
            if not self.repo.pull(Path(pulled)):
                return restored
            store = LabelStore(self.data_dir / "labels.duckdb")
            try:
                if store.empty:
                    restored["labels"] = store.restore(Path(pulled) / LABELS)
            finally:
                store.close()
            for part, target in ((REGISTRY, self.data_dir / "registry"),
                                 (PACKS, self.data_dir / "packs")):
                source = Path(pulled) / part
                if source.is_dir() and not target.exists():
                    shutil.copytree(source, target)
                    restored[part] = sorted(p.name for p in source.iterdir())
        log.info("restored state from %s: %s", self.repo.__class__.__name__, restored)
        return restored

    def push(self, store: LabelStore) -> bool:
        """Write the staging folder and hand it to the repo; False (logged) when it failed."""
        try:
            with self.repo.lock:
                shutil.rmtree(self.staging, ignore_errors=True)
                store.backup(self.staging / LABELS)
                for part, source in ((REGISTRY, self.data_dir / "registry"),
                                     (PACKS, self.data_dir / "packs")):
                    if source.is_dir():
                        shutil.copytree(source, self.staging / part,
                                        ignore=shutil.ignore_patterns(".*"))
            self.repo.push(self.staging)
            self.failures = 0
            return True
        except Exception:  # noqa: BLE001 - the app goes on; the next tick tries again
            self.failures += 1
            log.exception("pushing the state failed (%d in a row); trying again soon",
                          self.failures)
            return False

    def start(self, store: LabelStore) -> None:
        """Push every few minutes (sooner after a failure) and at shutdown."""
        def loop() -> None:
            while not self._stop.wait(RETRY_SECONDS if self.failures else self.every):
                self.push(store)

        self._thread = threading.Thread(target=loop, name="memeui-state", daemon=True)
        self._thread.start()
        atexit.register(self.stop, store)

    def stop(self, store: LabelStore | None = None) -> None:
        self._stop.set()
        if store is not None:
            self.push(store)


def state_sync(settings) -> StateSync | None:
    """The sync the settings ask for, or None (``MEMEUI_STATE_REPO`` empty: off)."""
    if not settings.state_repo:
        return None
    staging = Path(settings.data_dir) / "state"
    staging.mkdir(parents=True, exist_ok=True)
    return StateSync(settings.data_dir, open_repo(settings.state_repo, staging,
                                                  settings.state_every_minutes),
                     settings.state_every_minutes)
