"""Who is asking, and may they: identities and roles for every write, checked on the server.

With a users file (``memeui users add``), Gradio's login names the user and the file gives the
role; callers without a login never reach a handler (Gradio refuses them). On Hugging Face
Spaces with ``hf_oauth`` (``MEMEUI_HF_OAUTH=1``) the Hub login names the user instead; admins are
listed in ``MEMEUI_ADMINS`` (or given the role in a users file) and everyone else signed in is an
annotator. Without either the app runs open: a caller names itself (default "anonymous") and may
do everything, and the app says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from annotations.store import LabelError, check_name
from annotations.users import Identity, Users  # noqa: F401 (Identity: who the tabs see)
from memeui.limits import refusal

if TYPE_CHECKING:
    import gradio as gr

ANONYMOUS = "anonymous"


class Access:
    def __init__(self, users: Users, oauth: bool = False, admins: tuple[str, ...] = ()) -> None:
        self.users, self.oauth, self.admins = users, oauth, tuple(admins)

    @property
    def open(self) -> bool:
        return not self.users.exists and not self.oauth

    def banner(self) -> str:
        if self.oauth:
            return ("Sign in with Hugging Face (the button above) to label: labels are recorded "
                    "under your Hub name.")
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
                raise refusal(str(error), duration=5) from None
        if self.oauth:
            name = hub_name(request)
            if not name:
                raise refusal("Sign in with Hugging Face first.", duration=5)
            role = self.users.role(name) or ("admin" if name in self.admins else "annotator")
            return Identity(name, role)
        name = getattr(request, "username", None) if request is not None else None
        role = self.users.role(name)
        if not name or role is None:
            raise refusal("Sign in first: this app has a users file.", duration=5)
        return Identity(name, role)

    def reviewer(self, request: gr.Request | None, claimed: str = "") -> Identity:
        """The caller, who must be a reviewer or an admin."""
        who = self.identify(request, claimed)
        if not who.may_review:
            raise refusal(f"{who.name} is {with_article(who.role)}; this needs a reviewer or an "
                          "admin.", duration=5)
        return who

    def admin(self, request: gr.Request | None, claimed: str = "") -> Identity:
        """The caller, who must be an admin."""
        who = self.identify(request, claimed)
        if not who.is_admin:
            raise refusal(f"{who.name} is {with_article(who.role)}; this needs an admin.", duration=5)
        return who

    def login(self):
        """Gradio's ``auth`` for launch(): the users file's check, None in open and Hub mode."""
        return self.users.verify if self.users.exists and not self.oauth else None


def with_article(role: str) -> str:
    return f"{'an' if role[:1] in 'aeiou' else 'a'} {role}"


def hub_name(request: gr.Request | None) -> str | None:
    """The Hub user name of a caller signed in with ``gr.LoginButton`` (Gradio keeps the
    OAuth user info in the session), or None."""
    session = getattr(getattr(request, "request", None), "session", None)
    try:
        return session["oauth_info"]["userinfo"]["preferred_username"] or None
    except (KeyError, TypeError, AssertionError):
        return None
