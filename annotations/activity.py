"""Who labelled what and when: the admin's view of a team at work, read from the events.

Per annotator: answers by kind, labels per clock hour, time spent labelling and idle (a gap
longer than ``IDLE_SECONDS`` between two answers is a break), how long since the last answer,
and the latest answers themselves.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import datetime, timezone

from annotations.agreement import IDLE_SECONDS
from annotations.store import LabelStore

RECENT = 10  # latest answers listed per annotator


def activity(store: LabelStore, hours: int = 24, now: float | None = None) -> dict:
    """Every annotator's activity; labels per hour over the last ``hours`` hours (UTC)."""
    now = time.time() if now is None else now
    events = store.read("SELECT id, time, annotator, task, item, kind, label, source "
                        "FROM label_events ORDER BY id")
    undone = {row["undoes"] for row in store.read(
        "SELECT undoes FROM label_events WHERE kind = 'undo'")}
    by_annotator: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_annotator[event["annotator"]].append(event)
    return {"hours": hours, "annotators": {
        name: _one(answers, undone, hours, now) for name, answers in sorted(by_annotator.items())}}


def _one(events: list[dict], undone: set, hours: int, now: float) -> dict:
    times = [e["time"] for e in events]
    gaps = [b - a for a, b in zip(times, times[1:])]
    since = now - hours * 3600
    per_hour = Counter(_hour(e["time"]) for e in events
                       if e["kind"] in ("label", "review") and e["time"] >= since)
    return {
        "answers": dict(Counter(e["kind"] for e in events)),
        "undone": sum(e["id"] in undone for e in events),
        "first": _when(times[0]), "last": _when(times[-1]),
        "busy_minutes": round(sum(min(g, IDLE_SECONDS) for g in gaps) / 60, 1),
        "idle_minutes": round(sum(g for g in gaps if g > IDLE_SECONDS) / 60, 1),
        "idle_for_minutes": round((now - times[-1]) / 60, 1),
        "labels_per_hour": dict(sorted(per_hour.items())),
        "recent": [{"when": _when(e["time"]), "task": e["task"], "item": e["item"],
                    "kind": e["kind"], "label": e["label"], "source": e["source"]}
                   for e in reversed(events[-RECENT:])],
    }


def _hour(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:00")


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
