"""How much traffic one caller, and all callers together, may put on the app.

``Admission`` bounds the chat turns in progress and the callers waiting for one: beyond both, a
caller is told at once that the bot is busy instead of waiting past any timeout.
``RateLimit`` bounds the calls of one caller (a signed-in name, else a browser session, else an
address) per minute, for chat turns and for labels (settings ``chat_per_minute``,
``labels_per_minute``; 0 turns a limit off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import threading
import time
from collections import deque
from contextlib import contextmanager

if TYPE_CHECKING:
    import gradio as gr


BUSY = "The bot is busy with other people's messages: try again in a few seconds."
WINDOW_S = 60.0
MAX_CALLERS = 10_000  # callers remembered before idle ones are forgotten


class Admission:
    def __init__(self, running: int, waiting: int, timeout: float) -> None:
        self.slots = threading.BoundedSemaphore(running)
        self.waiting, self.timeout = waiting, timeout
        self._in_line = 0
        self._lock = threading.Lock()

    @contextmanager
    def turn(self):
        """Hold a chat slot for the block; a gr.Error says "busy" when none comes in time."""
        with self._lock:
            if self._in_line >= self.waiting:
                raise refusal(BUSY, duration=5)
            self._in_line += 1
        try:
            admitted = self.slots.acquire(timeout=self.timeout)
        finally:
            with self._lock:
                self._in_line -= 1
        if not admitted:
            raise refusal(BUSY, duration=5)
        try:
            yield
        finally:
            self.slots.release()


class RateLimit:
    def __init__(self, per_minute: int, what: str) -> None:
        self.per_minute, self.what = per_minute, what
        self._calls: dict[str, deque] = {}
        self._lock = threading.Lock()

    def check(self, request: gr.Request | None, key: str = "") -> None:
        """Count one call of the caller of ``request`` (or of ``key``, when the caller is
        known by another name); a gr.Error when it is one too many."""
        if self.per_minute <= 0:
            return
        now, key = time.monotonic(), key or caller(request)
        with self._lock:
            if len(self._calls) > MAX_CALLERS:
                self._forget_idle(now)
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - WINDOW_S:
                calls.popleft()
            if len(calls) >= self.per_minute:
                wait = int(calls[0] + WINDOW_S - now) + 1
                raise refusal(f"Too many {self.what}: at most {self.per_minute} a minute. "
                               f"Try again in {wait} s.", duration=5)
            calls.append(now)

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, calls in self._calls.items() if not calls or calls[-1] <= now - WINDOW_S]:
            del self._calls[key]


def caller(request: gr.Request | None) -> str:
    """Who is calling, as well as the request says: a login, a session, or an address."""
    if request is None:
        return "local"
    name = getattr(request, "username", None)
    if name:
        return f"user:{name}"
    session = getattr(request, "session_hash", None)
    if session:
        return f"session:{session}"
    client = getattr(request, "client", None)
    return f"address:{getattr(client, 'host', '') or 'unknown'}"


def refusal(message: str, duration: float = 5):
    """The error a person sees in the app (Gradio's toast); imported here, not at the top, so
    the studio and the CLI load no gradio."""
    import gradio

    return gradio.Error(message, duration=duration)
