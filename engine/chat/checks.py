"""The checks a generated reply passes before it is said, and what replaces one that fails.

A reply that talks about stickers or itself, repeats the user, answers Chinese in another
language, is garbled (mostly no words of its own language) or is off topic (the response
selector's score of it after the context is below its floor) is generated once more, and then
replaced by the corpus reply of the retrieval backend.
Plain data in and out: turns' texts and the reply's; the models come in as functions.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from engine.chat.backends import ReplyBackend, tidy_reply
from engine.chat.responses import CONTEXT_TURNS, SELF_TALK, repeats
from engine.chat.wording import is_garbled
from engine.dialogue import Dialogue, is_chinese, ms_since

log = logging.getLogger(__name__)


def reply_problem(dialogue: Dialogue, text: str, on_topic: Callable[[list[str], str], bool]) -> str:
    """Why ``text`` should not be said after ``dialogue`` ("" if it may). ``on_topic(context,
    text)`` says whether the reply follows the last turns."""
    asked = " ".join(turn.content() for turn in dialogue.turns[-2:])
    if not text:
        return "is empty"
    if SELF_TALK.search(text) and not SELF_TALK.search(asked):
        return "talks about stickers, the message or itself"
    if repeats(dialogue.turns[-1].content(), text):
        return "repeats the message"
    if is_chinese(dialogue.turns[-1].content()) and not is_chinese(text):
        return "is not in the user's language"
    if is_garbled(text):
        return "is garbled"
    context = [turn.content() for turn in dialogue.turns[-CONTEXT_TURNS:] if turn.content()]
    if not on_topic(context, text):
        return "is off topic"
    return ""


def checked_reply(dialogue: Dialogue, mood: np.ndarray, text: str, backend: ReplyBackend,
                  problem: Callable[[Dialogue, str], str],
                  fallback: Callable[[Dialogue, np.ndarray], str],
                  timings: dict[str, float]) -> tuple[str, str]:
    """``text`` if it has no ``problem``, else the backend's second try, else ``fallback``'s
    corpus reply. Returns the text and where it came from; ``timings`` gets the steps."""
    step = time.perf_counter()
    found = problem(dialogue, text)
    timings["check"] = ms_since(step)
    if not found:
        return text, "generated"
    log.info("regenerating a reply that %s: %r", found, text)
    step = time.perf_counter()
    again = tidy_reply("".join(backend.stream(dialogue, mood)))
    timings["regenerate"] = ms_since(step)
    if again and not problem(dialogue, again):
        return again, "regenerated"
    step = time.perf_counter()
    said = fallback(dialogue, mood)
    timings["retrieval"] = ms_since(step)
    return said, "retrieval"
