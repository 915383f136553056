"""The label store: append-only events, undo, queues, migrations, concurrency, snapshots,
agreement against textbook examples, export/import, chat feedback, users. Every test that takes
``store`` or ``store_location`` runs on both backends: a DuckDB file and Postgres."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from annotations.agreement import agreement
from annotations.databases import open_database
from annotations.exchange import export_labels, import_labels
from annotations.feedback import Feedback, import_feedback_file, record_feedback
from annotations.store import MIGRATIONS, Item, LabelError, LabelStore, StoreLocked
from annotations.users import Users

EKMAN = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


def stickers(n: int, confidences=None) -> list[Item]:
    return [Item(f"s{i}", "sticker_emotion", {"label": f"sticker {i}"}, "pack-a" if i % 2 else "pack-b",
                 i, "joy", (confidences or [None] * n)[i], "model-1") for i in range(n)]


@pytest.fixture
def store(store_location) -> LabelStore:
    store = LabelStore(store_location(), EKMAN)
    store.put_items(stickers(6, [0.9, 0.2, 0.5, 0.1, 0.8, 0.3]))
    yield store
    store.close()


def test_labels_are_events_and_undo_is_an_event_too(store):
    first = store.label("sticker_emotion", "s1", "Joy", "ann")
    second = store.label("sticker_emotion", "s1", "anger", "ann")  # a correction
    assert [r["label"] for r in store.current_labels("sticker_emotion")] == ["anger"]
    undone = store.undo("sticker_emotion", "ann")
    assert undone.id == second
    assert [(r["id"], r["label"]) for r in store.current_labels()] == [(first, "joy")]
    store.undo("sticker_emotion", "ann")
    assert store.current_labels() == []
    assert store.undo("sticker_emotion", "ann") is None  # nothing left to undo
    kinds = [(e.kind, e.label, e.undoes) for e in store.events()]
    assert kinds == [("label", "joy", None), ("label", "anger", None),
                     ("undo", None, second), ("undo", None, first)]  # nothing updated or deleted


def test_the_store_refuses_unknown_tasks_items_labels_and_names(store):
    with pytest.raises(LabelError, match="unknown label 'happyish'.*known: anger"):
        store.label("sticker_emotion", "s1", "happyish", "ann")
    with pytest.raises(LabelError, match="unknown item 'nope'"):
        store.label("sticker_emotion", "nope", "joy", "ann")
    with pytest.raises(LabelError, match="unknown task"):
        store.label("sticker_mood", "s1", "joy", "ann")
    with pytest.raises(LabelError, match="unknown task"):
        agreement(store, "sticker_mood")
    with pytest.raises(LabelError, match="annotator name"):
        store.label("sticker_emotion", "s1", "joy", "  ")
    with pytest.raises(LabelError, match="no sticker of the library"):
        store.put_items([Item("d1", "best_sticker", {"turns": ["a: hi"]})])
        store.label("best_sticker", "d1", "s99", "ann")
    assert store.events() == []


def test_next_item_orders_skips_filters_and_respects_overlap(store):
    order = lambda **kw: [store.next_item("sticker_emotion", "ann",  # noqa: E731
                                          **{"order": "uncertain", **kw}).id]
    assert order() == ["s3"]  # lowest suggestion confidence first
    assert order(order="library") == ["s0"]
    assert order(group="pack-b") == ["s2"]
    store.label("sticker_emotion", "s3", "fear", "ann")
    store.skip("sticker_emotion", "s1", "ann")
    assert order() == ["s5"]  # labelled and skipped items are not served again
    assert store.progress("sticker_emotion", "ann") == {"labelled": 1, "skipped": 1, "total": 6}
    assert store.next_item("sticker_emotion", "bob").id == "s1"  # s3 has its one annotator
    assert store.next_item("sticker_emotion", "bob", overlap=2).id == "s3"
    store.undo("sticker_emotion", "ann")  # the skip
    assert order() == ["s1"]
    shuffled = {store.next_item("sticker_emotion", name, order="random").id
                for name in ("a", "b", "c", "d", "e", "f", "g")}
    assert len(shuffled) > 1  # each annotator gets their own order


def test_the_mixed_order_serves_the_most_uncertain_and_a_random_item_in_turn(store):
    served = []
    while (item := store.next_item("sticker_emotion", "ann", order="mixed")) is not None:
        uncertain = store.next_item("sticker_emotion", "ann", order="uncertain").id
        random = store.next_item("sticker_emotion", "ann", order="random").id
        assert item.id == (uncertain if len(served) % 2 == 0 else random)
        served.append(item.id)
        store.label("sticker_emotion", item.id, "joy", "ann")
    assert sorted(served) == [f"s{i}" for i in range(6)]


def test_migrations_bring_an_older_store_up_to_date_and_keep_its_events(store_location):
    path = store_location("old")
    old = open_database(path)
    with old.transaction() as write:
        write.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION)")
        write.execute(MIGRATIONS[0])
        write.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        write.execute("INSERT INTO items VALUES ('s1', 'sticker_emotion', 'pack', 0, '{}', NULL, NULL, '')")
        write.execute("INSERT INTO label_events (time, annotator, task, item, kind, label, source) "
                      "VALUES (1.0, 'ann', 'sticker_emotion', 's1', 'label', 'joy', 'studio')")
    old.close()
    store = LabelStore(path, EKMAN)
    assert store.schema_version == len(MIGRATIONS)
    assert [(r["annotator"], r["label"]) for r in store.current_labels()] == [("ann", "joy")]
    store.label("sticker_emotion", "s1", "anger", "bob", shown=["s1"])  # the new column works
    assert store.request_training("sticker_emotion", "admin", "test")["labels"] == 2
    store.close()
    assert LabelStore(path, EKMAN).schema_version == len(MIGRATIONS)  # applied once


def test_concurrent_writers_lose_nothing(store_location):
    where = store_location()
    store = LabelStore(where, EKMAN)
    store.put_items(stickers(50))
    acknowledged, errors = [], []

    def annotate(worker: int) -> None:
        try:
            for i in range(50):
                acknowledged.append(store.label("sticker_emotion", f"s{i}", EKMAN[(worker + i) % 7],
                                                f"annotator-{worker}"))
        except Exception as error:  # noqa: BLE001 - the test reports any failure
            errors.append(error)

    threads = [threading.Thread(target=annotate, args=(w,)) for w in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store.close()
    reopened = LabelStore(where, EKMAN)
    assert sorted(e.id for e in reopened.events()) == sorted(acknowledged)
    assert len(reopened.current_labels()) == 12 * 50


def test_a_label_retried_with_its_key_is_written_once_even_from_racing_threads(store):
    first = store.label("sticker_emotion", "s1", "joy", "ann", key="client-1:label-1")
    assert store.label("sticker_emotion", "s1", "joy", "ann", key="client-1:label-1") == first
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.label(
        "sticker_emotion", "s2", "fear", "ann", key="client-1:label-2"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8
    undone = store.undo("sticker_emotion", "ann", key="client-1:undo-1")
    assert store.undo("sticker_emotion", "ann", key="client-1:undo-1").id == undone.id
    assert [r["item"] for r in store.current_labels("sticker_emotion")] == ["s1"]  # one undo
    assert len(store.events("sticker_emotion")) == 3  # two labels, one undo
    with pytest.raises(LabelError, match="idempotency key"):
        store.label("sticker_emotion", "s3", "joy", "ann", key="k" * 201)


def race(n: int, call) -> tuple[list, list]:
    """``call(i)`` from ``n`` threads released at once: (results, errors)."""
    start, results, errors = threading.Barrier(n), [], []

    def run(i: int) -> None:
        start.wait()
        try:
            results.append(call(i))
        except Exception as error:  # noqa: BLE001 - the test reports any failure
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def test_a_new_annotators_concurrent_first_labels_and_racing_retries_lose_nothing(store_location):
    """The tester's finding: 16 concurrent first labels of a new name lost 5 of 80 (a conflict
    on the annotator row), and racing retries of one key lost 1 of 96."""
    store = LabelStore(store_location(), EKMAN)
    store.put_items(stickers(80))
    for round_ in range(5):
        name = f"new-{round_}"
        results, errors = race(16, lambda i, name=name: (
            store.add_annotator(name),
            store.label("sticker_emotion", f"s{16 * round_ + i}", "joy", name))[1])
        assert errors == [] and len(set(results)) == 16
    for round_ in range(12):
        results, errors = race(8, lambda i, round_=round_: store.label(
            "sticker_emotion", f"s{round_}", "fear", "retrier", key=f"retry-{round_}"))
        assert errors == [] and len(set(results)) == 1
    assert len(store.current_labels()) == 80 + 12


def test_a_like_right_after_a_swap_is_recorded(store):
    """The tester's finding: 👍 right after a swap lost the like (``Duplicate key "task:
    best_sticker, id: dialogue-…"``): the swap's pick and the like both added the item."""
    for n in range(10):
        turns = [f"I just failed exam {n}", "oh no, I am sorry"]
        results, errors = race(2, lambda i, turns=turns: record_feedback(store, Feedback(
            turns, "s1", ("picked", "like")[i], "session-1", shown=("s1", "s2"))))
        assert errors == [] and results == [1, 1]
    assert len(store.current_labels("best_sticker")) == 10  # one answer per dialogue and session
    assert len(store.events("best_sticker")) == 20


