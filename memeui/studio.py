"""The studio: the label store wired to the engine, apart from any tab. The annotate, stats and
jobs tabs, the API and the CLI all label through it; it loads no gradio, and the engine only
when it needs one (a command that writes a label to a known item loads no model)."""

from __future__ import annotations

import csv
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from annotations.exchange import import_labels
from annotations.feedback import Feedback, record_feedback
from annotations.store import DEFAULT_ORDER, STICKER_TASKS, Item, LabelError, LabelStore
from annotations.users import Identity
from engine.corpora import read_conversations
from engine.dialogue import Dialogue, Turn, check_message
from engine.schemes import scheme
from engine.settings import Settings
from memeui.limits import RateLimit

if TYPE_CHECKING:
    from engine import Engine

log = logging.getLogger(__name__)
LABELS_FILE = "labels.duckdb"
CANDIDATES = 10  # stickers shown for a best-sticker question


class Studio:
    """The label store wired to the engine; shared by the tabs, the API and the CLI.

    Items follow the library: the stickers of the live library come into the store at the first
    start and after each library change (a pack added or removed, a model promoted), never on a
    label, so writing a label to a known item needs no engine at all."""

    def __init__(self, engine: Engine | None, store: LabelStore, settings: Settings | None = None) -> None:
        self._engine, self.store = engine, store
        self.settings = settings or engine.settings
        self.overlap = self.settings.label_overlap
        self.train_every = self.settings.train_every
        self.label_rate = RateLimit(self.settings.labels_per_minute, "labels")  # per annotator
        self._synced = False
        self._sync_lock = threading.Lock()
        self._engine_lock = threading.Lock()
        self._annotators: set[str] = set()  # names already in the store's annotators table

    @classmethod
    def open(cls, engine: Engine) -> "Studio":
        """The studio of a running engine (the app, a job's trainer)."""
        return cls(engine, open_store(engine.settings), engine.settings)

    @classmethod
    def here(cls, settings: Settings) -> "Studio":
        """The studio of a data dir for a command: the engine loads only if a call needs it."""
        return cls(None, open_store(settings), settings)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    from engine.cluster import shared_engine

                    self._engine = shared_engine(self.settings)
                    self._engine.sticker_overrides = self.corrections()
        return self._engine

    # ------------------------------------------------------------ items

    def ensure_items(self) -> None:
        """Stickers of the live library as items, once per library version (the first call
        waits for the index)."""
        if self._synced:
            return
        with self._sync_lock:
            if not self._synced:
                self.sync_sticker_items()
                self._synced = True

    def sync_sticker_items(self) -> int:
        readings = self.engine.sticker_readings()
        version = self.engine.emotion_model_version
        items = []
        for position, r in enumerate(readings):
            payload = {key: r[key] for key in ("label", "emoji", "pack", "tags", "ocr", "file",
                                                "animated")}
            by_model = r["emotion_source"] == "model"  # people's label is not shown as a
            # suggestion (it would sway the next annotator) and counts as certain: served last
            items.append(Item(r["id"], "sticker_emotion", payload, r["pack"], position,
                              r["emotion"] if by_model else None,
                              r["confidence"] if by_model else 1.0, version))
            items.append(Item(r["id"], "sticker_text", payload, r["pack"], position))
        self.store.put_items(items)
        self.store.retire_stickers({r["id"] for r in readings})  # a removed pack's stickers
        return len(readings)

    def _items_may_lag(self, task: str) -> bool:
        """Whether a sticker item missing from the store may just not be there yet: the store
        never saw this library (a fresh data dir), or this process changed the library since it
        last synced. A command on a warm data dir trusts the store: no engine loads."""
        if task not in STICKER_TASKS or self._synced:
            return False
        return self._engine is not None or not self.store.has_items(task)

    def ready(self, task: str) -> None:
        """The task's items are in the store (a fresh data dir's stickers need the library)."""
        if self._items_may_lag(task):
            self.ensure_items()

    def library_changed(self) -> None:
        """After a pack change or a new index version: items follow at the next request."""
        self._synced = False

    def add_dialogues(self, dialogues: list[Dialogue], source: str) -> dict:
        """Dialogues as utterance-emotion items (one per turn, with the recognizer's reading)
        and best-sticker items (which sticker goes after the whole dialogue)."""
        utterances, questions = [], []
        for number, dialogue in enumerate(dialogues):
            if not dialogue.turns:
                continue
            key = f"{source}:{dialogue.id or number}"
            reading = self.engine.read_emotion(dialogue, None, None)
            for turn_index, (turn, read) in enumerate(zip(dialogue.turns, reading.turns)):
                best = max(read.emotion, key=read.emotion.get)
                utterances.append(Item(
                    f"{key}/{turn_index}", "utterance_emotion",
                    {"speaker": turn.speaker, "text": turn.content(), "turn": turn_index,
                     "dialogue": key}, key, number * 1000 + turn_index, best,
                    round(float(read.emotion[best]), 4), self.engine.emotion_model_version))
            questions.append(Item(f"{key}/next", "best_sticker",
                                  {"turns": [f"{t.speaker}: {t.content()}" for t in dialogue.turns]},
                                  source, number))
        self.store.put_items(utterances + questions)
        return {"utterance_items": len(utterances), "best_sticker_items": len(questions)}

    def import_file(self, path: Path, task: str, source: str = "import") -> dict:
        """An export (JSONL, CSV, Parquet) adds labels; a conversation file (MELD or EmoryNLP
        CSV, MOD JSON, a transcript) adds utterance and best-sticker items."""
        path = Path(path)
        if task in ("sticker_emotion", "sticker_text", "best_sticker"):
            self.ensure_items()
        kind = import_kind(path, task)
        if kind == "labels":
            return import_labels(self.store, path, task)
        if kind == "sticker_emotions":
            return self.import_sticker_emotions(path)
        return self.add_dialogues(read_dialogue_file(path), path.stem)

    def import_sticker_emotions(self, path: Path) -> dict:
        """A plain CSV of ``id,emotion`` (as ``assets/labels/sticker_emotions.csv``): each row
        a label by an annotator named after the file. Every row is checked first."""
        with path.open(encoding="utf-8", newline="") as file:
            rows = list(csv.DictReader(file))
        for number, row in enumerate(rows, start=1):
            try:
                self.store.check_label("sticker_emotion", row["id"], row["emotion"])
            except LabelError as error:
                raise LabelError(f"{path.name}, row {number}: {error}") from None
        who = Identity(path.stem, "annotator")
        for row in rows:
            self.label("sticker_emotion", row["id"], row["emotion"], who, source="import")
        return {"imported": len(rows), "new_items": 0}

    # ------------------------------------------------------------ labelling

    def next_item(self, task: str, annotator: str, order: str = DEFAULT_ORDER,
                  pack: str | None = None) -> dict | None:
        self.ensure_items()
        item = self.store.next_item(task, annotator, order=order, group=pack or None,
                                    overlap=self.overlap)
        return self.view(item, annotator, pack) if item else None

    def view(self, item: Item, annotator: str, pack: str | None = None) -> dict:
        """An item as the tab and the API show it."""
        progress = self.store.progress(item.task, annotator, pack or None)
        campaign = self.store.campaign_of(item.task, item.id)
        suggesting = campaign is None or bool(campaign["suggestions"])
        shown = {"task": item.task, "id": item.id, "payload": item.payload,
                 "suggestion": item.suggestion if suggesting else None,
                 "confidence": item.confidence if suggesting else None,
                 "model_version": item.model_version, "done": progress["labelled"],
                 "skipped": progress["skipped"], "total": progress["total"],
                 "campaign": campaign["id"] if campaign else None}
        if item.task == "utterance_emotion":
            shown["dialogue"] = [{"id": u.id, "speaker": u.payload.get("speaker", ""),
                                  "text": u.payload.get("text", ""),
                                  "suggestion": u.suggestion if suggesting else None}
                                 for u in self.store.items(item.task, item.group)]
        if item.task == "best_sticker":
            shown["candidates"] = self.candidates(item)
            first = shown["candidates"][0] if shown["candidates"] and suggesting else None
            shown["suggestion"] = first["id"] if first else None
            shown["confidence"] = first["score"] if first else None
        return shown

    def candidates(self, item: Item) -> list[dict]:
        """The selector's top stickers for a best-sticker question."""
        results = self.engine.search("\n".join(item.payload.get("turns", [])) or "…", CANDIDATES)
        return [{"id": r.id, "label": r.label, "emoji": r.emoji, "file": str(r.path),
                 "score": round(r.score, 4), "emotion": r.emotion} for r in results]

    def label(self, task: str, item_id: str, label: str, who: Identity, *, source: str = "studio",
              session: str = "", shown: list[str] | None = None, key: str = "") -> dict:
        """Record a label (committed when this returns) and maybe a training request."""
        item, campaign = self.store.item_and_campaign(task, item_id)
        if item is None and self._items_may_lag(task):
            self.ensure_items()
            item, campaign = self.store.item_and_campaign(task, item_id)
        if item is None:
            self.store.require_item(task, item_id)  # says whether it is unknown or retired
        self._on_record(who)
        event = self.store.label(task, item_id, label, who.name, source=source, session=session,
                                 suggestion=item.suggestion, confidence=item.confidence,
                                 model_version=item.model_version, shown=shown, key=key,
                                 campaign=campaign["id"] if campaign else None,
                                 suggestion_shown=None if item.suggestion is None else
                                 (campaign is None or bool(campaign["suggestions"])))
        request = self.store.maybe_request_training(task, self.train_every, "trigger")
        return {"event": event, "training_request": request}

    def settle(self, task: str, item_id: str, label: str, who: Identity, *, session: str = "",
               key: str = "") -> dict:
        """A reviewer settles ``item_id``: their label stands above the annotators'."""
        self._on_record(who)
        event = self.store.settle(task, item_id, label, who.name, session=session, key=key)
        return {"event": event, "item": item_id, "label": self.store.check_label(task, item_id, label)}

    def _on_record(self, who: Identity) -> None:
        """Who writes is on record, with the role they had."""
        if who.name not in self._annotators:
            self.store.add_annotator(who.name, who.role)
            self._annotators.add(who.name)

    def record_feedback(self, *labels: Feedback) -> None:
        """Chat likes, dislikes and swaps, as best-sticker labels; a label the store refuses
        (a sticker of a pack removed meanwhile) is logged, never the chat's problem."""
        self.ensure_items()
        try:
            record_feedback(self.store, *labels)
        except LabelError as error:
            log.warning("chat feedback not recorded: %s", error)

    # ------------------------------------------------------------ corrections → engine

    def corrections(self) -> dict[str, dict]:
        """Sticker id → what people set: the latest text correction (label, tags, OCR text)
        and the majority emotion."""
        overrides: dict[str, dict] = {}
        for row in self.store.current_labels("sticker_text"):  # in event order: latest wins
            overrides.setdefault(row["item"], {}).update(json.loads(row["label"]))
        for sticker_id, emotion in self.store.consensus("sticker_emotion").items():
            overrides.setdefault(sticker_id, {})["emotion"] = emotion
        return overrides

    def apply_corrections(self) -> bool:
        """A new index version with people's corrections, if they changed."""
        changed = self.engine.apply_sticker_corrections(self.corrections())
        if changed:
            self.library_changed()
        return changed


