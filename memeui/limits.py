"""How much traffic one caller, and all callers together, may put on the app.

``Admission`` bounds the chat turns in progress and the callers waiting for one: beyond both, a
caller is told at once that the bot is busy instead of waiting past any timeout.
``RateLimit`` bounds the calls of one caller (a signed-in name, else a browser session, else an
address) per minute, for chat turns and for labels (settings ``chat_per_minute``,
``labels_per_minute``; 0 turns a limit off).
``LoginThrottle`` refuses sign-ins for a name, or from an address, after a burst of wrong
passwords: before it, 20 wrong passwords in 10 s were each answered, and then the right one
was accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
import threading
import time
from collections import deque
from contextlib import contextmanager
from urllib.parse import parse_qs

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


class Window:
    """The events of each key in the last ``seconds`` (a sliding window): what a limit counts."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._events: dict[str, deque] = {}
        self._lock = threading.Lock()

    def wait_s(self, key: str, most: int) -> int:
        """0 if ``key`` has fewer than ``most`` events in the window, else the seconds until
        its oldest one leaves it."""
        now = time.monotonic()
        with self._lock:
            events = self._recent(key, now)
            return int(events[0] + self.seconds - now) + 1 if len(events) >= most else 0

    def add(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)

    def take(self, key: str, most: int) -> int:
        """Count one event unless ``key`` has ``most`` already; returns ``wait_s`` (0: counted)."""
        now = time.monotonic()
        with self._lock:
            events = self._recent(key, now)
            if len(events) >= most:
                return int(events[0] + self.seconds - now) + 1
            events.append(now)
            return 0

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)

    def _recent(self, key: str, now: float) -> deque:
        if len(self._events) > MAX_CALLERS:  # forget the idle keys
            for idle in [k for k, e in self._events.items() if not e or e[-1] <= now - self.seconds]:
                del self._events[idle]
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.seconds:
            events.popleft()
        return events


class RateLimit:
    def __init__(self, per_minute: int, what: str) -> None:
        self.per_minute, self.what = per_minute, what
        self._calls = Window(WINDOW_S)

    def check(self, request: gr.Request | None, key: str = "") -> None:
        """Count one call of the caller of ``request`` (or of ``key``, when the caller is
        known by another name); a gr.Error when it is one too many."""
        if self.per_minute <= 0:
            return
        wait = self._calls.take(key or caller(request), self.per_minute)
        if wait:
            raise refusal(f"Too many {self.what}: at most {self.per_minute} a minute. "
                          f"Try again in {wait} s.", duration=5)


LOGIN_WINDOW_S = 300.0
FAILURES_PER_NAME = 5  # wrong passwords for one name in the window before its sign-ins are refused
FAILURES_PER_ADDRESS = 20  # the same from one address, whatever names it tries
MAX_LOGIN_BODY = 64 * 1024


class LoginThrottle:
    """ASGI middleware in front of Gradio's ``POST /login``: after FAILURES_PER_NAME wrong
    passwords for a name, or FAILURES_PER_ADDRESS from an address, within LOGIN_WINDOW_S, every
    sign-in for that name or from that address is refused with HTTP 429 (the right password
    too) until the oldest of those failures is that old. A sign-in that succeeds forgets its
    name's failures. Gradio's ``auth`` callable sees neither the address nor the answer, so
    the throttle reads the form and the response status around it."""

    def __init__(self, app, per_name: int = FAILURES_PER_NAME,
                 per_address: int = FAILURES_PER_ADDRESS, window_s: float = LOGIN_WINDOW_S) -> None:
        self.app, self.per_name, self.per_address = app, per_name, per_address
        self.names, self.addresses = Window(window_s), Window(window_s)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or \
                not scope["path"].rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return await _answer(send, 413, "The sign-in form is too large.")
        name = "name:" + (parse_qs(body.decode("utf-8", "replace")).get("username") or [""])[0].strip()
        address = "address:" + ((scope.get("client") or ("unknown",))[0] or "unknown")
        wait = max(self.names.wait_s(name, self.per_name), self.addresses.wait_s(address, self.per_address))
        if wait:
            return await _answer(send, 429, f"Too many failed sign-ins: try again in {wait} s.",
                                 {"retry-after": str(wait)})
        status: list[int] = []
        handed = False

        async def replay():
            nonlocal handed
            if not handed:  # the body once, then the client's own messages (a disconnect)
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, replay, sending)
        if status == [400]:  # Gradio's "Incorrect credentials"
            self.names.add(name)
            self.addresses.add(address)
        elif status == [200]:
            self.names.clear(name)


async def _read_body(receive) -> bytes | None:
    """The request's body, or None past MAX_LOGIN_BODY."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_LOGIN_BODY:
            return None
        if not message.get("more_body"):
            return body


async def _answer(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            *((k.encode(), v.encode()) for k, v in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": payload})


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
