"""Emotion forecasting speed on real dialogues (chitchat-dataset): forecast the 21st turn from
the first 20.

- ``forecast_p50_ms``: warm, every turn already read (the chat and the Emotion tab embed each
  turn once, when it is said, and the cache keeps it): the pre-recognizer itself;
- ``forecast_new_turn_p50_ms``: the newest turn arrives now and is embedded first (one MiniLM
  call, most of the time);
- ``forecast_cold_p50_ms``: all 20 turns embedded from scratch.
``fit_seconds`` are those the ``--fit`` runs recorded.
"""

from __future__ import annotations

import json
import platform
import time

import numpy as np

from engine.dialogue import Dialogue, Turn
from engine.paths import MODELS_DIR

TURNS = 20


def dialogues(count: int) -> list[Dialogue]:
    from engine.corpora import read_chitchat

    long_enough = [d for d in read_chitchat(limit=count * 4) if len(d.turns) > TURNS]
    return [Dialogue(d.turns[:TURNS + 1], d.id) for d in long_enough[:count]]  # + who is next


def run(engine, forecasts: int = 200) -> dict:
    emotion = engine.emotion.get()
    cases = dialogues(max(forecasts // 4, 10))
    for dialogue in cases[:3]:  # warm lazy paths
        emotion.forecast(Dialogue(dialogue.turns[:-1]), dialogue.turns[-1].speaker)
    warm, new_turn, cold = [], [], []
    for i in range(forecasts):
        dialogue = cases[i % len(cases)]
        *earlier, newest = dialogue.turns[:-1]
        emotion.encoder.encode_turns([t.content() for t in earlier])  # read when they were said
        context = Dialogue((*earlier, Turn(newest.speaker, f"{newest.text} ({i})")))  # never seen
        started = time.perf_counter()
        emotion.forecast(context, dialogue.turns[-1].speaker)
        new_turn.append(time.perf_counter() - started)
        started = time.perf_counter()
        emotion.forecast(context, dialogue.turns[-1].speaker)  # now every turn has been read
        warm.append(time.perf_counter() - started)
        fresh = Dialogue(tuple(Turn(t.speaker, f"{t.text} ({i})") for t in context.turns))
        started = time.perf_counter()
        emotion.forecast(fresh, dialogue.turns[-1].speaker)
        cold.append(time.perf_counter() - started)
    ms = lambda values, q: round(float(np.percentile(np.array(values) * 1000, q)), 2)  # noqa: E731
    return {"benchmark": "emotion", "forecast_p50_ms": ms(warm, 50), "forecast_p95_ms": ms(warm, 95),
            "forecast_new_turn_p50_ms": ms(new_turn, 50),
            "forecast_new_turn_p95_ms": ms(new_turn, 95),
            "forecast_cold_p50_ms": ms(cold, 50), "turns": TURNS, "forecasts": forecasts,
            "fit_seconds": recorded_fits(engine.settings.data_dir / MODELS_DIR),
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus"}


def recorded_fits(models) -> dict:
    """fit_seconds of each fitted model under data/models (written by `memeui eval … --fit`)."""
    found = {}
    for fit in sorted(models.glob("*/fit.json")) if models.is_dir() else []:
        found[fit.parent.name] = json.loads(fit.read_text()).get("fit_seconds")
    return found
