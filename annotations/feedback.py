"""What chat users tell us about replies (likes, dislikes, stickers picked instead), as
best-sticker labels in the store.

A chat reply is a best-sticker question answered by the person chatting: the item is the
dialogue before the bot's sticker, the label the sticker they accept (``like``, ``picked``), or
"none fits" (``dislike``); what they were shown is kept, so the unpicked stickers are negatives.
Before the store existed the labels went to ``feedback.jsonl``; ``import_feedback_file`` moves
such a file in once and renames it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from annotations.store import NO_STICKER, NONE_FITS, Item, LabelStore

VERDICTS = ("like", "dislike", "picked", "replaced")
IMPORTED_SUFFIX = ".imported"


@dataclass(frozen=True)
class Feedback:
    dialogue: list[str]  # the turns up to and including the bot's reply, as text
    sticker: str  # the sticker's id ("" when the reply had none)
    verdict: str  # like | dislike | picked (chosen over the bot's) | replaced (the bot's, unpicked)
    session: str  # who said so: a browser session or "cli"
    reply: str = ""  # the bot's reply text
    time: float = field(default_factory=time.time)
    shown: tuple[str, ...] = ()  # the stickers the person could choose from

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; known: {', '.join(VERDICTS)}")


def dialogue_item(turns: list[str]) -> Item:
    """The best-sticker question "which sticker goes with the last of these turns?"."""
    key = hashlib.sha256(json.dumps(turns, ensure_ascii=False).encode()).hexdigest()[:16]
    return Item(f"dialogue-{key}", "best_sticker", {"turns": list(turns)}, group="chat")


def record_feedback(store: LabelStore, *labels: Feedback, source: str = "chat") -> int:
    """Each like, dislike and pick as a best-sticker label; "replaced" adds nothing a pick
    does not say (the pick keeps what was shown). Returns how many events were written."""
    written = 0
    for feedback in labels:
        if feedback.verdict == "replaced":
            continue
        item = dialogue_item(feedback.dialogue)
        if store.item(item.task, item.id) is None:
            store.put_items([item])
        answer = NONE_FITS if feedback.verdict == "dislike" else (feedback.sticker or NO_STICKER)
        shown = list(feedback.shown) or ([feedback.sticker] if feedback.sticker else [])
        store.label(item.task, item.id, answer, feedback.session, source=source,
                    session=feedback.session, suggestion=feedback.sticker or None, shown=shown)
        written += 1
    return written


def read_feedback_file(path: Path) -> list[Feedback]:
    """The labels of a ``feedback.jsonl``; a line cut short by a crash is skipped, not fatal."""
    labels = []
    for line in Path(path).read_text("utf-8").splitlines():
        try:
            row = json.loads(line)
            row["shown"] = tuple(row.get("shown", ()))
            labels.append(Feedback(**row))
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            continue
    return labels


def import_feedback_file(store: LabelStore, path: Path) -> int:
    """Move an old ``feedback.jsonl`` into the store once: its labels become events (their
    stickers must be items already) and the file is kept, renamed ``….imported``."""
    path = Path(path)
    if not path.is_file():
        return 0
    labels = [f for f in read_feedback_file(path)
              if not f.sticker or store.item("sticker_emotion", f.sticker) is not None]
    written = record_feedback(store, *labels, source="import")
    path.rename(path.with_name(path.name + IMPORTED_SUFFIX))
    return written
