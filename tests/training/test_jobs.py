"""Fine-tuning: the job runner's states, the registry and its gate, the sticker-emotion recipe,
and a promoted model swapped in under concurrent requests."""

from __future__ import annotations

import csv
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from annotations.feedback import Feedback
from annotations.store import Item, LabelStore
from bench.finetune import labelling_order
from bench.labels import fresh_data_dir
from engine import Engine, Settings
from engine.training import jobs
from engine.dialogue import Dialogue, Turn
from engine.training.registry import Registry, gate
from engine.paths import STICKER_EMOTIONS
from engine.stickers.emotion_head import EKMAN7, StickerEmotionHead, fit, fit_head, public_labels
from memeui.access import Identity
from memeui.studio import Studio
from memeui.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setitem(jobs.RECIPES, "quick", "tests.recipes:quick")
    monkeypatch.setitem(jobs.RECIPES, "slow", "tests.recipes:slow")
    monkeypatch.setitem(jobs.RECIPES, "broken", "tests.recipes:broken")
    monkeypatch.setitem(jobs.RECIPES, "missing", "tests.recipes:missing_file")
    monkeypatch.chdir(ROOT)  # the worker imports tests.recipes from here
    adopted = []
    runner = jobs.JobRunner(tmp_path / "jobs", on_finished=lambda job, out: adopted.append(
        (job.id, (out / "model.txt").read_text())) or "adopted")
    runner.adopted = adopted
    yield runner
    runner.stop()


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_failed_job_shows_annotators_one_line_without_paths_and_admins_all_of_it(runner,
                                                                                   tmp_path):
    from memeui.jobs import for_annotators

    job = runner.wait(runner.submit("missing", {"features": str(tmp_path / "gone.npz")}, "t").id)
    assert job.state == "failed" and str(tmp_path) in job.error and "Traceback" in job.error
    shown = for_annotators(job)
    assert shown.error == shown.message == \
        "FileNotFoundError: [Errno 2] No such file or directory: 'gone.npz'"
    assert shown.args == {} and "/" not in json.dumps(shown.to_dict())
    assert for_annotators(replace(job, message="step 30/300")).message == "step 30/300"


def test_a_job_runs_in_its_own_process_reports_progress_and_is_adopted(runner):
    job = runner.wait(runner.submit("quick", {"text": "v1"}, "test").id)
    assert (job.state, job.progress, job.outcome) == ("done", 1.0, "adopted")
    assert job.metrics == {"candidate": {"holdout": {"accuracy": 50.0}}}
    assert [point["loss"] for point in job.curve] == pytest.approx([1.0, 0.5, 1 / 3])
    assert runner.adopted == [(job.id, "v1")]
    assert "step 3" in runner.log_text(job.id)
    saved = json.loads((runner.root / job.id / "job.json").read_text())
    assert saved["state"] == "done"  # the record is on disk


def test_a_failing_recipe_fails_the_job_with_its_reason(runner):
    job = runner.wait(runner.submit("broken", {}, "test").id)
    assert job.state == "failed" and job.message.startswith("ValueError: no labels of two")
    assert runner.adopted == []
    with pytest.raises(ValueError, match="unknown recipe"):
        runner.submit("nope", {}, "test")


def test_cancel_stops_a_running_job_within_seconds_and_a_queued_one_at_once(runner):
    first = runner.submit("slow", {"seconds": 60}, "test")
    second = runner.submit("slow", {"seconds": 60}, "test")
    wait_for(lambda: runner.get(first.id).state == "running")
    time.sleep(0.5)
    assert runner.get(second.id).state == "queued"  # one training job at a time
    started = time.monotonic()
    runner.cancel(first.id)
    wait_for(lambda: runner.get(first.id).state == "cancelled", timeout=10)
    assert time.monotonic() - started < 5
    wait_for(lambda: runner.get(second.id).state == "running")
    runner.cancel(second.id)
    wait_for(lambda: runner.get(second.id).state == "cancelled", timeout=10)
    third = runner.submit("slow", {"seconds": 60}, "test")
    blocker = runner.submit("slow", {"seconds": 60}, "test")
    wait_for(lambda: runner.get(third.id).state == "running")
    assert runner.cancel(blocker.id).state == "cancelled"
    runner.cancel(third.id)
    with pytest.raises(ValueError, match="cancelled already"):
        runner.cancel(blocker.id)


