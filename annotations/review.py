"""Review: the items whose labels people would argue about, and what settling them changed.

An item waits for review when its annotators disagree, or when they agree against a confident
model. The queue puts first what settling would change most: the most divided items, then the
model's most confident contradictions. A reviewer's settled label is a store event (kind and
source ``review``) that stands above the annotators' labels until undone; the annotators' own
labels stay on record, so each one's accuracy against the reviewed labels can be read, and the
agreement among annotators before review set beside the agreement of the labels after it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from annotations.agreement import agreement_of
from annotations.store import UNSURE, LabelStore, check_review_task

CONFIDENT = 0.8  # a model this sure, contradicted by everyone who labelled, is worth a look
ANNOTATORS_DISAGREE = "annotators disagree"
MODEL_DISAGREES = "people disagree with a confident model"


def review_queue(store: LabelStore, task: str, confident: float = CONFIDENT) -> list[dict]:
    """Every item of ``task`` waiting for review, in the order to review them."""
    check_review_task(task)
    settled = {row["item"] for row in store.current_labels(task, "settled_labels")}
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for row in store.annotator_labels(task):
        if row["label"] != UNSURE and row["item"] not in settled:
            by_item[row["item"]][row["annotator"]] = row["label"]
    items = {item.id: item for item in store.items(task)}
    waiting = []
    for item_id, labels in by_item.items():
        item = items.get(item_id)
        if item is None:  # retired meanwhile
            continue
        counts = Counter(labels.values())
        divided = 1 - max(counts.values()) / len(labels)
        against_model = (item.suggestion is not None and (item.confidence or 0) >= confident
                         and item.suggestion not in counts)
        if not divided and not against_model:
            continue
        waiting.append({"task": task, "item": item_id, "payload": item.payload,
                        "annotators": dict(sorted(labels.items())), "model": item.suggestion,
                        "confidence": item.confidence, "disagreement": round(divided, 4),
                        "reason": ANNOTATORS_DISAGREE if divided else MODEL_DISAGREES})
    waiting.sort(key=lambda w: (-w["disagreement"], -(w["confidence"] or 0), w["item"]))
    return waiting


def next_review(store: LabelStore, task: str) -> dict | None:
    """The item to review next, with every annotator's label and the model's, and how many
    wait; None when nothing does."""
    queue = review_queue(store, task)
    return {**queue[0], "waiting": len(queue)} if queue else None


def review_stats(store: LabelStore, task: str) -> dict:
    """Items waiting and settled; each annotator's accuracy against the settled labels; the
    agreement of the annotators' own labels (before review) and of the labels as they stand
    after it (an annotator's label of a settled item counted as the settled one)."""
    check_review_task(task)
    settled = {row["item"]: row["label"] for row in store.current_labels(task, "settled_labels")}
    own = [row for row in store.annotator_labels(task) if row["label"] != UNSURE]
    accuracy: dict[str, list[bool]] = defaultdict(list)
    for row in own:
        if row["item"] in settled:
            accuracy[row["annotator"]].append(row["label"] == settled[row["item"]])
    after = [{**row, "label": settled.get(row["item"], row["label"])} for row in own]
    return {
        "task": task,
        "waiting": len(review_queue(store, task)),
        "settled": len(settled),
        "accuracy_against_review": {name: {"items": len(flags),
                                           "accuracy": round(sum(flags) / len(flags), 4)}
                                    for name, flags in sorted(accuracy.items())},
        "before_review": _agreement_summary(agreement_of(own)),
        "after_review": _agreement_summary(agreement_of(after)),
    }


def _agreement_summary(figures: dict) -> dict:
    return {key: figures[key] for key in ("krippendorff_alpha", "fleiss_kappa", "n_items_shared")}

