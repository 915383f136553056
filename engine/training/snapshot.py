"""What the fine-tuning recipes read of a label snapshot, and how they score a candidate.

A snapshot is the folder of Parquet files the annotation store writes for a job
(``label_events``, ``current_labels``, ``items``) and ``answers.json``, the store's words for
the answers that are not labels ("unsure", "none fits", "no sticker"): jobs read it, never the
live DuckDB file, and the words stay owned by the store, since the engine does not import the
annotation package (the arrows go ``memeui → annotations`` and ``memeui → engine`` only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.dialogue import Dialogue, Turn
from engine.schemes import EKMAN7

ANSWERS_FILE = "answers.json"


def answer_words(snapshot: Path) -> dict[str, str]:
    """The store's words for the answers that are not labels: ``unsure``, ``none_fits`` and
    ``no_sticker`` → the label the store records for each."""
    return json.loads((Path(snapshot) / ANSWERS_FILE).read_text(encoding="utf-8"))


def _query(snapshot: Path, sql: str, params: list) -> list[tuple]:
    """``sql`` over the snapshot's tables, each a view of its Parquet file."""
    import duckdb

    connection = duckdb.connect()
    for table in ("current_labels", "items", "label_events"):
        path = str(Path(snapshot) / f"{table}.parquet").replace("'", "''")
        connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
    return connection.execute(sql, params).fetchall()


def majority_labels(snapshot: Path, task: str) -> dict[str, str]:
    """Item id → the label most of its annotators gave ("unsure" left out; a tie goes to the
    label given first)."""
    rows = _query(snapshot,
                  "SELECT item, label FROM (SELECT item, label, row_number() OVER (PARTITION BY "
                  "item ORDER BY count(*) DESC, min(id)) AS r FROM current_labels WHERE task = ? "
                  "AND label != ? GROUP BY item, label) WHERE r = 1",
                  [task, answer_words(snapshot)["unsure"]])
    return dict(rows)


def emotion_labels(snapshot: Path, task: str) -> dict[str, str]:
    """The majority Ekman-7 label of each item of ``task``."""
    return {item: label for item, label in majority_labels(snapshot, task).items()
            if label in EKMAN7}


def labelled_dialogues(snapshot: Path) -> list[Dialogue]:
    """Every dialogue with an utterance-emotion label, whole (its unlabelled turns are context),
    its labelled turns carrying their majority emotion; the dialogue id is its group key."""
    labels = emotion_labels(snapshot, "utterance_emotion")
    rows = _query(snapshot, "SELECT id, grp, payload FROM items WHERE task = ? ORDER BY grp, "
                            "position", ["utterance_emotion"])
    turns: dict[str, list[tuple[int, Turn]]] = {}
    for item_id, group, payload in rows:
        value = json.loads(payload or "{}")
        turns.setdefault(group, []).append((int(value.get("turn", 0)), Turn(
            value.get("speaker", "") or "someone", value.get("text", ""),
            emotion=labels.get(item_id, ""))))
    return [Dialogue(tuple(turn for _, turn in sorted(group_turns, key=lambda t: t[0])), group)
            for group, group_turns in turns.items()
            if any(turn.emotion for _, turn in group_turns)]


@dataclass(frozen=True)
class Choice:
    """One answer to "which sticker goes after these turns?": a sticker id, ``none_fits`` or
    ``no_sticker``, with the stickers the annotator was shown (the negatives of a pick)."""

    item: str
    turns: tuple[str, ...]
    answer: str
    shown: tuple[str, ...]
    no_sticker: bool = False  # the answer says no sticker should be sent here

    @property
    def dialogue(self) -> Dialogue:
        return Dialogue.from_transcript("\n".join(self.turns))


def sticker_choices(snapshot: Path) -> list[Choice]:
    """Every annotator's current best-sticker answer (chat likes, dislikes and picks are
    among them), in the order they were given."""
    rows = _query(snapshot,
                  "SELECT c.item, i.payload, c.label, c.shown FROM current_labels c JOIN items "
                  "i ON i.id = c.item AND i.task = c.task WHERE c.task = ? ORDER BY c.id",
                  ["best_sticker"])
    choices, no_sticker = [], answer_words(snapshot)["no_sticker"]
    for item, payload, label, shown in rows:
        turns = tuple(json.loads(payload or "{}").get("turns", []))
        if turns and any(t.strip() for t in turns):
            choices.append(Choice(item, turns, label, tuple(json.loads(shown or "[]")),
                                  no_sticker=label == no_sticker))
    return choices