def test_a_job_running_when_the_app_stopped_is_interrupted_and_can_run_again(runner, tmp_path):
    job = runner.submit("slow", {"seconds": 1}, "test")
    wait_for(lambda: runner.get(job.id).state == "running")
    runner.stop()  # the app goes away; its worker with it
    reader = jobs.JobRunner(tmp_path / "jobs")
    assert reader.get(job.id).state == "running"  # a process that only reads changes nothing
    again = jobs.JobRunner(tmp_path / "jobs", on_finished=lambda job, out: "adopted")
    again.start()
    assert again.get(job.id).state == "interrupted"
    assert again.requeue(job.id).state in ("queued", "running")  # the runner takes it at once
    assert again.wait(job.id).state == "done"
    with pytest.raises(ValueError, match="only interrupted, failed or cancelled"):
        again.requeue(job.id)
    again.stop()


def test_the_registry_keeps_versions_promotes_and_rolls_back(tmp_path):
    registry = Registry(tmp_path / "registry")
    files = tmp_path / "files"
    files.mkdir()
    (files / "head.npz").write_bytes(b"weights")
    first = registry.add("sticker-emotion", files, parent=None, snapshot="s1", metrics={},
                         trigger="test")
    second = registry.add("sticker-emotion", files, parent=first.id, snapshot="s2", metrics={},
                          trigger="admin")
    assert registry.live("sticker-emotion") is None
    registry.promote("sticker-emotion", first.id)
    registry.promote("sticker-emotion", second.id)
    assert registry.live("sticker-emotion").id == second.id
    assert registry.get("sticker-emotion", first.id).status == "retired"
    assert registry.rollback("sticker-emotion").id == first.id
    assert registry.rollback("sticker-emotion") is None  # back to the bundled model
    with pytest.raises(ValueError, match="no version live"):
        registry.rollback("sticker-emotion")
    with pytest.raises(ValueError, match="unknown role"):
        registry.versions("mood-ring")


def test_the_gate_refuses_a_candidate_worse_on_either_check():
    live = {"holdout": {"accuracy": 80.0}, "public": {"macro_f1": 60.0}}
    assert gate({"holdout": {"accuracy": 80.0}, "public": {"macro_f1": 61.0}}, live)[0]
    assert not gate({"holdout": {"accuracy": 79.0}, "public": {"macro_f1": 70.0}}, live)[0]
    assert not gate({"holdout": {"accuracy": 90.0}, "public": {"macro_f1": 59.9}}, live)[0]
    ok, note = gate({"holdout": {"accuracy": None}, "public": {"macro_f1": 70.0}}, live)
    assert not ok and "too few labels" in note


