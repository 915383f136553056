"""Review and campaigns on the store: a settled label wins in current labels, consensus, exports
and the next snapshot and can be undone; the queue's order; each annotator's accuracy against
review; campaigns serve only their items, with their overlap and target; closing one requests
its fine-tuning; a hidden suggestion is recorded as hidden; the activity view. Every test runs
on a DuckDB file and on Postgres."""

from __future__ import annotations

import pytest

from annotations.activity import activity
from annotations.agreement import agreement
from annotations.campaigns import campaigns, close_campaign, open_campaign, select_items
from annotations.exchange import export_labels, read_rows
from annotations.review import ANNOTATORS_DISAGREE, MODEL_DISAGREES, next_review, review_queue, review_stats
from annotations.store import Item, LabelError, LabelStore
from engine.training.snapshot import majority_labels

EKMAN = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
TASK = "sticker_emotion"


@pytest.fixture
def store(store_location) -> LabelStore:
    store = LabelStore(store_location(), EKMAN)
    confidences = [0.95, 0.2, 0.5, 0.1, 0.9, 0.3, 0.6, 0.7]
    store.put_items([Item(f"s{i}", TASK, {"label": f"sticker {i}"}, "pack-a" if i < 4 else "pack-b",
                          i, "joy", confidences[i], "model-1") for i in range(8)])
    yield store
    store.close()


def labels(store: LabelStore, table: dict[str, dict[str, str]]) -> None:
    for item, given in table.items():
        for annotator, label in given.items():
            store.label(TASK, item, label, annotator, suggestion="joy", confidence=0.9)


def test_a_settled_label_wins_everywhere_until_undone(store, tmp_path):
    labels(store, {"s1": {"ann": "anger", "bob": "fear", "cy": "fear"}})
    assert store.consensus(TASK) == {"s1": "fear"}
    store.settle(TASK, "s1", "anger", "rev")
    assert [(r["annotator"], r["label"], r["source"]) for r in store.current_labels(TASK)] == \
        [("rev", "anger", "review")]
    assert store.consensus(TASK) == {"s1": "anger"}
    export_labels(store, tmp_path / "labels.jsonl")
    assert [(r["annotator"], r["label"]) for r in read_rows(tmp_path / "labels.jsonl")] == [("rev", "anger")]
    snapshot = store.snapshot(tmp_path / "snapshots")
    assert majority_labels(snapshot, TASK) == {"s1": "anger"}
    assert len(store.annotator_labels(TASK)) == 3  # the annotators' own labels stay on record
    assert agreement(store, TASK)["n_labels"] == 3  # and agreement reads them, not the review

    undone = store.undo(TASK, "rev", review=True)
    assert undone.kind == "review" and undone.label == "anger"
    assert store.consensus(TASK) == {"s1": "fear"}
    assert majority_labels(store.snapshot(tmp_path / "snapshots"), TASK) == {"s1": "fear"}
    assert store.undo(TASK, "rev", review=True) is None


def test_an_annotators_undo_never_takes_back_their_review_and_the_reverse(store):
    store.label(TASK, "s2", "joy", "rev")
    store.settle(TASK, "s1", "anger", "rev")
    assert store.undo(TASK, "rev").item == "s2"  # the label, not the review after it
    assert store.consensus(TASK) == {"s1": "anger"}


def test_review_settles_emotion_labels_only_with_the_tasks_labels(store):
    with pytest.raises(LabelError, match="unknown label 'furious'"):
        store.settle(TASK, "s1", "furious", "rev")
    with pytest.raises(LabelError, match="review settles emotion labels"):
        store.settle("sticker_text", "s1", '{"label": "x"}', "rev")


def test_the_queue_puts_the_most_divided_first_then_the_confident_models_contradictions(store):
    labels(store, {"s0": {"ann": "anger", "bob": "anger"},  # against a 0.95 model: joy
                   "s4": {"ann": "sadness"},  # against a 0.9 model
                   "s1": {"ann": "anger", "bob": "fear", "cy": "disgust"},  # all three differ
                   "s2": {"ann": "anger", "bob": "anger", "cy": "fear"},
                   "s3": {"ann": "joy", "bob": "joy"},  # agreed with the model: nothing to do
                   "s5": {"ann": "anger"}})  # against a 0.3 model: not confident
    queue = review_queue(store, TASK)
    assert [w["item"] for w in queue] == ["s1", "s2", "s0", "s4"]
    assert [w["reason"] for w in queue] == [ANNOTATORS_DISAGREE] * 2 + [MODEL_DISAGREES] * 2
    first = next_review(store, TASK)
    assert first["annotators"] == {"ann": "anger", "bob": "fear", "cy": "disgust"}
    assert first["model"] == "joy" and first["waiting"] == 4
    store.settle(TASK, "s1", "fear", "rev")
    assert next_review(store, TASK)["item"] == "s2"


def test_review_stats_give_accuracy_against_review_and_agreement_before_and_after(store):
    labels(store, {"s1": {"ann": "anger", "bob": "fear"}, "s2": {"ann": "anger", "bob": "sadness"},
                   "s3": {"ann": "joy", "bob": "joy"}})
    before = review_stats(store, TASK)
    assert before["waiting"] == 2 and before["settled"] == 0
    store.settle(TASK, "s1", "anger", "rev")
    store.settle(TASK, "s2", "anger", "rev")
    after = review_stats(store, TASK)
    assert after["waiting"] == 0 and after["settled"] == 2
    assert after["accuracy_against_review"] == {"ann": {"items": 2, "accuracy": 1.0},
                                                "bob": {"items": 2, "accuracy": 0.0}}
    assert after["after_review"]["krippendorff_alpha"] > after["before_review"]["krippendorff_alpha"]


