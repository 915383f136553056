"""How far annotators agree, per task: Fleiss' κ, Krippendorff's α, Cohen's κ per pair, each
annotator against the majority and against the model, and how fast each one labels.

The statistics come from maintained libraries (statsmodels, krippendorff, scikit-learn); this
module only turns the store's current labels into the tables they expect. "unsure" answers are
left out: they say the annotator did not choose.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

import numpy as np

from annotations.store import UNSURE, LabelStore

IDLE_SECONDS = 300  # a gap longer than this between two labels is a break, not labelling time


def agreement(store: LabelStore, task: str) -> dict:
    """Every agreement figure for ``task``, from each annotator's own standing labels (a
    reviewer's settled label does not count as an annotator's)."""
    rows = [r for r in store.annotator_labels(task) if r["label"] != UNSURE]
    return agreement_of(rows)


def agreement_of(rows: list[dict]) -> dict:
    """Agreement over label rows ``{"item", "annotator", "label", "time"?, "suggestion"?}``."""
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        by_item[row["item"]][row["annotator"]] = row["label"]
    annotators = sorted({row["annotator"] for row in rows})
    shared = {item: labels for item, labels in by_item.items() if len(labels) >= 2}
    return {
        "n_items": len(by_item),
        "n_items_shared": len(shared),
        "n_annotators": len(annotators),
        "n_labels": len(rows),
        "fleiss_kappa": fleiss_kappa(list(shared.values())),
        "krippendorff_alpha": krippendorff_alpha(by_item, annotators),
        "cohen_kappa": cohen_kappas(by_item, annotators),
        "annotators": per_annotator(rows, by_item),
        "model": with_model(rows),
    }


def with_model(rows: list[dict]) -> dict:
    """Agreement with the model's suggestion where annotators saw it and where a campaign hid
    it: a gap between the two is anchoring (labels that follow the suggestion shown)."""
    shown, hidden = [], []
    for row in rows:
        if row.get("suggestion"):
            (hidden if row.get("suggestion_shown") is False else shown).append(
                row["label"] == row["suggestion"])
    return {"with_suggestion_shown": _share(shown), "labels_shown": len(shown),
            "with_suggestion_hidden": _share(hidden), "labels_hidden": len(hidden)}


def fleiss_kappa(items: list[dict[str, str]]) -> float | None:
    """Fleiss' κ over items rated by the same number of annotators (Fleiss' formula assumes
    it): the most common count among items with two or more; items with more use their first
    that many ratings."""
    counts = Counter(len(labels) for labels in items if len(labels) >= 2)
    if not counts:
        return None
    raters = max(counts, key=lambda n: (counts[n], n))
    rated = [list(labels.values())[:raters] for labels in items if len(labels) >= raters]
    categories = sorted({label for labels in rated for label in labels})
    if len(rated) < 2 or len(categories) < 2:
        return None
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

    table = np.array([[labels.count(c) for c in categories] for labels in rated])
    return _rounded(statsmodels_fleiss(table, method="fleiss"))


def krippendorff_alpha(by_item: dict[str, dict[str, str]], annotators: list[str]) -> float | None:
    """Krippendorff's α (nominal) over every label, missing ratings allowed."""
    categories = sorted({label for labels in by_item.values() for label in labels.values()})
    if len(categories) < 2 or len(annotators) < 2:
        return None
    import krippendorff

    code = {label: float(i) for i, label in enumerate(categories)}
    data = np.array([[code[by_item[item][a]] if a in by_item[item] else np.nan for item in by_item]
                     for a in annotators])
    try:
        return _rounded(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    except ValueError:  # no item has two ratings
        return None


def cohen_kappas(by_item: dict[str, dict[str, str]], annotators: list[str]) -> dict[str, dict]:
    """Cohen's κ for each pair of annotators over the items both labelled."""
    from sklearn.metrics import cohen_kappa_score

    pairs = {}
    for a, b in combinations(annotators, 2):
        both = [(labels[a], labels[b]) for labels in by_item.values() if a in labels and b in labels]
        if len(both) < 2:
            continue
        first, second = zip(*both)
        kappa = cohen_kappa_score(first, second) if len(set(first) | set(second)) > 1 else None
        pairs[f"{a}|{b}"] = {"kappa": _rounded(kappa), "n_items": len(both)}
    return pairs


def per_annotator(rows: list[dict], by_item: dict[str, dict[str, str]]) -> dict[str, dict]:
    """Per annotator: labels, agreement with the majority of the others on shared items, with
    the model's suggestion, and labels per minute of labelling time."""
    result = {}
    for name in sorted({row["annotator"] for row in rows}):
        mine = [row for row in rows if row["annotator"] == name]
        with_majority = []
        for row in mine:
            others = Counter(label for who, label in by_item[row["item"]].items() if who != name)
            if others:
                top = max(others.values())
                with_majority.append(row["label"] in {l for l, n in others.items() if n == top})
        suggested = [row["label"] == row["suggestion"] for row in mine if row.get("suggestion")]
        model = with_model(mine)
        result[name] = {
            "labels": len(mine),
            "agreement_with_majority": _share(with_majority),
            "agreement_with_model": _share(suggested),
            "agreement_with_model_shown": model["with_suggestion_shown"],
            "agreement_with_model_hidden": model["with_suggestion_hidden"],
            "labels_per_minute": labels_per_minute([row.get("time") for row in mine]),
        }
    return result


def labels_per_minute(times: list[float | None]) -> float | None:
    """Labels over the time spent labelling: gaps longer than IDLE_SECONDS are breaks."""
    times = sorted(t for t in times if t is not None)
    if len(times) < 2:
        return None
    busy = sum(min(b - a, IDLE_SECONDS) for a, b in zip(times, times[1:]))
    return _rounded((len(times) - 1) / busy * 60) if busy > 0 else None


def _share(flags: list[bool]) -> float | None:
    return _rounded(sum(flags) / len(flags)) if flags else None


def _rounded(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)