def test_a_key_reused_for_another_label_is_refused_with_a_message(store):
    store.label("sticker_emotion", "s1", "joy", "ann", key="k-1")
    for other in ({"item": "s2"}, {"annotator": "bob"}, {"label": "fear"}):
        call = {"item": "s1", "annotator": "ann", "label": "joy", **other}
        with pytest.raises(LabelError, match="idempotency key 'k-1' was used for another"):
            store.label("sticker_emotion", call["item"], call["label"], call["annotator"], key="k-1")
    with pytest.raises(LabelError, match="was used for another request"):
        store.undo("sticker_emotion", "ann", key="k-1")  # a label's key, not an undo's
    assert len(store.events()) == 1


def test_a_removed_packs_stickers_are_retired_from_serving_progress_and_labels(store):
    store.label("sticker_emotion", "s1", "joy", "ann")
    pack_a = {f"s{i}" for i in range(6) if i % 2}
    assert store.retire_stickers(keep={f"s{i}" for i in range(6)} - pack_a) == 3
    served = []
    while (item := store.next_item("sticker_emotion", "bob")) is not None:
        served.append(item.id)
        store.skip("sticker_emotion", item.id, "bob")
    assert sorted(served) == ["s0", "s2", "s4"]
    assert store.progress("sticker_emotion", "ann")["total"] == 3
    assert store.progress("sticker_emotion", "ann")["labelled"] == 0  # s1 is retired
    with pytest.raises(LabelError, match="no longer in the library"):
        store.label("sticker_emotion", "s3", "joy", "ann")
    assert [r["item"] for r in store.current_labels()] == ["s1"]  # its label stays on record
    store.put_items(stickers(6))  # the pack is added again: its items serve again
    assert store.progress("sticker_emotion", "ann") == {"labelled": 1, "skipped": 0, "total": 6}


