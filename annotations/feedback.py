"""What chat users tell us about replies: likes, dislikes and stickers they picked instead.

An append-only JSON-lines file, one label per line, until the annotation store lands (its
migration reads ``FeedbackLog.read``). Appends are one ``write`` of one line under a lock, so
concurrent sessions never interleave half-lines.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

VERDICTS = ("like", "dislike", "picked", "replaced")


@dataclass(frozen=True)
class Feedback:
    dialogue: list[str]  # the turns up to and including the bot's reply, as text
    sticker: str  # the sticker's id ("" when the reply had none)
    verdict: str  # like | dislike | picked (chosen over the bot's) | replaced (the bot's, unpicked)
    session: str  # who said so: a browser session or "cli"
    reply: str = ""  # the bot's reply text
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; known: {', '.join(VERDICTS)}")


class FeedbackLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, *labels: Feedback) -> None:
        lines = "".join(json.dumps(asdict(label), ensure_ascii=False) + "\n" for label in labels)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(lines)

    def read(self) -> list[Feedback]:
        """Every label so far; a line cut short by a crash is skipped, not fatal."""
        if not self.path.is_file():
            return []
        labels = []
        for line in self.path.read_text("utf-8").splitlines():
            try:
                labels.append(Feedback(**json.loads(line)))
            except (json.JSONDecodeError, TypeError, ValueError):
                continue
        return labels