def fixture_library(rng, families: int = 7, per_family: int = 40):
    """Sticker families named alike (close text vectors), one emotion each; the bundled
    reading is right about some families and reads others (pouting faces, say) as neutral."""
    centres = rng.normal(size=(families, 16))
    truth = np.repeat(np.arange(families) % len(EKMAN7), per_family)
    vectors = centres[np.repeat(np.arange(families), per_family)] + 0.15 * rng.normal(
        size=(len(truth), 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    misread = np.isin(truth, [EKMAN7.index(e) for e in ("anger", "disgust", "surprise")])
    read_as = np.where(misread, EKMAN7.index("neutral"), truth)
    readings = rng.dirichlet(np.ones(len(EKMAN7)), size=len(truth)) * 0.5
    readings[np.arange(len(truth)), read_as] += 0.5
    return [f"s{i}" for i in range(len(truth))], vectors.astype(np.float32), \
        readings.astype(np.float32), truth, misread


def recipe_on(tmp_path, ids, vectors, readings, labels: dict[str, str]) -> tuple[dict, np.ndarray]:
    """The recipe on a snapshot of ``labels``; its metrics and its reading of every sticker."""
    features = tmp_path / "features.npz"
    np.savez(features, ids=np.array(ids), vectors=vectors, readings=readings)
    store = LabelStore(tmp_path / "labels.duckdb", EKMAN7)
    store.put_items([Item(i, "sticker_emotion") for i in ids])
    for sticker, label in labels.items():
        store.label("sticker_emotion", sticker, label, "ann")
    snapshot = store.snapshot(tmp_path / "snapshots")
    store.close()
    reports = []
    metrics = fit({"snapshot": str(snapshot), "features": str(features), "base": ""},
                  tmp_path / "out", lambda *a, **kw: reports.append(kw))
    assert len([r for r in reports if "metric" in r]) == 4  # each shrinkage tried, plotted
    return metrics, StickerEmotionHead.load(tmp_path / "out").predict(vectors, readings)


def test_labels_in_the_uncertain_order_improve_the_stickers_nobody_labelled(tmp_path):
    """A few labels per misread family correct the whole family; the families the reading got
    right stay right; and the gate's measurements say so."""
    ids, vectors, readings, truth, misread = fixture_library(np.random.default_rng(0))
    order = np.argsort(readings.max(axis=1))[:50]  # the studio's uncertain-first: 50 of 280
    metrics, predicted = recipe_on(tmp_path, ids, vectors, readings,
                                   {ids[i]: EKMAN7[truth[i]] for i in order})
    unlabelled = np.setdiff1d(np.arange(len(ids)), order)
    before = readings.argmax(axis=1)[unlabelled] == truth[unlabelled]
    after = predicted.argmax(axis=1)[unlabelled] == truth[unlabelled]
    assert after.mean() > before.mean() + 0.3 and after.mean() > 0.95
    assert after[~misread[unlabelled]].all()  # nothing that was right turned wrong
    assert metrics["candidate"]["holdout"]["accuracy"] > metrics["live"]["holdout"]["accuracy"]
    assert metrics["shrinkage"] in (0.25, 0.5, 1.0, 2.0) and metrics["train"] + metrics["holdout"] == 50


def test_a_lone_label_moves_only_its_family_a_little_and_more_labels_move_it_all():
    ids, vectors, readings, truth, misread = fixture_library(np.random.default_rng(1))
    anger = EKMAN7.index("anger")
    family, other = np.flatnonzero(truth == anger), np.flatnonzero(truth != anger)[0]
    others = np.flatnonzero(~np.isin(truth, [anger, truth[other]]))  # families nobody labelled

    def read_with(rows: np.ndarray) -> np.ndarray:
        head, _ = fit_head(vectors[rows], readings[rows], truth[rows])
        return head.predict(vectors, readings)

    lone = read_with(np.array([family[0], other]))
    assert np.array_equal(lone[others].argmax(1), readings[others].argmax(1))
    assert (lone[family[1:], anger] > readings[family[1:], anger]).all()  # nudged toward anger
    more = read_with(np.concatenate([family[:12], [other]]))
    rest = family[12:]
    assert (more[rest, anger] > lone[rest, anger]).all()
    assert (more[rest].argmax(1) == anger).all()  # twelve labels convince the whole family


# ---------------------------------------------------------------- the loop on the real engine

@pytest.fixture(scope="module")
def trained_engine(data_dir, warm_engine, tmp_path_factory):
    """An engine of its own (its registry, jobs and store) over the session's index files."""
    folder = fresh_data_dir(data_dir, tmp_path_factory.mktemp("finetune"))
    own = Engine(Settings.from_env({}, data_dir=folder))
    studio = Studio(own, LabelStore(folder / "labels.duckdb", own.scheme.labels))
    studio.ensure_items()
    yield own, studio
    own.jobs.stop()
    studio.store.close()


def test_a_candidate_trained_on_wrong_labels_is_not_promoted(trained_engine, tmp_path):
    engine, studio = trained_engine
    before = engine.sticker_readings()
    wrong = {k: EKMAN7[(EKMAN7.index(v) + 3) % len(EKMAN7)] for k, v in public_labels().items()}
    store = LabelStore(tmp_path / "wrong.duckdb", EKMAN7)
    store.put_items([Item(k, "sticker_emotion") for k in wrong])
    for sticker, label in list(wrong.items())[:400]:
        store.label("sticker_emotion", sticker, label, "saboteur")
    job = engine.jobs.wait(engine.train("sticker-emotion", store.snapshot(tmp_path / "s"),
                                        "test").id, timeout=300)
    assert job.state == "done" and job.outcome.startswith("rejected"), job.outcome
    assert engine.registry.live("sticker-emotion") is None and engine.sticker_reader == ""
    assert engine.sticker_readings() == before  # nothing changed for anyone
    assert engine.registry.versions("sticker-emotion")[-1].status == "rejected"


def test_labels_train_a_better_model_that_goes_live_under_concurrent_searches(trained_engine):
    engine, studio = trained_engine
    gold = public_labels()
    studio.train_every = 0  # only the request below
    for sticker in labelling_order(gold)[:500]:  # as `memeui bench finetune` labels them
        studio.label("sticker_emotion", sticker, gold[sticker], Identity("ann", "annotator"))
    studio.store.request_training("sticker_emotion", "ann", "test")
    query = "I am so angry right now"
    old = [(r.id, r.emotion) for r in engine.search(query, 8)]
    seen, errors, stop = [], [], threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                seen.append(tuple((r.id, r.emotion) for r in engine.search(query, 8)))
            except Exception as error:  # noqa: BLE001 - the test reports any failure
                errors.append(error)

    searchers = [threading.Thread(target=search) for _ in range(3)]
    for thread in searchers:
        thread.start()
    trainer = Trainer(studio)
    job_id = trainer.poll()[0]
    job = engine.jobs.wait(job_id, timeout=300)
    stop.set()
    for thread in searchers:
        thread.join()
    assert job.outcome.startswith("promoted"), job.outcome
    new = [(r.id, r.emotion) for r in engine.search(query, 8)]
    assert errors == [] and len(seen) > 0
    assert set(seen) <= {tuple(old), tuple(new)}  # each request saw one version, whole
    live = engine.registry.live("sticker-emotion")
    assert live.trigger == "ann" and engine.sticker_reader == live.id
    assert live.metrics["candidate"]["public"]["n"] > 300
    trainer.poll()  # the request records the end, people's labels go live too
    assert studio.store.training_requests()[-1]["status"] == "done"
    labelled = {r["id"]: r for r in engine.sticker_readings()}
    one = labelling_order(gold)[0]
    assert (labelled[one]["emotion"], labelled[one]["emotion_source"]) == (gold[one], "people")
    assert studio.next_item("sticker_emotion", "bob")["model_version"] == live.id

    engine.rollback("sticker-emotion")
    assert engine.sticker_reader == "" and engine.registry.live("sticker-emotion") is None


# ---------------------------------------------------------------- the other two recipes

PHRASES = {"joy": ["I won the prize", "best day ever", "we are getting married", "I got the job"],
           "sadness": ["my cat died", "I failed again", "she left me", "I feel so alone"],
           "anger": ["you broke my phone", "stop lying to me", "this is outrageous",
                     "I am furious with you"]}


def labelled_dialogues_fixture(studio, relabel: dict[str, str] | None = None) -> list[str]:
    """Short dialogues whose second turn people labelled (``relabel`` swaps some labels)."""
    dialogues, labels = [], []
    for emotion, texts in PHRASES.items():
        for text in texts:
            for ending in ("really", "today", "and that is it", "honestly"):
                dialogues.append(Dialogue((Turn("A", "hey what's up"), Turn("B", f"{text} {ending}"))))
                labels.append((relabel or {}).get(emotion, emotion))
    studio.add_dialogues(dialogues, "fixture")
    for number, label in enumerate(labels):
        studio.label("utterance_emotion", f"fixture:{number}/1", label, Identity("ann", "annotator"))
    return labels


def test_utterance_labels_fine_tune_the_prerecognizer_that_then_reads_the_chat(trained_engine):
    engine, studio = trained_engine
    studio.train_every = 0
    labelled_dialogues_fixture(studio)
    before = engine.emotion.get().fingerprint
    turn = Dialogue((Turn("A", "hey what's up"), Turn("B", "we are getting married today")))
    studio.store.request_training("utterance_emotion", "ann", "test")
    trainer = Trainer(studio)
    job = engine.jobs.wait(trainer.poll()[0], timeout=600)
    assert job.recipe == "prerecognizer" and job.state == "done", job.error
    metrics = job.metrics
    assert metrics["train"] + metrics["holdout"] == 48 and metrics["holdout"] > 0
    assert metrics["candidate"]["public"]["n"] == 70  # the bundled utterance check
    assert metrics["candidate"]["holdout"]["accuracy"] > metrics["live"]["holdout"]["accuracy"]
    assert job.outcome.startswith("promoted"), job.outcome
    live = engine.registry.live("prerecognizer")
    assert engine.emotion.get().fingerprint != before  # the chat reads with the new model
    joy = engine.read_emotion(turn).turns[-1].emotion["joy"]
    assert engine.live.get().index.key != "" and engine.search("we are getting married", 3)
    engine.rollback("prerecognizer")
    assert engine.registry.live("prerecognizer") is None
    assert engine.emotion.get().fingerprint == before
    assert engine.read_emotion(turn).turns[-1].emotion["joy"] != joy
    assert live.status == "live" and engine.registry.get("prerecognizer", live.id).status == "retired"


def test_best_sticker_picks_train_a_selector_with_the_passed_over_stickers(trained_engine):
    engine, studio = trained_engine
    live = engine.live.get()
    threshold_before = engine.sticker_threshold
    coffee = next(s.id for s in live.library.stickers if s.emoji.startswith("☕"))
    greetings = ["good morning", "morning all", "rise and shine", "morning team",
                 "hello early birds", "good morning everyone", "top of the morning",
                 "morning friends", "gm", "good morning sunshine", "morning how did you sleep",
                 "early start today", "wakey wakey", "morning folks", "good morning world",
                 "morning y'all"]
    for greeting in greetings:  # as the chat records a pick among the stickers it showed
        shown = tuple(r.id for r in engine.search(greeting, 10))
        studio.record_feedback(Feedback([f"user: {greeting}"], coffee, "picked", "ann",
                                        shown=shown))
    for closing in ("ok", "see you", "bye", "thanks", "sure"):
        studio.record_feedback(Feedback([f"user: {closing}"], "", "picked", "ann"))  # none
    assert engine.search("good morning my friend", 1)[0].id != coffee
    snapshot = studio.store.snapshot(engine.settings.data_dir / "snapshots")
    job = engine.jobs.wait(engine.train("selector", snapshot, "test").id, timeout=600)
    assert job.state == "done", job.error
    metrics = job.metrics
    assert metrics["candidate"]["holdout"]["accuracy"] > metrics["live"]["holdout"]["accuracy"]
    checks = len((ROOT / "assets/labels/sticker_choices.csv").read_text("utf-8").splitlines()) - 1
    assert metrics["candidate"]["public"]["n"] == checks and metrics["threshold"] is not None
    version = engine.registry.versions("selector")[-1]
    if job.outcome.startswith("rejected"):  # the public check saw it send fewer stickers
        assert "public" in version.note
        engine.promote("selector", version.id, "by hand")
    assert engine.search("good morning my friend", 1)[0].id == coffee
    assert engine.sticker_threshold == pytest.approx(metrics["threshold"])
    engine.rollback("selector")
    assert engine.search("good morning my friend", 1)[0].id != coffee
    assert engine.sticker_threshold == threshold_before


@pytest.mark.slow
def test_bench_active_runs_the_simulated_annotator_loop_at_tiny_size(data_dir, engine, tmp_path):
    """`memeui bench active` at tiny size: two orders, one request each, through the real
    store, trigger, job and gate; every point measured, the JSON shaped as the README says."""
    from bench.active import run

    engine.live.get()  # the session's index, which the bench's fresh data dirs copy
    rows = list(csv.DictReader(STICKER_EMOTIONS.open(encoding="utf-8", newline="")))
    faces = [r for r in rows if r["basis"] == "hand"]
    labels = tmp_path / "labels.csv"
    with labels.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["id", "emotion"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(faces + [r for r in rows if r["basis"] != "hand"][:60])
    result = run(Settings.from_env({}, data_dir=data_dir), labels, points=(25,),
                 orders=("mixed", "random"))
    assert result["default_order"] == "uncertain" and set(result["orders"]) == {"mixed", "random"}
    for order in ("mixed", "random"):
        assert set(result["orders"][order]) == {"0", "25"}
        assert set(result["macro_f1"][order]) == {"0", "25"}
        assert result["orders"][order]["0"] == result["orders"]["random"]["0"]  # bundled
        assert 0 <= result["promoted"][order] <= 1 and set(result["gate"][order]) == {"25"}
        assert all(note.startswith(("promoted", "rejected", "ValueError"))
                   for note in result["gate"][order].values()), result["gate"]
    assert set(result["labels_to_reach_random_200"]) == {"mixed", "random"}
    assert result["measured"] + result["pool"] == len(faces) + 60