def sticker_listing(engine: Engine) -> list[dict]:
    """Every sticker with its emotion, who gave it (people or model) and the confidence: what
    ``memeui library stickers`` and ``/library_stickers`` answer."""
    return [{k: r[k] for k in ("id", "label", "pack", "emotion", "emotion_source", "confidence")}
            for r in engine.sticker_readings()]


def import_kind(path: Path, task: str) -> str:
    """What a file to import holds: ``labels`` (an export), ``sticker_emotions`` (an
    ``id,emotion`` CSV) or ``conversations`` (to label): the CLI asks it too, to send each kind
    to the server's endpoint for it."""
    header = _csv_header(path)
    if path.suffix.lower() in (".jsonl", ".parquet") or {"task", "item", "annotator", "label"} <= header:
        return "labels"
    if task == "sticker_emotion" and {"id", "emotion"} <= header:
        return "sticker_emotions"
    return "conversations"


def read_dialogue_file(path: Path) -> list[Dialogue]:
    """The conversations of a MELD or EmoryNLP CSV, a MOD JSON or a transcript file."""
    try:
        return read_conversations(str(path))
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise LabelError(f"{Path(path).name} is neither a label export nor a conversation "
                         f"file this app reads: {error}") from None


def dialogues_as_rows(dialogues: list[Dialogue]) -> list[dict]:
    """Dialogues as plain data for ``/import_conversations`` (and back: ``dialogues_from_rows``)."""
    return [{"id": d.id, "turns": [{"speaker": t.speaker, "text": t.content()} for t in d.turns]}
            for d in dialogues]


def dialogues_from_rows(rows) -> list[Dialogue]:
    if not isinstance(rows, list) or not all(
            isinstance(row, dict) and isinstance(row.get("turns"), list) for row in rows):
        raise LabelError('conversations are a list of {"id": …, "turns": [{"speaker": …, '
                         '"text": …}, …]}')
    dialogues = []
    for row in rows:
        turns = tuple(Turn(str(t.get("speaker") or "someone"), check_message(str(t.get("text", ""))))
                      for t in row["turns"] if isinstance(t, dict))
        dialogues.append(Dialogue(turns, str(row.get("id") or "")))
    return dialogues


def _csv_header(path: Path) -> set[str]:
    """The column names of a CSV file (empty for other files)."""
    if path.suffix.lower() != ".csv":
        return set()
    with path.open(encoding="utf-8", errors="replace", newline="") as file:
        return {column.strip() for column in next(csv.reader(file), [])}


def open_store(settings: Settings) -> LabelStore:
    """The deployment's label store (``MEMEUI_STORE``, else the data dir's DuckDB file), with
    the deployment's labels; no model loads."""
    return LabelStore(settings.store or settings.data_dir / LABELS_FILE,
                      scheme(settings.label_scheme).labels)