def test_skips_are_counted_apart_from_labels(store):
    store.label("sticker_emotion", "s1", "joy", "ann")
    store.skip("sticker_emotion", "s2", "ann")
    store.skip("sticker_emotion", "s3", "ann")
    store.label("sticker_emotion", "s3", "fear", "ann")  # labelled after all
    assert store.progress("sticker_emotion", "ann") == {"labelled": 2, "skipped": 1, "total": 6}


def test_a_second_process_is_told_the_file_is_held(tmp_path):
    store = LabelStore(tmp_path / "labels.duckdb", EKMAN)
    code = ("from annotations.store import LabelStore, StoreLocked\n"
            f"try:\n    LabelStore({str(store.path)!r})\nexcept StoreLocked as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert "held by another process" in out.stdout and "--server" in out.stdout
    assert issubclass(StoreLocked, RuntimeError)


def test_snapshots_are_parquet_copies_named_by_content(store, tmp_path):
    store.label("sticker_emotion", "s1", "joy", "ann")
    first = store.snapshot(tmp_path / "snapshots")
    assert store.snapshot(tmp_path / "snapshots") == first  # nothing new: the same snapshot
    rows = duckdb.connect().execute(
        f"SELECT item, label FROM read_parquet('{first / 'current_labels.parquet'}')").fetchall()
    assert rows == [("s1", "joy")]
    store.label("sticker_emotion", "s2", "fear", "ann")
    assert store.snapshot(tmp_path / "snapshots") != first


def test_training_is_requested_after_every_n_labels(store):
    assert store.maybe_request_training("sticker_emotion", 3, "trigger") is None
    for item in ("s0", "s1", "s2"):
        store.label("sticker_emotion", item, "joy", "ann")
    request = store.maybe_request_training("sticker_emotion", 3, "trigger")
    assert request["status"] == "pending" and request["labels"] == 3
    assert store.maybe_request_training("sticker_emotion", 3, "trigger") is None  # counted anew


# ---------------------------------------------------------------- agreement, textbook examples

def rated(store_location, table: dict[str, list]) -> LabelStore:
    """A store where annotator → labels per item (None: not rated) come from ``table``."""
    labels = sorted({label for row in table.values() for label in row if label is not None})
    store = LabelStore(store_location("agreement"), tuple(labels))
    n_items = len(next(iter(table.values())))
    store.put_items([Item(f"u{i}", "utterance_emotion") for i in range(n_items)])
    for annotator, row in table.items():
        for i, label in enumerate(row):
            if label is not None:
                store.label("utterance_emotion", f"u{i}", label, annotator)
    return store


def test_fleiss_kappa_of_fleiss_1971_worked_example(store_location):
    """Wikipedia's worked example: 10 subjects, 14 raters, 5 categories → κ = 0.210."""
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    names = ["anger", "disgust", "fear", "joy", "sadness"]
    table = {f"rater{r}": [] for r in range(14)}
    for row in counts:
        labels = [name for name, n in zip(names, row) for _ in range(n)]
        for r, label in enumerate(labels):
            table[f"rater{r}"].append(label)
    result = agreement(rated(store_location, table), "utterance_emotion")
    assert result["fleiss_kappa"] == pytest.approx(0.210, abs=0.001)
    assert result["n_items"] == 10 and result["n_annotators"] == 14


def test_cohen_kappa_of_the_textbook_two_rater_example(store_location):
    """50 items: both yes 20, A yes B no 5, A no B yes 10, both no 15 → κ = 0.4."""
    a = ["joy"] * 25 + ["sadness"] * 25
    b = ["joy"] * 20 + ["sadness"] * 5 + ["joy"] * 10 + ["sadness"] * 15
    result = agreement(rated(store_location, {"a": a, "b": b}), "utterance_emotion")
    assert result["cohen_kappa"]["a|b"] == {"kappa": pytest.approx(0.4), "n_items": 50}
    assert result["annotators"]["a"]["agreement_with_majority"] == pytest.approx(35 / 50)


def test_krippendorff_alpha_of_krippendorffs_nominal_example(store_location):
    """Krippendorff (2011), 4 observers, 12 units, missing values: nominal α = 0.743."""
    data = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
            "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
            "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
            "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]}
    names = {1: "anger", 2: "disgust", 3: "fear", 4: "joy", 5: "sadness"}
    table = {k: [names.get(v) for v in row] for k, row in data.items()}
    result = agreement(rated(store_location, table), "utterance_emotion")
    assert result["krippendorff_alpha"] == pytest.approx(0.743, abs=0.001)


def test_agreement_leaves_unsure_out_and_compares_with_the_model(store):
    store.label("sticker_emotion", "s0", "joy", "ann", suggestion="joy")
    store.label("sticker_emotion", "s1", "unsure", "ann", suggestion="joy")
    store.label("sticker_emotion", "s2", "fear", "ann", suggestion="joy")
    result = agreement(store, "sticker_emotion")
    assert result["n_labels"] == 2
    assert result["annotators"]["ann"]["agreement_with_model"] == 0.5


# ---------------------------------------------------------------- export, import, feedback, users

@pytest.mark.parametrize("format", ["parquet", "jsonl", "csv"])
def test_export_then_import_into_an_empty_store_restores_the_current_labels(store, store_location,
                                                                            tmp_path, format):
    store.label("sticker_emotion", "s0", "joy", "ann")
    store.label("sticker_emotion", "s0", "anger", "bob")
    store.label("sticker_emotion", "s1", "fear", "ann")
    store.undo("sticker_emotion", "ann")  # s1's label is gone
    out = tmp_path / f"labels.{format}"
    assert export_labels(store, out) == 2
    fresh = LabelStore(store_location("fresh"), EKMAN)
    assert import_labels(fresh, out) == {"imported": 2, "new_items": 1}
    current = lambda s: sorted((r["item"], r["annotator"], r["label"])  # noqa: E731
                               for r in s.current_labels())
    assert current(fresh) == current(store)
    assert fresh.item("sticker_emotion", "s0").payload == {"label": "sticker 0"}


def test_the_parquet_export_loads_with_datasets_and_duckdb(store, tmp_path):
    store.label("sticker_emotion", "s0", "joy", "ann")
    out = tmp_path / "labels.parquet"
    export_labels(store, out)
    from datasets import load_dataset

    dataset = load_dataset("parquet", data_files=str(out), split="train")
    assert dataset[0]["label"] == "joy" and dataset[0]["annotator"] == "ann"
    assert duckdb.connect().execute(f"SELECT count(*) FROM '{out}'").fetchone()[0] == 1


def test_a_bad_import_changes_nothing(store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task": "sticker_emotion", "item": "s0", "annotator": "a",
                               "label": "joy"}) + "\n" +
                   json.dumps({"task": "sticker_emotion", "item": "s1", "annotator": "a",
                               "label": "ecstatic"}) + "\n")
    with pytest.raises(LabelError, match="row 2: unknown label 'ecstatic'"):
        import_labels(store, bad)
    (tmp_path / "broken.jsonl").write_text('{"task": ')
    with pytest.raises(LabelError, match="cannot be read"):
        import_labels(store, tmp_path / "broken.jsonl")
    assert store.events() == []


