"""Ranking that trusts people: a sticker's emotion fit never falls when a person confirms what
the model read, and a people label counts as at least as sure as any model reading."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from engine.schemes import EKMAN7
from engine.stickers.selector import emotion_fit
from engine.paths import STICKER_CHOICES
from engine.stickers.emotion_head import public_labels


def test_certainty_in_the_main_emotion_never_lowers_the_fit():
    rng = np.random.default_rng(0)
    moods = rng.dirichlet(np.full(7, 0.7), size=300).astype(np.float32)
    readings = rng.dirichlet(np.full(7, 0.7), size=300).astype(np.float32)
    confirmed = np.eye(7, dtype=np.float32)[readings.argmax(axis=1)]
    sharper = 0.5 * readings + 0.5 * confirmed  # half the way to sure, same main emotion
    fit, fit_sharper, fit_confirmed = (emotion_fit(moods, s) for s in (readings, sharper, confirmed))
    assert np.all(fit_confirmed >= fit_sharper - 1e-6) and np.all(fit_sharper >= fit - 1e-6)
    assert fit.min() >= 0 and fit_confirmed.max() <= 1 + 1e-6


def test_a_one_hot_label_fits_a_flat_mood_as_well_as_a_flat_reading():
    """The tester's case: a people label (one-hot) scored below the model's flat reading of the
    same sticker under the cosine of two distributions."""
    joy = EKMAN7.index("joy")
    flat_mood = np.full((1, 7), 0.1, np.float32)
    flat_mood[0, joy] = 0.4
    flat_reading = np.full((1, 7), 0.12, np.float32)
    flat_reading[0, joy] = 0.28
    label = np.eye(7, dtype=np.float32)[[joy]]
    assert emotion_fit(flat_mood, label)[0, 0] >= emotion_fit(flat_mood, flat_reading)[0, 0]


def test_emotion_fit_refuses_other_schemes():
    with pytest.raises(ValueError, match="Ekman-7"):
        emotion_fit(np.ones((1, 3)), np.ones((2, 3)))


def regression_messages() -> list[str]:
    with STICKER_CHOICES.open(encoding="utf-8", newline="") as file:
        return [row["message"] for row in csv.DictReader(file)]


def scores_of(engine, message: str, k: int = 64) -> dict[str, float]:
    return {r.id: r.score for r in engine.search(message, k=k)}


@pytest.fixture
def corrections(engine):
    """Apply people's sticker labels for one test, then put back what was live."""
    before = {key: dict(value) for key, value in engine.sticker_overrides.items()}
    yield lambda labels: engine.apply_sticker_corrections(
        {**before, **{sticker: {**before.get(sticker, {}), "emotion": emotion}
                      for sticker, emotion in labels.items()}})
    engine.apply_sticker_corrections(before)


def test_confirming_the_models_emotion_never_lowers_a_stickers_rank_for_any_regression_message(
        engine, corrections):
    """Each regression-set message's top 10 stickers get a person's label that says what the
    model read. Their scores do not fall (the others do not move: a sticker labelled alone keeps
    or improves its rank), and the tester's case, grinning face first for "I am so happy
    today" (sixth after the label, before), stays among the first three: the faces around it
    are confirmed joy too, and once all are sure of it their words and usage order them (with
    the kaomoji lexicon, "smiling face with smiling eyes" gains most: 0.978 to 1)."""
    messages = regression_messages()
    before = {message: scores_of(engine, message) for message in messages}
    tops = {message: engine.search(message, k=10) for message in messages}
    happy = engine.search("I am so happy today", k=1)[0]
    confirmed = {r.id: r.emotion for results in tops.values() for r in results}
    confirmed[happy.id] = happy.emotion
    corrections(confirmed)
    for message in messages:
        after = scores_of(engine, message)
        for result in tops[message]:
            assert after[result.id] >= before[message][result.id] - 1e-5, (message, result.label)
    after = engine.search("I am so happy today", k=3)
    assert happy.id in [r.id for r in after] and after[0].emotion == "joy"


def test_people_labelled_anger_stickers_rank_first_for_an_angry_message(engine, corrections):
    message = "I am so angry and pouting"
    anger = {sticker for sticker, emotion in public_labels().items() if emotion == "anger"}
    corrections({sticker: "anger" for sticker in anger})
    results = engine.search(message, k=10)
    assert results[0].id in anger and sum(r.id in anger for r in results[:5]) >= 3, \
        [(r.label, r.parts) for r in results]
    labelled = [r.parts["emotion"] for r in results if r.id in anger]
    neutral = [r.parts["emotion"] for r in engine.search(message, k=64) if r.emotion == "neutral"]
    assert min(labelled) > max(neutral, default=0.0)  # 0.489 against 0.961 before
