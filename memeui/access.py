"""Who is asking, and may they: identities and roles for every write, checked on the server.

With a users file (``memeui users add``), Gradio's login names the user and the file gives the
role; callers without a login never reach a handler (Gradio refuses them). Without one the app
runs open: a caller names itself (default "anonymous") and may do everything, and the app says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from annotations.store import LabelError, check_name
from annotations.users import Users

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identity:
    name: str
    role: str  # annotator | admin

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Access:
    def __init__(self, users: Users) -> None:
        self.users = users

    @property
    def open(self) -> bool:
        return not self.users.exists

    def banner(self) -> str:
        if self.open:
            return ("**Open mode**: no users file, so anyone may label and administer. "
                    "Add users with `memeui users add NAME --role annotator|admin` to require a login.")
        return "Signed in: labels are recorded under your user name."

    def identify(self, request: gr.Request | None, claimed: str = "") -> Identity:
        """The caller: the logged-in user, or in open mode the name they give."""
        if self.open:
            try:
                return Identity(check_name(claimed or ANONYMOUS), "admin")
            except LabelError as error:
                raise gr.Error(str(error), duration=5) from None
        name = getattr(request, "username", None) if request is not None else None
        role = self.users.role(name)
        if not name or role is None:
            raise gr.Error("Sign in first: this app has a users file.", duration=5)
        return Identity(name, role)

    def admin(self, request: gr.Request | None, claimed: str = "") -> Identity:
        """The caller, who must be an admin."""
        who = self.identify(request, claimed)
        if not who.is_admin:
            raise gr.Error(f"{who.name} is an annotator; this needs an admin.", duration=5)
        return who

    def login(self):
        """Gradio's ``auth`` for launch(): None in open mode."""
        return None if self.open else self.users.verify
