"""The label store: items, annotators and append-only label events, in a DuckDB file (the
default) or on Postgres (several app processes; ``annotations/databases.py``).

Nothing here is updated in place or deleted: a label, a skip and an undo are each an event, and
the current label of an item is a view over the events. One SQL serves both databases; a call
that writes returns once its event is committed. Training reads Parquet snapshots, never the
live store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from annotations.databases import StoreLocked, StoreUnavailable, open_database

__all__ = ["StoreLocked", "StoreUnavailable"]  # raised here, owned by the databases

TASKS = ("sticker_emotion", "utterance_emotion", "best_sticker", "sticker_text")
EMOTION_TASKS = ("sticker_emotion", "utterance_emotion")
SOURCES = ("studio", "chat", "import", "api", "cli", "review")
REVIEW_KIND = "review"  # a reviewer's settled label: it stands for the item, above each annotator's
ORDERS = ("mixed", "uncertain", "library", "random")
DEFAULT_ORDER = "uncertain"  # `memeui bench active` measured it best through the real gate
# (README, "Which order to label in"); mixed, the most uncertain and a random item in turn,
# did better without the gate in a simulation and is there to choose
UNSURE = "unsure"  # an emotion answer that counts as labelled but not as a label for training
NONE_FITS = "none_fits"  # best sticker: none of the candidates shown fits
NO_STICKER = "no_sticker"  # best sticker: no sticker should be sent here (MOD's usage flag)
TEXT_FIELDS = ("label", "tags", "ocr")  # what a sticker_text correction may change
MAX_LABEL_CHARS = 4000

LABEL_COLUMNS = ("id, time, annotator, task, item, label, suggestion, confidence, model_version, "
                 "source, session, shown, campaign, suggestion_shown")
_LATEST = (f"SELECT {LABEL_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY {{per}} "
           "ORDER BY id DESC) AS n FROM live_events WHERE kind = '{kind}') AS latest WHERE n = 1")

# Numbered migrations, applied in order at open; a store records the last one it has. The same
# SQL runs on DuckDB and Postgres (DOUBLE PRECISION and a named subquery for Postgres).
MIGRATIONS = (
    # 1: items, annotators and label events
    """
    CREATE TABLE annotators (name VARCHAR PRIMARY KEY, role VARCHAR NOT NULL, created DOUBLE PRECISION);
    CREATE TABLE items (
        id VARCHAR, task VARCHAR, grp VARCHAR, position BIGINT, payload VARCHAR,
        suggestion VARCHAR, confidence DOUBLE PRECISION, model_version VARCHAR, PRIMARY KEY (task, id));
    CREATE SEQUENCE event_ids START 1;
    CREATE TABLE label_events (
        id BIGINT PRIMARY KEY DEFAULT nextval('event_ids'), time DOUBLE PRECISION NOT NULL,
        annotator VARCHAR NOT NULL, task VARCHAR NOT NULL, item VARCHAR NOT NULL,
        kind VARCHAR NOT NULL, label VARCHAR, undoes BIGINT, suggestion VARCHAR,
        confidence DOUBLE PRECISION, model_version VARCHAR, source VARCHAR NOT NULL, session VARCHAR);
    """,
    # 2: what a best-sticker answer was chosen from, and the training requests labels trigger
    """
    ALTER TABLE label_events ADD COLUMN shown VARCHAR;
    CREATE SEQUENCE request_ids START 1;
    CREATE TABLE training_requests (
        id BIGINT PRIMARY KEY DEFAULT nextval('request_ids'), task VARCHAR NOT NULL,
        time DOUBLE PRECISION NOT NULL, requested_by VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        labels BIGINT NOT NULL, status VARCHAR NOT NULL DEFAULT 'pending');
    """,
    # 3: the views every reader shares
    """
    CREATE VIEW live_events AS
        SELECT * FROM label_events
        WHERE kind IN ('label', 'skip')
          AND id NOT IN (SELECT undoes FROM label_events WHERE kind = 'undo');
    CREATE VIEW current_labels AS
        SELECT id, time, annotator, task, item, label, suggestion, confidence, model_version,
               source, session, shown
        FROM (SELECT *, row_number() OVER (PARTITION BY task, item, annotator ORDER BY id DESC) AS n
              FROM live_events WHERE kind = 'label') AS latest WHERE n = 1;
    """,
    # 4: the job that serves a training request
    """
    ALTER TABLE training_requests ADD COLUMN job VARCHAR;
    """,
    # 5: a caller's idempotency key, so a label retried after a lost answer is written once
    """
    ALTER TABLE label_events ADD COLUMN request_key VARCHAR;
    CREATE UNIQUE INDEX label_event_keys ON label_events (request_key);
    """,
    # 6: items of a removed pack are retired: kept with their labels, never served or counted
    """
    ALTER TABLE items ADD COLUMN retired BOOLEAN DEFAULT false;
    """,
    # 7: review (a settled label wins over the annotators' for its item) and campaigns (a task
    # on a chosen set of items, with an overlap and a target); each event names its campaign
    # and whether the model's suggestion was shown
    f"""
    ALTER TABLE label_events ADD COLUMN campaign BIGINT;
    ALTER TABLE label_events ADD COLUMN suggestion_shown BOOLEAN;
    CREATE SEQUENCE campaign_ids START 1;
    CREATE TABLE campaigns (
        id BIGINT PRIMARY KEY DEFAULT nextval('campaign_ids'), name VARCHAR NOT NULL,
        task VARCHAR NOT NULL, selection VARCHAR NOT NULL, overlap INTEGER NOT NULL,
        target INTEGER NOT NULL, suggestions BOOLEAN NOT NULL, status VARCHAR NOT NULL,
        opened DOUBLE PRECISION NOT NULL, opened_by VARCHAR NOT NULL,
        closed DOUBLE PRECISION, closed_by VARCHAR, training_request BIGINT);
    CREATE TABLE campaign_items (campaign BIGINT NOT NULL, item VARCHAR NOT NULL,
                                 PRIMARY KEY (campaign, item));
    DROP VIEW current_labels;
    DROP VIEW live_events;
    CREATE VIEW live_events AS
        SELECT * FROM label_events
        WHERE kind IN ('label', 'skip', 'review')
          AND id NOT IN (SELECT undoes FROM label_events WHERE kind = 'undo');
    CREATE VIEW annotator_labels AS {_LATEST.format(kind="label", per="task, item, annotator")};
    CREATE VIEW settled_labels AS {_LATEST.format(kind="review", per="task, item")};
    CREATE VIEW current_labels AS
        SELECT * FROM annotator_labels a
        WHERE NOT EXISTS (SELECT 1 FROM settled_labels s WHERE s.task = a.task AND s.item = a.item)
        UNION ALL SELECT * FROM settled_labels;
    """,
)


class LabelError(ValueError):
    """A label call the store refuses: unknown task, item, label or annotator."""


STICKER_TASKS = ("sticker_emotion", "sticker_text")  # items that are stickers of the library
KEY_STRIPES = 64  # locks that idempotency keys are spread over


@dataclass(frozen=True)
class Item:
    """Something to label: a sticker, an utterance in a dialogue, a dialogue's next sticker."""

    id: str
    task: str
    payload: dict = field(default_factory=dict)  # what the studio shows (text, file, turns…)
    group: str = ""  # the pack of a sticker, the dialogue of an utterance
    position: int = 0  # library / corpus order
    suggestion: str | None = None  # the engine's label for it, pre-selected in the studio
    confidence: float | None = None
    model_version: str = ""


