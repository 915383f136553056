"""The data of a conversation and of one bot reply (DESIGN.md, "one turn of chat, as data")."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

MAX_MESSAGE_CHARS = 2000
MAX_TRANSCRIPT_CHARS = 20_000
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # kept out of messages: tabs, newlines stay
SPEAKER_LINE = re.compile(r"^\s*([^:：]{1,40})[:：]\s*(.*)$")
HAN = re.compile(r"[\u3400-\u9fff]")
ENGLISH_WORD = re.compile(r"[A-Za-z]+")


def is_chinese(text: str) -> bool:
    """Written in Chinese (any Han character): what the multilingual paths switch on."""
    return bool(HAN.search(text))


@dataclass(frozen=True)
class Turn:
    speaker: str  # "user" or "bot" (or a name, for imported dialogues)
    text: str = ""
    sticker_text: str = ""  # what the engine knows of a sticker sent in this turn
    emotion: str = ""  # a label people gave this turn, in the source's scheme (imported data)
    sentiment: str = ""

    def content(self) -> str:
        """The turn as text, a sticker standing in as its label (like MOD's [IMG] tokens)."""
        sticker = f"[sticker: {self.sticker_text}]" if self.sticker_text else ""
        return " ".join(part for part in (self.text.strip(), sticker) if part)


@dataclass(frozen=True)
class Dialogue:
    turns: tuple[Turn, ...] = ()
    id: str = ""  # where it came from, for imported dialogues

    @property
    def speakers(self) -> list[str]:
        return [turn.speaker for turn in self.turns]

    def then(self, turn: Turn) -> "Dialogue":
        return Dialogue(self.turns + (turn,), self.id)

    @classmethod
    def from_transcript(cls, text: str, default_speaker: str = "user") -> "Dialogue":
        """One turn per non-empty line, ``Name: text`` naming the speaker (full-width colons
        too); a line without a name continues with ``default_speaker``."""
        text = (text or "").strip()
        if len(text) > MAX_TRANSCRIPT_CHARS:
            raise ValueError(f"The text is {len(text)} characters long; "
                             f"the limit is {MAX_TRANSCRIPT_CHARS}.")
        turns = []
        for line in text.splitlines():
            if not line.strip():
                continue
            match = SPEAKER_LINE.match(line)
            speaker, words = (match.group(1).strip(), match.group(2)) if match \
                else (default_speaker, line)
            turns.append(Turn(speaker, words.strip()))
        if not turns:
            raise ValueError("The message is empty: type something to say.")
        return cls(tuple(turns))


@dataclass(frozen=True)
class SearchResult:
    id: str
    label: str
    score: float
    path: Path
    emotion: str
    emoji: str = ""
    pack: str = ""
    parts: dict[str, float] = field(default_factory=dict)  # how the score was made

    def to_dict(self) -> dict:
        # shallow: asdict deep-copies each value, a noticeable share of a fast chat turn
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "path": str(self.path),
                "score": round(self.score, 4),
                "parts": {name: round(value, 4) for name, value in self.parts.items()}}


@dataclass(frozen=True)
class Reply:
    text: str
    sticker: SearchResult | None
    mood: dict[str, float]
    alternatives: list[SearchResult]
    timings_ms: dict[str, float]
    source: str = "generated"  # or "regenerated", "retrieval" (engine.Engine.checked_reply)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "source": self.source,
            "sticker": self.sticker.to_dict() if self.sticker else None,
            "mood": {label: round(p, 4) for label, p in self.mood.items()},
            "alternatives": [alt.to_dict() for alt in self.alternatives],
            "timings_ms": {name: round(ms, 1) for name, ms in self.timings_ms.items()},
        }


def check_message(text: str) -> str:
    """A user message the engine accepts, or a ValueError that says what to change."""
    if text is not None and not isinstance(text, str):
        raise ValueError(f"The message must be text, not {type(text).__name__}.")
    text = CONTROL.sub("", text or "").strip()
    if not text:
        raise ValueError("The message is empty: type something to say.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValueError(f"The message is {len(text)} characters long; "
                         f"the limit is {MAX_MESSAGE_CHARS}.")
    return text


def ms_since(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()``), as a Reply's timings hold them."""
    return (time.perf_counter() - start) * 1000.0