def test_a_campaign_serves_only_its_items_with_its_overlap_until_its_target(store):
    campaign = open_campaign(store, "round 1", TASK, "pack:pack-b", "boss", overlap=2, target=2)
    assert campaign["size"] == 4 and campaign["done"] == 0 and campaign["status"] == "open"
    served = set()
    for annotator in ("ann", "bob"):
        for _ in range(2):
            item = store.next_item(TASK, annotator, order="library")
            assert item.group == "pack-b"
            served.add(item.id)
            store.label(TASK, item.id, "anger", annotator, campaign=store.campaign_of(TASK, item.id)["id"])
    assert served == {"s4", "s5"}  # each item reached two annotators before a new one began
    report = campaigns(store)[0]
    assert report["done"] == 2 and report["progress"] == 1.0
    assert report["annotators"] == {"ann": 2, "bob": 2}
    assert store.next_item(TASK, "cy") is None  # the target is met: nothing more to serve
    assert {r["campaign"] for r in store.current_labels(TASK)} == {campaign["id"]}

    closed = close_campaign(store, campaign["id"], "boss")
    assert closed["status"] == "closed"
    request = store.training_requests(TASK)[-1]
    assert request["id"] == closed["training_request"] and "round 1" in request["reason"]
    assert store.next_item(TASK, "cy").group == "pack-a"  # no open campaign: the whole task
    with pytest.raises(LabelError, match="closed already"):
        close_campaign(store, campaign["id"], "boss")


def test_campaign_selections_and_their_refusals(store):
    assert select_items(store, TASK, "uncertain:3") == ["s3", "s1", "s5"]
    sample = select_items(store, TASK, "random:3", seed="x")
    assert len(sample) == 3 and sample == select_items(store, TASK, "random:3", seed="x")
    assert len(select_items(store, TASK, "all")) == 8
    for selection, message in (("pack:nope", "chooses no item"), ("uncertain:x", "number of items"),
                               ("best", "unknown selection")):
        with pytest.raises(LabelError, match=message):
            open_campaign(store, "c", TASK, selection, "boss")
    with pytest.raises(LabelError, match="the target is 1 to 4"):
        open_campaign(store, "c", TASK, "pack:pack-a", "boss", target=9)
    open_campaign(store, "c", TASK, "pack:pack-a", "boss")
    with pytest.raises(LabelError, match="open already"):
        open_campaign(store, "c", TASK, "pack:pack-b", "boss")


def test_hidden_suggestions_are_recorded_and_agreement_with_the_model_is_split(store):
    hidden = open_campaign(store, "blind", TASK, "pack:pack-a", "boss", suggestions=False)
    assert store.campaign_of(TASK, "s0") == {"id": hidden["id"], "suggestions": False}
    store.label(TASK, "s0", "joy", "ann", suggestion="joy", suggestion_shown=False)
    store.label(TASK, "s1", "anger", "ann", suggestion="joy", suggestion_shown=False)
    store.label(TASK, "s4", "joy", "ann", suggestion="joy", suggestion_shown=True)
    model = agreement(store, TASK)["model"]
    assert model == {"with_suggestion_shown": 1.0, "labels_shown": 1,
                     "with_suggestion_hidden": 0.5, "labels_hidden": 2}


def test_activity_counts_answers_per_hour_busy_and_idle_time(store):
    for item in ("s0", "s1", "s2"):
        store.label(TASK, item, "joy", "ann")
    store.undo(TASK, "ann")
    report = activity(store)["annotators"]["ann"]
    assert report["answers"] == {"label": 3, "undo": 1} and report["undone"] == 1
    assert sum(report["labels_per_hour"].values()) == 3
    assert report["idle_minutes"] == 0 and report["recent"][0]["kind"] == "undo"


def test_a_backup_keeps_campaigns_and_reviews_and_ids_continue(store, store_location, tmp_path):
    first = open_campaign(store, "kept", TASK, "pack:pack-a", "boss", overlap=2)
    labels(store, {"s0": {"ann": "anger", "bob": "fear"}})
    store.settle(TASK, "s0", "fear", "rev")
    restored = LabelStore(store_location("restored"), EKMAN)
    restored.restore(store.backup(tmp_path / "backup"))
    assert [(c["name"], c["size"], c["done"]) for c in campaigns(restored)] == [("kept", 4, 1)]
    assert restored.consensus(TASK) == {"s0": "fear"}
    second = open_campaign(restored, "next", TASK, "pack:pack-b", "boss")
    assert second["id"] == first["id"] + 1
    restored.close()


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_exports_carry_the_campaign_and_whether_the_suggestion_was_shown(store, tmp_path, suffix):
    campaign = open_campaign(store, "c1", TASK, "pack:pack-a", "boss", suggestions=False)
    store.label(TASK, "s0", "joy", "ann", suggestion="joy", campaign=campaign["id"],
                suggestion_shown=False)
    export_labels(store, tmp_path / f"labels.{suffix}")
    row = read_rows(tmp_path / f"labels.{suffix}")[0]
    assert str(row["campaign"]) == str(campaign["id"])
    assert str(row["suggestion_shown"]).lower() == "false"
