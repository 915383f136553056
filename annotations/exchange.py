"""Labels in and out of the store: JSONL, CSV and Parquet.

An export holds the standing labels (each annotator's per item; for a settled item the
reviewer's) with the item's payload, the campaign each was given in and whether the model's
suggestion was shown, so it is a
dataset on its own (``datasets.load_dataset("parquet", data_files=…)`` and DuckDB read it), and
importing it into an empty store restores the same current labels.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb

from annotations.databases import parquet_columns
from annotations.store import TASKS, Item, LabelError, LabelStore

FORMATS = ("parquet", "jsonl", "csv")
COLUMNS = ("task", "item", "annotator", "label", "time", "suggestion", "confidence",
           "model_version", "source", "session", "shown", "grp", "payload", "campaign",
           "suggestion_shown")
TYPES = {"time": "float64", "confidence": "float64", "campaign": "int64",
         "suggestion_shown": "bool"}  # the Parquet type of each column that is not a string
REQUIRED = ("task", "item", "annotator", "label")


def export_labels(store: LabelStore, out: Path, format: str | None = None,
                  task: str | None = None) -> int:
    """Write the current labels to ``out`` (format from the suffix unless given); returns rows."""
    return write_rows(store.current_labels(task), out, format)


def write_rows(rows: list[dict], out: Path, format: str | None = None) -> int:
    """Label rows (as ``LabelStore.current_labels`` gives them) to a file; returns rows."""
    format = format or Path(out).suffix.lstrip(".").lower()
    if format not in FORMATS:
        raise LabelError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    rows = [{column: row.get(column) for column in COLUMNS} for row in rows]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "jsonl":
        with out.open("w", encoding="utf-8") as file:
            for row in rows:
                file.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif format == "csv":
        with out.open("w", encoding="utf-8", newline="") as file:
            writer = csv.DictWriter(file, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, pa.type_for_alias(TYPES.get(c, "string"))) for c in COLUMNS])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out)
    return len(rows)


def read_rows(path: Path) -> list[dict]:
    """Rows of an export (or any file with its columns) in JSONL, CSV or Parquet."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
        elif suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as file:
                rows = list(csv.DictReader(file))
        elif suffix == ".parquet":
            rows = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
            rows = [dict(zip(parquet_columns(path), row)) for row in rows]
        else:
            raise LabelError(f"{path.name}: labels are read from .jsonl, .csv or .parquet files")
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error, duckdb.Error) as error:
        raise LabelError(f"{path.name} cannot be read: {error}") from None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or any(not row.get(key) for key in REQUIRED):
            raise LabelError(f"{path.name}, row {number}: needs {', '.join(REQUIRED)}")
    return rows


def import_labels(store: LabelStore, path: Path, task: str | None = None,
                  source: str = "import") -> dict:
    """Add the rows of ``path`` as label events (``task`` keeps only that task's rows); items
    the store lacks are created from the row's payload. Every row is checked before any is
    written, so a bad file adds no label."""
    return import_rows(store, read_rows(path), task, source)


def import_rows(store: LabelStore, rows: list[dict], task: str | None = None,
                source: str = "import") -> dict:
    """``import_labels`` for rows already read (what the server's import endpoint gets)."""
    rows = [row for row in rows if isinstance(row, dict) and (task is None or row.get("task") == task)]
    for number, row in enumerate(rows, start=1):
        if any(not row.get(key) for key in REQUIRED):
            raise LabelError(f"row {number}: needs {', '.join(REQUIRED)}")
    for number, row in enumerate(rows, start=1):
        if row["task"] not in TASKS:
            raise LabelError(f"row {number}: unknown task {row['task']!r}")
    missing = list({(row["task"], str(row["item"])): row for row in rows
                    if store.item(row["task"], str(row["item"])) is None}.values())
    store.put_items([Item(str(row["item"]), row["task"], _payload(row), str(row.get("grp") or ""))
                     for row in missing])
    for number, row in enumerate(rows, start=1):
        try:
            store.check_label(row["task"], str(row["item"]), str(row["label"]))
        except LabelError as error:
            raise LabelError(f"row {number}: {error}") from None
    for row in rows:
        store.label(row["task"], str(row["item"]), str(row["label"]), str(row["annotator"]),
                    source=source, session=str(row.get("session") or ""),
                    suggestion=row.get("suggestion") or None,
                    confidence=_number(row.get("confidence")),
                    model_version=str(row.get("model_version") or ""),
                    shown=json.loads(row["shown"]) if row.get("shown") else None,
                    suggestion_shown=_flag(row.get("suggestion_shown")))
    return {"imported": len(rows), "new_items": len(missing)}


def _payload(row: dict) -> dict:
    payload = row.get("payload")
    try:
        return json.loads(payload) if isinstance(payload, str) and payload else (payload or {})
    except json.JSONDecodeError:
        return {}


def _flag(value) -> bool | None:
    """A yes/no column as JSON, CSV ("True", "false") or Parquet gives it."""
    if isinstance(value, bool) or value is None:
        return value
    return {"true": True, "false": False}.get(str(value).strip().lower())


def _number(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