@dataclass(frozen=True)
class Event:
    id: int
    time: float
    annotator: str
    task: str
    item: str
    kind: str  # label | skip | undo
    label: str | None = None
    undoes: int | None = None


class LabelStore:
    """The store at ``location`` (a DuckDB file's path or a ``postgresql://`` URL); safe to
    share between threads."""

    def __init__(self, location: Path | str, emotion_labels: tuple[str, ...] = ()) -> None:
        self._db = open_database(location)
        self.location = self._db.name  # what messages call it (a URL without its password)
        self.path = getattr(self._db, "path", None)  # the DuckDB file; None on Postgres
        self.emotion_labels = tuple(emotion_labels)
        self._keys = [threading.Lock() for _ in range(KEY_STRIPES)]  # a key's retries in turn
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def _sql(self, query: str, params: list | tuple = ()) -> list[tuple]:
        return self._db.query(query, params)[1]

    def _dicts(self, query: str, params: list | tuple = ()) -> list[dict]:
        names, rows = self._db.query(query, params)
        return [dict(zip(names, row)) for row in rows]

    def _write(self, query: str, params: list | tuple = ()) -> list[tuple]:
        with self._db.writing():
            return self._sql(query, params)

    # ------------------------------------------------------------ schema

    @property
    def schema_version(self) -> int:
        return self._sql("SELECT max(version) FROM schema_migrations")[0][0] or 0

    def _migrate(self) -> None:
        """Each migration in its own transaction; processes opening one Postgres store at once
        take turns (``exclusive``), so each migration runs once."""
        for version, script in enumerate(MIGRATIONS, start=1):
            with self._db.transaction(exclusive=True) as transaction:
                transaction.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                                    "(version INTEGER PRIMARY KEY, applied DOUBLE PRECISION)")
                if transaction.execute("SELECT coalesce(max(version), 0) FROM schema_migrations"
                                       )[0][0] >= version:
                    continue
                transaction.execute(script)
                transaction.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                                    [version, time.time()])

    # ------------------------------------------------------------ annotators and items

    def add_annotator(self, name: str, role: str = "annotator") -> None:
        """Make ``name`` known (or change its role): the store's record of who labels."""
        name = check_name(name)
        self._write("INSERT INTO annotators VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET role = excluded.role", [name, role, time.time()])

    def annotators(self) -> dict[str, str]:
        return dict(self._sql("SELECT name, role FROM annotators ORDER BY name"))

    def put_items(self, items: list[Item]) -> None:
        """Add items or refresh their payload and suggestion (items are not labels: a newer
        model's suggestion replaces the old one; the events keep what each annotator saw)."""
        rows = [(i.id, _check_task(i.task), i.group, i.position,
                 json.dumps(i.payload, ensure_ascii=False), i.suggestion, i.confidence,
                 i.model_version) for i in items]
        if not rows:
            return
        with self._db.writing(), self._db.transaction() as transaction:
            transaction.executemany(
                "INSERT INTO items (id, task, grp, position, payload, suggestion, confidence, "
                "model_version, retired) VALUES (?, ?, ?, ?, ?, ?, ?, ?, false) "
                "ON CONFLICT (task, id) DO UPDATE SET "
                "grp = excluded.grp, position = excluded.position, payload = excluded.payload, "
                "suggestion = excluded.suggestion, confidence = excluded.confidence, "
                "model_version = excluded.model_version, retired = false", rows)

    def retire_stickers(self, keep: set[str]) -> int:
        """Sticker items not in ``keep`` (the live library) are retired: their labels stay on
        record, but they are no longer served, counted or labelled. Returns how many."""
        with self._db.writing(), self._db.transaction() as transaction:
            live = [row[0] for row in transaction.execute(
                "SELECT DISTINCT id FROM items WHERE task = ANY(?) AND NOT retired",
                [list(STICKER_TASKS)])]
            gone = [sticker for sticker in live if sticker not in keep]
            if gone:
                transaction.execute("UPDATE items SET retired = true WHERE task = ANY(?) AND id = ANY(?)",
                                    [list(STICKER_TASKS), gone])
        return len(gone)

    def item(self, task: str, item_id: str) -> Item | None:
        rows = self._sql(f"SELECT {ITEM_COLUMNS} FROM items WHERE task = ? AND id = ? "
                         "AND NOT retired", [_check_task(task), item_id])
        return _item(rows[0]) if rows else None

    def item_and_campaign(self, task: str, item_id: str) -> tuple[Item | None, dict | None]:
        """The item in service and the campaign its label goes to (``campaign_of``): what
        every label call reads first."""
        item = self.item(task, item_id)
        return (item, self.campaign_of(task, item_id)) if item else (None, None)

    def has_items(self, task: str) -> bool:
        """Whether any item of ``task`` was ever put here (retired ones count: the store has
        seen a library)."""
        return bool(self._sql("SELECT 1 FROM items WHERE task = ? LIMIT 1", [_check_task(task)]))

    def items(self, task: str, group: str | None = None) -> list[Item]:
        query = f"SELECT {ITEM_COLUMNS} FROM items WHERE task = ? AND NOT retired"
        params: list = [_check_task(task)]
        if group is not None:
            query, params = query + " AND grp = ?", params + [group]
        return [_item(row) for row in self._sql(query + " ORDER BY position, id", params)]

    def groups(self, task: str) -> list[str]:
        return [row[0] for row in self._sql(
            "SELECT grp FROM items WHERE task = ? AND NOT retired GROUP BY grp "
            "ORDER BY min(position)",
            [_check_task(task)])]

    # ------------------------------------------------------------ events

    def label(self, task: str, item: str, label: str, annotator: str, *, source: str = "studio",
              session: str = "", suggestion: str | None = None, confidence: float | None = None,
              model_version: str = "", shown: list[str] | None = None, key: str = "",
              campaign: int | None = None, suggestion_shown: bool | None = None) -> int:
        """Record ``annotator``'s label; returns the event id once it is committed. A ``key``
        (the caller's idempotency key) seen before returns that event instead: a label retried
        because its answer was lost (a dropped connection, a server killed) is written once.
        ``suggestion`` is the model's label at the time, ``suggestion_shown`` whether the
        annotator saw it (a campaign may hide it, to measure anchoring)."""
        label = self.check_label(task, item, label)
        return self._event(task, item, "label", annotator, label=label, source=source,
                           session=session, suggestion=suggestion, confidence=confidence,
                           model_version=model_version, shown=shown, key=key,
                           campaign=campaign, suggestion_shown=suggestion_shown)

    def settle(self, task: str, item: str, label: str, reviewer: str, *, session: str = "",
               key: str = "") -> int:
        """A reviewer's label for ``item``: it stands above every annotator's (current labels,
        consensus, exports and snapshots read it) until undone; the annotators' own labels stay
        on record for agreement and accuracy."""
        label = self.check_label(check_review_task(task), item, label)
        return self._event(task, item, REVIEW_KIND, reviewer, label=label, source="review",
                           session=session, key=key,
                           campaign=(self.campaign_of(task, item) or {}).get("id"))

    def skip(self, task: str, item: str, annotator: str, *, source: str = "studio",
             session: str = "") -> int:
        """``annotator`` passes on an item: it is not served to them again (unless undone)."""
        self.require_item(task, item)
        return self._event(task, item, "skip", annotator, source=source, session=session)

    def undo(self, task: str, annotator: str, *, source: str = "studio",
             session: str = "", key: str = "", review: bool = False) -> Event | None:
        """Take back ``annotator``'s latest label or skip of ``task`` that still stands (with
        ``review``: their latest settled label); the undo is an event too. Returns the event
        undone, or None when there is nothing left. An undo retried with the same ``key`` takes
        back nothing more."""
        done = self._keyed(key, task=task, annotator=annotator, kind="undo")
        if done is not None:
            rows = self._sql(f"SELECT {EVENT_COLUMNS} FROM label_events WHERE id = (SELECT undoes "
                             "FROM label_events WHERE id = ?)", [done])
            return Event(*rows[0]) if rows else None
        kinds = [REVIEW_KIND] if review else ["label", "skip"]
        rows = self._sql(f"SELECT {EVENT_COLUMNS} FROM live_events WHERE task = ? AND annotator = ? "
                         "AND kind = ANY(?) ORDER BY id DESC LIMIT 1",
                         [_check_task(task), annotator, kinds])
        if not rows:
            return None
        undone = Event(*rows[0])
        self._event(task, undone.item, "undo", annotator, undoes=undone.id, source=source,
                    session=session, key=key)
        return undone

    def _keyed(self, key: str, **expected) -> int | None:
        """The event written with idempotency key ``key``, if any. ``expected``: the fields
        (task, item, annotator, kind, label) a retry must repeat; a key reused for other
        content is refused, never answered with the earlier event."""
        if not key:
            return None
        if not isinstance(key, str) or len(key) > 200:
            raise LabelError("an idempotency key is a string of at most 200 characters")
        rows = self._dicts(
            "SELECT id, task, item, annotator, kind, label FROM label_events WHERE request_key = ?",
            [key])
        if not rows:
            return None
        written = rows[0]
        differ = [name for name, value in expected.items() if written[name] != value]
        if differ:
            raise LabelError(f"the idempotency key {key!r} was used for another request "
                             f"(its {', '.join(differ)} differ): send a new key with a new label")
        return written["id"]

    def _event(self, task: str, item: str, kind: str, annotator: str, *, label: str | None = None,
               undoes: int | None = None, source: str = "studio", session: str = "",
               suggestion: str | None = None, confidence: float | None = None,
               model_version: str = "", shown: list[str] | None = None, key: str = "",
               campaign: int | None = None, suggestion_shown: bool | None = None) -> int:
        if source not in SOURCES:
            raise LabelError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
        annotator = check_name(annotator)
        content = {"task": task, "annotator": annotator, "kind": kind}
        if kind != "undo":
            content |= {"item": item, "label": label}
        # a retry racing its first try in this process waits for it and finds it written; one
        # racing it from another process (Postgres) meets the key's unique index and finds it
        # too; events without a key, or with other keys, append side by side
        with self._keys[hash(key) % KEY_STRIPES] if key else contextlib.nullcontext():
            written = self._keyed(key, **content)
            if written is not None:
                return written
            try:
                return self._sql(
                    "INSERT INTO label_events (time, annotator, task, item, kind, label, undoes, "
                    "suggestion, confidence, model_version, source, session, shown, request_key, "
                    "campaign, suggestion_shown) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [time.time(), annotator, task, item, kind, label, undoes, suggestion,
                     confidence, model_version, source, session,
                     json.dumps(shown) if shown is not None else None, key or None,
                     campaign, suggestion_shown],
                )[0][0]
            except Exception as error:
                if key and self._db.is_duplicate(error):
                    return self._keyed(key, **content)
                raise

    def check_label(self, task: str, item: str, label: str) -> str:
        """The label as stored, or a LabelError that says what the task accepts."""
        self.require_item(task, item)
        if not isinstance(label, str) or not label.strip():
            raise LabelError("the label is empty")
        if len(label) > MAX_LABEL_CHARS:
            raise LabelError(f"the label is {len(label)} characters; the limit is {MAX_LABEL_CHARS}")
        label = label.strip()
        if task in EMOTION_TASKS:
            known = (*self.emotion_labels, UNSURE)
            if label.lower() not in known:
                raise LabelError(f"unknown label {label!r} for {task}; known: {', '.join(known)}")
            return label.lower()
        if task == "best_sticker":
            if label not in (NONE_FITS, NO_STICKER) and not self._sql(
                    "SELECT 1 FROM items WHERE id = ? AND task = ANY(?) AND NOT retired",
                    [label, list(STICKER_TASKS)]):
                raise LabelError(f"{label!r} is no sticker of the library; answer a sticker id, "
                                 f"{NONE_FITS!r} or {NO_STICKER!r}")
            return label
        return json.dumps(check_text_correction(label), ensure_ascii=False, sort_keys=True)

    def require_item(self, task: str, item: str) -> None:
        """A LabelError unless ``item`` of ``task`` is in service: unknown, or retired."""
        rows = self._sql("SELECT retired FROM items WHERE task = ? AND id = ?",
                         [_check_task(task), item])
        if not rows:
            raise LabelError(f"unknown item {item!r} for {task}")
        if rows[0][0]:
            raise LabelError(f"{item!r} is no longer in the library (its pack was removed): "
                             "it takes no more labels")

    def events(self, task: str | None = None) -> list[Event]:
        query = f"SELECT {EVENT_COLUMNS} FROM label_events"
        rows = self._sql(query + (" WHERE task = ?" if task else "") + " ORDER BY id",
                         [task] if task else [])
        return [Event(*row) for row in rows]

    # ------------------------------------------------------------ reading labels

    def current_labels(self, task: str | None = None, view: str = "current_labels") -> list[dict]:
        """The labels that stand: each annotator's latest per item (undone labels and skips
        left out), or for a settled item the reviewer's label alone. ``view``
        ``annotator_labels``: each annotator's own, review or not; ``settled_labels``: the
        reviewers' alone."""
        if view not in LABEL_VIEWS:
            raise LabelError(f"unknown view {view!r}; known: {', '.join(LABEL_VIEWS)}")
        query = (f"SELECT c.*, i.payload, i.grp FROM {view} c "
                 "LEFT JOIN items i ON i.task = c.task AND i.id = c.item")
        if task:
            _check_task(task)
        return self._dicts(query + (" WHERE c.task = ?" if task else "") + " ORDER BY c.id",
                           [task] if task else [])

    def annotator_labels(self, task: str | None = None) -> list[dict]:
        """Each annotator's own standing label per item, settled or not: what agreement reads."""
        return self.current_labels(task, "annotator_labels")

    def consensus(self, task: str) -> dict[str, str]:
        """Item → the settled label, else the label most annotators gave it ("unsure" left
        out; ties go to the label given first)."""
        rows = self._sql(
            "SELECT item, label FROM (SELECT item, label, count(*) AS n, min(id) AS first, "
            "row_number() OVER (PARTITION BY item ORDER BY count(*) DESC, min(id)) AS r "
            "FROM current_labels WHERE task = ? AND label != ? GROUP BY item, label) AS ranked "
            "WHERE r = 1",
            [_check_task(task), UNSURE])
        return dict(rows)

    def next_item(self, task: str, annotator: str, *, order: str = DEFAULT_ORDER,
                  group: str | None = None, overlap: int = 1) -> Item | None:
        """The item ``annotator`` should label next: one they have not labelled or skipped,
        still short of ``overlap`` annotators, in ``order``: lowest suggestion confidence
        first (``uncertain``), library order, a shuffle that is stable per annotator
        (``random``), or ``mixed``: uncertain and random in turn, by how many items the
        annotator has answered (a sample the model's doubts alone would skew)."""
        if order not in ORDERS:
            raise LabelError(f"unknown order {order!r}; known: {', '.join(ORDERS)}")
        if order == "mixed":
            answered = self._sql("SELECT count(DISTINCT item) FROM live_events WHERE task = ? "
                                 "AND annotator = ?", [_check_task(task), annotator])[0][0]
            order = "uncertain" if answered % 2 == 0 else "random"
        ordering = {"uncertain": "i.confidence ASC NULLS FIRST, i.position, i.id",
                    "library": "i.position, i.id",
                    "random": "md5(i.id || ?), i.id"}[order]
        campaigns = self.open_campaigns(task)
        serving = [c["id"] for c in campaigns if c["done"] < c["target"]]
        if campaigns and not serving:
            return None  # the task's open campaigns have reached their targets
        within = ("JOIN campaign_items ci ON ci.item = i.id AND ci.campaign = ANY(?) "
                  "JOIN campaigns k ON k.id = ci.campaign " if serving else "")
        query = (
            f"SELECT {ITEM_COLUMNS_OF_I} FROM items i {within}"
            "LEFT JOIN (SELECT item, count(*) AS n FROM annotator_labels WHERE task = ? "
            "           GROUP BY item) c ON c.item = i.id "
            f"WHERE i.task = ? AND NOT i.retired AND coalesce(c.n, 0) < "
            f"{'k.overlap' if serving else '?'} "
            "AND i.id NOT IN (SELECT item FROM live_events WHERE task = ? AND annotator = ?) "
            "AND i.id NOT IN (SELECT item FROM settled_labels WHERE task = ?) ")
        params: list = [serving] if serving else []
        params += [task, _check_task(task)] + ([] if serving else [max(1, overlap)])
        params += [task, annotator, task]
        if group:
            query, params = query + "AND i.grp = ? ", params + [group]
        query += f"ORDER BY {ordering} LIMIT 1"
        if order == "random":
            params.append(annotator)
        rows = self._sql(query, params)
        return _item(rows[0]) if rows else None

    def progress(self, task: str, annotator: str, group: str | None = None) -> dict[str, int]:
        """What ``annotator`` has done of ``task`` (within ``group`` if given): ``labelled``
        and ``skipped`` items (each counted once, by its latest standing answer) of ``total``
        items in service."""
        where, params = "i.task = ? AND NOT i.retired" + (" AND i.grp = ?" if group else ""), \
            [_check_task(task)] + ([group] if group else [])
        total = self._sql(f"SELECT count(*) FROM items i WHERE {where}", params)[0][0]
        counts = dict(self._sql(
            "SELECT kind, count(*) FROM (SELECT e.kind, row_number() OVER "
            "(PARTITION BY e.item ORDER BY e.id DESC) AS n "
            "FROM live_events e JOIN items i ON i.task = e.task AND i.id = e.item "
            f"WHERE e.annotator = ? AND e.kind != '{REVIEW_KIND}' AND {where}) AS latest "
            "WHERE n = 1 GROUP BY kind",
            [annotator] + params))
        return {"labelled": counts.get("label", 0), "skipped": counts.get("skip", 0),
                "total": total}

    def stats(self) -> dict:
        """Counts per task and annotator, and the label distribution per task."""
        per_task = {task: {"items": 0, "labelled_items": 0, "labels": 0, "events": 0}
                    for task in TASKS}
        for task, n in self._sql("SELECT task, count(*) FROM items WHERE NOT retired GROUP BY task"):
            per_task[task]["items"] = n
        for task, n, items in self._sql("SELECT task, count(*), count(DISTINCT item) "
                                        "FROM current_labels GROUP BY task"):
            per_task[task].update(labels=n, labelled_items=items)
        for task, n in self._sql("SELECT task, count(*) FROM label_events GROUP BY task"):
            per_task[task]["events"] = n
        distribution: dict[str, dict[str, int]] = {}
        for task, label, n in self._sql("SELECT task, label, count(*) FROM current_labels "
                                        "GROUP BY task, label ORDER BY task, count(*) DESC"):
            distribution.setdefault(task, {})[label] = n
        annotators: dict[str, dict[str, int]] = {}
        for name, task, n in self._sql("SELECT annotator, task, count(*) FROM annotator_labels "
                                       "GROUP BY annotator, task ORDER BY annotator, task"):
            annotators.setdefault(name, {})[task] = n
        for task, n in self._sql("SELECT task, count(*) FROM settled_labels GROUP BY task"):
            per_task[task]["settled_items"] = n
        return {"tasks": per_task, "distribution": distribution, "annotators": annotators,
                "pending_training": self.training_requests(status="pending")}

    # ------------------------------------------------------------ campaigns

    def open_campaigns(self, task: str) -> list[dict]:
        """The task's open campaigns, oldest first (what ``next_item`` serves from); their
        progress is counted only if there are any (most stores run without campaigns)."""
        if not self._any_open_campaign(task):
            return []
        return self.campaign_rows("k.task = ? AND k.status = 'open'", [task])

    def _any_open_campaign(self, task: str) -> bool:
        """Whether ``task`` has an open campaign: asked first, since most stores have none and
        this is the cheapest question (half a millisecond on DuckDB, a join twice that)."""
        return bool(self._sql("SELECT 1 FROM campaigns WHERE task = ? AND status = 'open' LIMIT 1",
                              [_check_task(task)]))

    def campaign_rows(self, where: str = "1 = 1", params: list | tuple = ()) -> list[dict]:
        """Campaigns (``where`` over ``campaigns k``), oldest first, each with its ``size`` and
        how many of its items are ``done``: labelled by ``overlap`` annotators, or settled."""
        return self._dicts(
            "SELECT k.*, (SELECT count(*) FROM campaign_items ci WHERE ci.campaign = k.id) AS size, "
            "(SELECT count(*) FROM campaign_items ci LEFT JOIN (SELECT task, item, count(*) AS n "
            "  FROM annotator_labels GROUP BY task, item) l ON l.task = k.task AND l.item = ci.item "
            "  WHERE ci.campaign = k.id AND (coalesce(l.n, 0) >= k.overlap OR EXISTS (SELECT 1 "
            "  FROM settled_labels s WHERE s.task = k.task AND s.item = ci.item))) AS done "
            f"FROM campaigns k WHERE {where} ORDER BY k.id", params)

    def campaign_of(self, task: str, item: str) -> dict | None:
        """The oldest open campaign of ``task`` that holds ``item`` (what its events name):
        its ``id`` and whether its annotators see ``suggestions``."""
        if not self._any_open_campaign(task):
            return None
        rows = self._dicts("SELECT k.id, k.suggestions FROM campaigns k JOIN campaign_items ci "
                           "ON ci.campaign = k.id WHERE k.task = ? AND k.status = 'open' "
                           "AND ci.item = ? ORDER BY k.id LIMIT 1", [task, item])
        return rows[0] if rows else None

    def read(self, query: str, params: list | tuple = ()) -> list[dict]:
        """Rows of a query over the store's tables and views, as dicts (for the modules that
        read the store's record their own way: review, campaigns, activity)."""
        return self._dicts(query, params)

    @contextlib.contextmanager
    def writing(self):
        """A transaction for bookkeeping that spans rows (a campaign and its items)."""
        with self._db.writing(), self._db.transaction() as transaction:
            yield transaction

    def write(self, query: str, params: list | tuple = ()) -> list[tuple]:
        """A bookkeeping write (campaigns, training requests): never a label event."""
        return self._write(query, params)

    # ------------------------------------------------------------ training requests

    def labels_since_request(self, task: str) -> int:
        """Label events of ``task`` since its last training request."""
        return self._sql(
            "SELECT count(*) FROM label_events WHERE task = ? AND kind = 'label' AND time > "
            "coalesce((SELECT max(time) FROM training_requests WHERE task = ?), 0)",
            [task, task])[0][0]

    def request_training(self, task: str, requested_by: str, reason: str) -> dict:
        """Record that ``task``'s model should be fine-tuned from the labels so far (the
        engine's job runner picks pending requests up)."""
        labels = self._sql("SELECT count(*) FROM current_labels WHERE task = ?",
                           [_check_task(task)])[0][0]
        self._write("INSERT INTO training_requests (task, time, requested_by, reason, labels) "
                    "VALUES (?, ?, ?, ?, ?)", [task, time.time(), requested_by, reason, labels])
        return self.training_requests(task)[-1]

    def maybe_request_training(self, task: str, every: int, requested_by: str) -> dict | None:
        """A training request once ``every`` labels of ``task`` arrived since the last one."""
        if every > 0 and self.labels_since_request(task) >= every:
            return self.request_training(task, requested_by, f"{every} new labels")
        return None

    def update_training_request(self, request_id: int, status: str, job: str) -> None:
        """What became of a request: running as a job, then that job's end state (requests
        are bookkeeping, not labels, so they change in place)."""
        self._write("UPDATE training_requests SET status = ?, job = ? WHERE id = ?",
                    [status, job, request_id])

    def training_requests(self, task: str | None = None, status: str | None = None) -> list[dict]:
        query, params = "SELECT * FROM training_requests WHERE 1 = 1", []
        if task:
            query, params = query + " AND task = ?", params + [task]
        if status:
            query, params = query + " AND status = ?", params + [status]
        return self._dicts(query + " ORDER BY id", params)

    # ------------------------------------------------------------ snapshots

    def backup(self, folder: Path) -> Path:
        """Every table as Parquet in ``folder`` (what a Space pushes to its state repo):
        ``restore`` rebuilds the store from it, event ids and all."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for table, order in BACKUP_TABLES.items():
            self._db.export_parquet(f"SELECT * FROM {table} ORDER BY {order}",
                                    folder / f"{table}.parquet")
        return folder

    @property
    def empty(self) -> bool:
        return not self._sql("SELECT 1 FROM label_events LIMIT 1") and \
            not self._sql("SELECT 1 FROM items LIMIT 1")

    def restore(self, folder: Path) -> dict:
        """Load a ``backup`` into this store, which must be empty (a Space's fresh disk); the
        id sequences continue after the restored ids. Returns rows per table."""
        if not self.empty:
            raise LabelError("the label store is not empty: a backup is restored only into a new one")
        counts = {}
        with self._db.transaction() as transaction:
            for table in BACKUP_TABLES:
                path = Path(folder) / f"{table}.parquet"
                if path.is_file():
                    self._db.load_parquet(transaction, table, path)
                    counts[table] = transaction.execute(f"SELECT count(*) FROM {table}")[0][0]
        for table, sequence in SEQUENCES.items():  # the next id comes after the restored ones
            top = self._sql(f"SELECT coalesce(max(id), 0) FROM {table}")[0][0]
            if top:
                self._db.continue_sequence(sequence, top)
        return counts

    def snapshot(self, folder: Path) -> Path:
        """Parquet copies of the events, current labels and items, in a new
        folder named by their content: what a training job reads instead of the live file."""
        folder = Path(folder)
        last = self._sql("SELECT coalesce(max(id), 0), count(*) FROM label_events")[0]
        items = self._sql("SELECT count(*) FROM items")[0][0]
        name = hashlib.sha256(f"{last}-{items}".encode()).hexdigest()[:12]
        target = folder / f"labels-{name}"
        if (target / SNAPSHOT_ANSWERS).is_file():  # written last: the snapshot is whole
            return target
        partial = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}"
        partial.mkdir(parents=True, exist_ok=True)
        for table in ("label_events", "current_labels", "items"):
            self._db.export_parquet(f"SELECT * FROM {table}", partial / f"{table}.parquet")
        (partial / SNAPSHOT_ANSWERS).write_text(json.dumps(
            {"unsure": UNSURE, "none_fits": NONE_FITS, "no_sticker": NO_STICKER}), encoding="utf-8")
        try:
            partial.rename(target)
        except OSError:  # another thread wrote the same snapshot first: keep that one
            if not (target / SNAPSHOT_ANSWERS).is_file():  # an older store's, without the words
                shutil.rmtree(target, ignore_errors=True)
                with contextlib.suppress(OSError):
                    partial.rename(target)
            shutil.rmtree(partial, ignore_errors=True)
        return target


BACKUP_TABLES = {"annotators": "name", "items": "task, id", "label_events": "id",
                 "training_requests": "id", "campaigns": "id",
                 "campaign_items": "campaign, item"}  # each table, the order its backup is in
SNAPSHOT_ANSWERS = "answers.json"  # what a snapshot's reader calls the answers that are not labels
SEQUENCES = {"label_events": "event_ids", "training_requests": "request_ids",
             "campaigns": "campaign_ids"}
LABEL_VIEWS = ("current_labels", "annotator_labels", "settled_labels")


ITEM_COLUMNS = "id, task, payload, grp, position, suggestion, confidence, model_version"
ITEM_COLUMNS_OF_I = ", ".join(f"i.{c.strip()}" for c in ITEM_COLUMNS.split(","))
EVENT_COLUMNS = "id, time, annotator, task, item, kind, label, undoes"


def _item(row: tuple) -> Item:
    item_id, task, payload, group, position, suggestion, confidence, model_version = row
    return Item(item_id, task, json.loads(payload or "{}"), group or "", position or 0,
                suggestion, confidence, model_version or "")


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise LabelError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return task


def check_review_task(task: str) -> str:
    """Review settles the emotion tasks' labels (a choice among the scheme's labels)."""
    if task not in EMOTION_TASKS:
        raise LabelError(f"review settles emotion labels ({', '.join(EMOTION_TASKS)}), not {task!r}")
    return task


def check_name(name: str) -> str:
    """An annotator name: 1–64 printable characters, no surrounding spaces."""
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 64 or not name.isprintable():
        raise LabelError("an annotator name is 1 to 64 printable characters")
    return name


def check_text_correction(value) -> dict:
    """A sticker_text label: a JSON object with any of label (text), tags (list), ocr (text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise LabelError('a sticker_text label is a JSON object such as '
                             '{"label": "…", "tags": ["…"], "ocr": "…"}') from None
    if not isinstance(value, dict) or not value or set(value) - set(TEXT_FIELDS):
        raise LabelError(f"a sticker_text label sets some of {', '.join(TEXT_FIELDS)}, nothing else")
    if "tags" in value and not (isinstance(value["tags"], list)
                                and all(isinstance(t, str) for t in value["tags"])):
        raise LabelError("tags is a list of texts")
    for key in ("label", "ocr"):
        if key in value and not isinstance(value[key], str):
            raise LabelError(f"{key} is a text")
    if "label" in value and not value["label"].strip():
        raise LabelError("a sticker's label cannot be empty")
    return value

