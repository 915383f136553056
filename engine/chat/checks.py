"""The checks a generated reply passes before it is said, and what replaces one that fails.

A reply that talks about stickers or itself, repeats the user, answers Chinese in another
language, is garbled (mostly no words of its own language) or is off topic (the response
selector's score of it after the context is below its floor) is generated once more, and then
replaced by the corpus reply of the retrieval backend. A reply that passes is said only when
it answers the message at least as well as that corpus reply (the response selector's score):
SmolLM2-135M's replies passed the checks and still missed the point, "I got the job!!" ->
"Dear Sarah, It's wonderful to hear from you!" (README, "Replies that answer").
Plain data in and out: turns' texts and the reply's; the models come in as functions.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from engine.chat.backends import ReplyBackend, tidy_reply
from engine.chat.responses import CONTEXT_TURNS
from engine.chat.wording import SELF_TALK, is_garbled, repeats
from engine.dialogue import Dialogue, is_chinese, ms_since

log = logging.getLogger(__name__)


def context_of(dialogue: Dialogue) -> list[str]:
    """The turns a reply is scored after: the last CONTEXT_TURNS that say something."""
    return [turn.content() for turn in dialogue.turns[-CONTEXT_TURNS:] if turn.content()]


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
    if not on_topic(context_of(dialogue), text):
        return "is off topic"
    return ""


def checked_reply(dialogue: Dialogue, mood: np.ndarray, text: str, backend: ReplyBackend,
                  problem: Callable[[Dialogue, str], str],
                  corpus_reply: Callable[[Dialogue, np.ndarray], str],
                  timings: dict[str, float],
                  answers: Callable[[list[str], list[str]], np.ndarray] | None = None,
                  ) -> tuple[str, str]:
    """``text`` if it has no ``problem``, else the backend's second try, else the corpus
    reply; with ``answers(context, texts)`` (the response selector's scores), the corpus reply
    also when it scores above the reply that passed. Returns the text and where it came from;
    ``timings`` gets the steps."""
    step = time.perf_counter()
    found = problem(dialogue, text)
    timings["check"] = ms_since(step)
    source = "generated"
    if found:
        log.info("regenerating a reply that %s: %r", found, text)
        step = time.perf_counter()
        text, source = tidy_reply("".join(backend.stream(dialogue, mood))), "regenerated"
        timings["regenerate"] = ms_since(step)
        if not text or problem(dialogue, text):
            text = ""
    if text and answers is None:
        return text, source
    step = time.perf_counter()
    corpus = corpus_reply(dialogue, mood)
    timings["retrieval"] = ms_since(step)
    if text:
        said, other = answers(context_of(dialogue), [text, corpus])
        if said >= other:
            return text, source
        log.info("saying the corpus reply %r, which answers better (%.3f) than %r (%.3f)",
                 corpus, other, text, said)
    return corpus, "retrieval"