def test_chat_feedback_is_recorded_and_an_old_file_moves_in_once(store, tmp_path):
    record_feedback(store, Feedback(["hi", "hello!"], "s1", "like", "session-1", shown=("s1", "s2")))
    old = tmp_path / "feedback.jsonl"
    rows = [Feedback(["I failed", "oh no"], "s2", "picked", "session-2", shown=("s1", "s2")),
            Feedback(["I failed", "oh no"], "s1", "replaced", "session-2"),
            Feedback(["bye", "ciao"], "", "dislike", "session-3")]
    old.write_text("".join(json.dumps({**r.__dict__, "shown": list(r.shown)}) + "\n" for r in rows)
                   + '{"dialogue": ["torn')
    assert import_feedback_file(store, old) == 2  # replaced adds nothing a pick does not say
    assert not old.exists() and (tmp_path / "feedback.jsonl.imported").is_file()
    labels = sorted((r["annotator"], r["label"], r["source"]) for r in store.current_labels("best_sticker"))
    assert labels == [("session-1", "s1", "chat"), ("session-2", "s2", "import"),
                      ("session-3", "none_fits", "import")]
    picked = [r for r in store.current_labels("best_sticker") if r["annotator"] == "session-2"][0]
    assert json.loads(picked["shown"]) == ["s1", "s2"]
    assert import_feedback_file(store, old) == 0  # moved in once
    with pytest.raises(ValueError, match="unknown verdict"):
        Feedback(["hi"], "s1", "meh", "session-1")


def test_users_file_hashes_passwords_and_knows_roles(tmp_path):
    users = Users(tmp_path / "users.json")
    assert not users.exists
    users.add("ann", "annotator", "correct horse")
    users.add("root", "admin", "battery staple")
    assert "correct horse" not in users.path.read_text()
    assert users.verify("ann", "correct horse") and not users.verify("ann", "wrong password")
    assert not users.verify("nobody", "correct horse")
    assert users.roles() == {"ann": "annotator", "root": "admin"}
    with pytest.raises(ValueError, match="unknown role"):
        users.add("eve", "owner", "long enough")
    with pytest.raises(ValueError, match="at least 8"):
        users.add("eve", "annotator", "short")
