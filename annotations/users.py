"""Who may label and who may administer: a local users file with argon2-hashed passwords.

``users.json`` under the data dir: ``{"users": {name: {"role": "annotator" | "reviewer" | "admin",
"password": "$argon2id$…"}}}``. Without the file the app runs open (everyone may do
everything) and says so. On Hugging Face Spaces the Hub login names the user instead and the
file (or ``spaces.yaml``) only gives roles.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from annotations.store import check_name

ROLES = ("annotator", "reviewer", "admin")  # a reviewer labels and settles; an admin does all
USERS_FILE = "users.json"
MIN_PASSWORD = 8
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Identity:
    """Who is calling: a name and a role (what labels are recorded under, what they may do)."""

    name: str
    role: str  # annotator | reviewer | admin

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def may_review(self) -> bool:
        return self.role in ("reviewer", "admin")


class Users:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def _read(self) -> dict[str, dict]:
        if not self.exists:
            return {}
        try:
            return json.loads(self.path.read_text("utf-8")).get("users", {})
        except (json.JSONDecodeError, AttributeError) as error:
            raise ValueError(f"{self.path} is not a users file: {error}") from None

    def add(self, name: str, role: str, password: str) -> None:
        """Add ``name`` or change its role and password."""
        name = check_name(name)
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password has at least {MIN_PASSWORD} characters")
        users = self._read()
        users[name] = {"role": role, "password": _hasher.hash(password)}
        self._write(users)

    def set_password(self, name: str, password: str) -> None:
        """A new password for ``name``, whose role stays."""
        role = self.role(name)
        if role is None:
            raise ValueError(f"there is no user named {name!r}")
        self.add(name, role, password)

    def remove(self, name: str) -> None:
        users = self._read()
        if users.pop(name, None) is None:
            raise ValueError(f"there is no user named {name!r}")
        self._write(users)

    def _write(self, users: dict) -> None:
        """Write through a temporary file, so a crash never leaves half a users file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".users.")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump({"users": users}, file, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)

    def verify(self, name: str, password: str) -> bool:
        """Gradio's login check: the name exists and the password matches its hash."""
        user = self._read().get(name or "")
        if not user:
            return False
        try:
            return _hasher.verify(user["password"], password or "")
        except (VerificationError, InvalidHashError):
            return False

    def role(self, name: str | None) -> str | None:
        return (self._read().get(name or "") or {}).get("role")

    def roles(self) -> dict[str, str]:
        return {name: user["role"] for name, user in self._read().items()}
