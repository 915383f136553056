"""Model versions per role: what each was trained from, how it scored, which one is live.

``<data_dir>/registry/<role>/<version>/`` holds a version's files and ``version.json`` (parent,
hash of the label snapshot, metrics, time, trigger); ``<role>/live.json`` names the live version
and the ones live before it (for rollback). Both are written through a temporary file and a
rename, so a crash never leaves half a record. A candidate goes live only through the gate
(``gate``) or an admin's explicit promotion.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROLES = ("sticker-emotion", "recognizer", "prerecognizer", "selector", "image-tower")
GATE_TOLERANCE = 0.0  # a candidate may not be worse than live by more than this (points)


@dataclass
class Version:
    role: str
    id: str
    parent: str | None  # the version it was trained from (None: the bundled model)
    snapshot: str  # hash of the label snapshot it was trained on
    metrics: dict  # {"holdout": {...}, "public": {...}} for the candidate, and for live at the time
    created: float
    trigger: str  # who or what asked for it: "trigger", an admin's name, "cli"
    status: str = "candidate"  # candidate | live | retired | rejected
    note: str = ""  # why the gate decided as it did
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def _role_dir(self, role: str) -> Path:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
        return self.root / role

    def add(self, role: str, files_from: Path, *, parent: str | None, snapshot: str,
            metrics: dict, trigger: str) -> Version:
        """Register the model files in ``files_from`` as a new candidate version of ``role``."""
        created = time.time()
        version = Version(role, f"{role}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(created))}-"
                                f"{os.urandom(3).hex()}", parent, snapshot, metrics, created, trigger,
                          files=sorted(p.name for p in Path(files_from).iterdir()))
        folder = self._role_dir(role) / version.id
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(files_from, folder)
        self._save(version)
        return version

    def _save(self, version: Version) -> None:
        _write_json(self._role_dir(version.role) / version.id / "version.json", version.to_dict())

    def folder(self, version: Version) -> Path:
        return self._role_dir(version.role) / version.id

    def get(self, role: str, version_id: str) -> Version:
        path = self._role_dir(role) / version_id / "version.json"
        if not path.is_file():
            raise ValueError(f"there is no {role} version {version_id!r}")
        return Version(**json.loads(path.read_text("utf-8")))

    def versions(self, role: str | None = None) -> list[Version]:
        found = []
        for name in ([role] if role else ROLES):
            folder = self._role_dir(name)
            if folder.is_dir():
                found += [Version(**json.loads(p.read_text("utf-8")))
                          for p in folder.glob("*/version.json")]
        return sorted(found, key=lambda v: v.created)

    def live(self, role: str) -> Version | None:
        history = self._history(role)
        return self.get(role, history[-1]) if history else None

    def _history(self, role: str) -> list[str]:
        path = self._role_dir(role) / "live.json"
        return json.loads(path.read_text("utf-8"))["history"] if path.is_file() else []

    def promote(self, role: str, version_id: str, note: str = "") -> Version:
        """Make ``version_id`` the live version of ``role`` (the previous one is retired)."""
        with self._lock:
            version = self.get(role, version_id)
            history = [v for v in self._history(role) if v != version_id]
            if history:
                previous = self.get(role, history[-1])
                previous.status = "retired"
                self._save(previous)
            version.status, version.note = "live", note or version.note
            self._save(version)
            _write_json(self._role_dir(role) / "live.json", {"history": [*history, version_id]})
            return version

    def reject(self, version: Version, note: str) -> Version:
        version.status, version.note = "rejected", note
        self._save(version)
        return version

    def rollback(self, role: str, version_id: str | None = None) -> Version | None:
        """Go back to ``version_id`` (one live before) or to the version live before the
        current one; None when that is the bundled model (no version live)."""
        with self._lock:
            history = self._history(role)
            if not history:
                raise ValueError(f"{role} has no version live to roll back from")
            current = self.get(role, history[-1])
            current.status = "retired"
            self._save(current)
            if version_id is None:
                history = history[:-1]
            elif version_id in history:
                history = history[: history.index(version_id) + 1]
            else:
                raise ValueError(f"{version_id!r} was never live for {role}")
            _write_json(self._role_dir(role) / "live.json", {"history": history})
            if not history:
                return None
            back = self.get(role, history[-1])
            back.status = "live"
            self._save(back)
            return back


GATE_KEYS = {"holdout": ("accuracy",), "public": ("macro_f1",)}  # a slice of labels is small:
# a macro-F1 over classes with two examples each is noise, so it is judged on accuracy
GATE_KEYS_OF_ROLE = {
    "selector": {"holdout": ("accuracy",), "public": ("hit_at_5", "sent")},
    # the public check's accuracy is the library's objects, flags and symbols (most of it);
    # its macro-F1 is the faces (six of its seven emotions): a reader may lose neither
    "sticker-emotion": {"holdout": ("accuracy",), "public": ("accuracy", "macro_f1")},
}


def gate(candidate: dict, live: dict, keys: dict[str, tuple[str, ...]] = GATE_KEYS) -> tuple[bool, str]:
    """Promote only when the candidate is not worse than live on the held-out labels and on
    the role's fixed public check (``{"holdout": {metric: value}, "public": {...}}``), on
    every metric ``keys`` names for each."""
    reasons, ok = [], True
    for check, names in keys.items():
        for key in names:
            mine, theirs = (candidate.get(check) or {}).get(key), (live.get(check) or {}).get(key)
            if mine is None or theirs is None:  # nothing shows it is not worse
                ok = False
                reasons.append(f"{check} {key}: not measured (too few labels)")
                continue
            if mine + GATE_TOLERANCE < theirs:
                ok = False
            reasons.append(f"{check} {key} {mine:.2f} vs live {theirs:.2f}")
    return ok, "; ".join(reasons)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2)
    os.replace(temporary, path)
