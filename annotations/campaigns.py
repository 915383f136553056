"""Campaigns: a task opened by an admin on a chosen set of items, with an overlap (annotators per
item) and a target (items to finish).

While a task has an open campaign, annotators are served only open campaigns' items (the store's
``next_item``); a task without one is served whole, as before campaigns. Each label names its
campaign, so progress and exports read it; closing a campaign records its fine-tuning request.
Campaigns are bookkeeping, not labels: they change in place (open, then closed).
"""

from __future__ import annotations

import hashlib
import time

from annotations.store import TASKS, LabelError, LabelStore, check_name

SELECTIONS = ("all", "pack", "file", "uncertain", "random")
MAX_OVERLAP = 20


def parse_selection(selection: str) -> tuple[str, str]:
    """``all``, ``pack:NAME``, ``file:NAME`` (the items an imported file added), ``uncertain:N``
    (the N the model is least sure of) or ``random:N`` → (kind, argument)."""
    kind, _, argument = (selection or "").strip().partition(":")
    if kind not in SELECTIONS or (kind != "all" and not argument.strip()):
        raise LabelError(f"unknown selection {selection!r}: all, pack:NAME, file:NAME, "
                         "uncertain:N or random:N")
    if kind in ("uncertain", "random") and not (argument.isdigit() and int(argument) > 0):
        raise LabelError(f"{kind}:N takes a number of items, not {argument!r}")
    return kind, argument.strip()


def select_items(store: LabelStore, task: str, selection: str, seed: str = "") -> list[str]:
    """The ids of ``task``'s items in service that ``selection`` chooses."""
    kind, argument = parse_selection(selection)
    items = store.items(task)
    if kind == "pack":
        items = [i for i in items if i.group == argument]
    elif kind == "file":  # utterances are grouped "FILE:dialogue", best-sticker questions "FILE"
        items = [i for i in items if i.group == argument or i.group.startswith(argument + ":")]
    elif kind == "uncertain":
        items = sorted(items, key=lambda i: (i.confidence is not None, i.confidence or 0,
                                             i.position, i.id))[:int(argument)]
    elif kind == "random":  # a sample the campaign's name reproduces
        items = sorted(items, key=lambda i: hashlib.md5(f"{seed}/{i.id}".encode()).hexdigest())
        items = items[:int(argument)]
    return [i.id for i in items]


def open_campaign(store: LabelStore, name: str, task: str, selection: str, opened_by: str, *,
                  overlap: int = 1, target: int | None = None, suggestions: bool = True) -> dict:
    """Open a campaign on the items ``selection`` chooses; ``target`` defaults to all of them.
    ``suggestions`` False hides the model's suggestion from its annotators (the store still
    records it, and that it was hidden, to measure anchoring)."""
    name = check_name(name)
    if task not in TASKS:
        raise LabelError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if not 1 <= int(overlap) <= MAX_OVERLAP:
        raise LabelError(f"the overlap is 1 to {MAX_OVERLAP} annotators per item")
    if any(c["name"] == name and c["status"] == "open" for c in campaigns(store)):
        raise LabelError(f"a campaign named {name!r} is open already")
    chosen = select_items(store, task, selection, seed=name)
    if not chosen:
        raise LabelError(f"{selection!r} chooses no item of {task}: nothing to open a campaign on")
    target = len(chosen) if target in (None, 0) else int(target)
    if not 1 <= target <= len(chosen):
        raise LabelError(f"the target is 1 to {len(chosen)} items (what {selection!r} chooses)")
    with store.writing() as transaction:
        campaign = transaction.execute(
            "INSERT INTO campaigns (name, task, selection, overlap, target, suggestions, status, "
            "opened, opened_by) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?) RETURNING id",
            [name, task, selection, int(overlap), target, bool(suggestions), time.time(),
             check_name(opened_by)])[0][0]
        transaction.executemany("INSERT INTO campaign_items VALUES (?, ?)",
                                [(campaign, item) for item in chosen])
    return campaign_report(store, campaign)


def close_campaign(store: LabelStore, campaign: int, closed_by: str) -> dict:
    """Close an open campaign: its items are no longer served for it, and its task's
    fine-tuning is requested (the job runner picks the request up)."""
    found = _campaign(store, campaign)
    if found["status"] != "open":
        raise LabelError(f"campaign {campaign} ({found['name']}) is closed already")
    request = store.request_training(found["task"], check_name(closed_by),
                                     f"campaign {found['name']} closed")
    store.write("UPDATE campaigns SET status = 'closed', closed = ?, closed_by = ?, "
                "training_request = ? WHERE id = ?", [time.time(), closed_by, request["id"], campaign])
    return campaign_report(store, campaign)


def campaigns(store: LabelStore, status: str | None = None) -> list[dict]:
    """Every campaign (or those of ``status``), newest first, with its progress."""
    rows = store.read("SELECT id FROM campaigns" + (" WHERE status = ?" if status else "")
                      + " ORDER BY id DESC", [status] if status else [])
    return [campaign_report(store, row["id"]) for row in rows]


def campaign_report(store: LabelStore, campaign: int) -> dict:
    """A campaign with its progress: items done (labelled by ``overlap`` annotators or settled
    by review) of its target, and labels per annotator within it."""
    found = _campaign(store, campaign)
    per_annotator = store.read(
        "SELECT annotator, count(*) AS labels FROM annotator_labels WHERE task = ? AND item IN "
        "(SELECT item FROM campaign_items WHERE campaign = ?) GROUP BY annotator ORDER BY annotator",
        [found["task"], found["id"]])
    return {**found, "progress": round(min(found["done"], found["target"]) / found["target"], 4),
            "annotators": {row["annotator"]: row["labels"] for row in per_annotator}}


def _campaign(store: LabelStore, campaign) -> dict:
    try:
        campaign = int(campaign)
    except (TypeError, ValueError):
        raise LabelError(f"a campaign is named by its number, not {campaign!r}") from None
    rows = store.campaign_rows("k.id = ?", [campaign])
    if not rows:
        raise LabelError(f"there is no campaign {campaign}")
    return {**rows[0], "suggestions": bool(rows[0]["suggestions"])}
