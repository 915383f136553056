"""Which labelling order makes the sticker reader better fastest: a simulated annotator in each
of the studio's orders, through the real store, trigger, job and gate.

The labelled file (``assets/labels/sticker_emotions.csv`` by default) is split by a hash of the
sticker id: one half is held out for measuring and never served, the other half is the pool the
studio serves (its other stickers are retired for the run) and the annotator answers from.
Every ``STEP`` labels the store records a fine-tuning request (``train_every``); the trainer
turns it into a job on a snapshot, the job fits a candidate in its own process, the gate
compares it with the live reader on the held-out labels and on the public check (the pool's
rows, so the gate never sees the measuring half) and serves it when it is not worse. After
each request is settled, the reader live at that moment reads the measuring half.

Prints one JSON object: ``default_order``; ``orders`` and ``macro_f1`` (order → {labels:
accuracy or macro-F1 in percent}; "0" is the bundled reader); ``promoted`` (order → versions
promoted); ``labels_to_reach_random_200`` (order → the fewest labels whose accuracy reaches
random order's at 200, null when never); ``measured`` and ``pool`` sizes; seconds.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from annotations.store import DEFAULT_ORDER, ORDERS, LabelStore
from engine import Engine, Settings
from engine.schemes import EKMAN7
from engine.metrics import scores
from engine.paths import STICKER_EMOTIONS
from engine.stickers.emotion_head import public_labels
from memeui.access import Identity
from memeui.studio import LABELS_FILE, Studio
from memeui.trainer import Trainer

STEP = 25  # labels between fine-tuning requests
POINTS = (25, 50, 100, 150, 200)
ANNOTATOR = Identity("simulated", "annotator")


def measuring_half(sticker_id: str) -> bool:
    """The fixed half of the labelled file kept out of serving, for measuring only."""
    return int(hashlib.sha256(f"bench-active:{sticker_id}".encode()).hexdigest(), 16) % 2 == 0


def run(settings: Settings | None = None, labels_file: Path = STICKER_EMOTIONS,
        points: tuple[int, ...] = POINTS, orders: tuple[str, ...] = ORDERS) -> dict:
    settings = settings or Settings.from_env()
    started = time.perf_counter()
    gold = public_labels(labels_file)
    measured = {k: v for k, v in gold.items() if measuring_half(k)}
    pool = {k: v for k, v in gold.items() if not measuring_half(k)}
    curves, f1s, promoted, gates = {}, {}, {}, {}
    for order in orders:
        curves[order], f1s[order], promoted[order], gates[order] = simulate(
            settings, order, pool, measured, max(points))
    keep = ("0", *(str(n) for n in points))
    curves = {o: {n: a for n, a in c.items() if n in keep} for o, c in curves.items()}
    f1s = {o: {n: f for n, f in c.items() if n in keep} for o, c in f1s.items()}
    return {"default_order": DEFAULT_ORDER, "orders": curves, "macro_f1": f1s,
            "promoted": promoted, "gate": gates,
            "labels_to_reach_random_200": labels_to_reach(curves, "random", str(max(points))),
            "measured": len(measured), "pool": len(pool), "step": STEP,
            "seconds": round(time.perf_counter() - started, 1)}


def labels_to_reach(curves: dict, reference: str, point: str) -> dict:
    """Order → the fewest labels whose held-out accuracy reaches ``reference``'s at ``point``."""
    target = curves.get(reference, {}).get(point)
    if target is None:
        return {order: None for order in curves}
    return {order: next((int(n) for n, accuracy in sorted(curve.items(), key=lambda p: int(p[0]))
                         if int(n) > 0 and accuracy >= target), None)
            for order, curve in curves.items()}


def simulate(settings: Settings, order: str, pool: dict[str, str], measured: dict[str, str],
             labels: int) -> tuple[dict, dict, int, dict]:
    """One order from a fresh data dir: accuracy and macro-F1 by labels, promotions, and the
    gate's word on each request (labels → "promoted …" or "rejected …: why")."""
    from bench.labels import fresh_data_dir

    data_dir = fresh_data_dir(settings.data_dir)
    check = data_dir / "public-check.csv"
    with check.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "emotion"])
        writer.writerows(pool.items())
    engine = Engine(replace(settings, data_dir=data_dir, train_every=STEP, sticker_check=check,
                            reply_backend="retrieval"))
    studio = Studio(engine, LabelStore(data_dir / LABELS_FILE, engine.scheme.labels))
    trainer = Trainer(studio)
    engine.jobs.start()
    accuracy, macro_f1, gate = {}, {}, {}
    try:
        accuracy["0"], macro_f1["0"] = reader_scores(engine, measured)
        done = 0
        while done < labels:
            item = next_in_pool(studio, order, pool)
            if item is None:
                break
            answer = studio.label("sticker_emotion", item["id"], pool[item["id"]], ANNOTATOR)
            done += 1
            if answer["training_request"]:
                gate[str(done)] = settle(trainer)
                accuracy[str(done)], macro_f1[str(done)] = reader_scores(engine, measured)
        promotions = sum(v.status in ("live", "retired") for v in
                         engine.registry.versions("sticker-emotion"))
    finally:
        engine.jobs.stop()
        studio.store.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return accuracy, macro_f1, promotions, gate


def next_in_pool(studio: Studio, order: str, pool: dict[str, str]) -> dict | None:
    """The studio's next item in ``order``, the library's stickers outside the pool retired
    (again after any library change: a promotion refreshes the items)."""
    studio.ensure_items()
    studio.store.retire_stickers(set(pool))
    return studio.next_item("sticker_emotion", ANNOTATOR.name, order)


def settle(trainer: Trainer, timeout: float = 600) -> str:
    """The pending request as a job, the job to its end and adoption, its outcome on record;
    returns the outcome (the gate's note, or why the job failed)."""
    job_ids = trainer.poll()
    deadline = time.monotonic() + timeout
    while trainer.studio.store.training_requests(status="running"):
        if time.monotonic() > deadline:
            raise TimeoutError("a fine-tuning request did not settle")
        time.sleep(0.2)
        trainer.poll()
    jobs = {job.id: job for job in trainer.engine.jobs.jobs()}
    return "; ".join(jobs[i].outcome or jobs[i].message for i in job_ids)


def reader_scores(engine: Engine, measured: dict[str, str]) -> tuple[float, float]:
    """Accuracy and macro-F1 (percent) of the reader live now on the measuring half."""
    library = engine.live.get().library
    ids = [k for k in measured if k in library.by_id]
    predicted = engine.read_sticker_emotions([library.by_id[k] for k in ids]).argmax(axis=1)
    result = scores(predicted, np.array([EKMAN7.index(measured[k]) for k in ids]))
    return result["accuracy"], result["macro_f1"]


COLOURS = {"mixed": (214, 39, 40), "uncertain": (31, 119, 180), "library": (127, 127, 127),
           "random": (44, 160, 44)}


def draw_curves(result: dict, path: Path, size: tuple[int, int] = (720, 420)) -> Path:
    """The held-out accuracy curves of ``result`` as a PNG (Pillow only: the README's figure)."""
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 60, 150, 20, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    points = [(int(n), a) for curve in result["orders"].values() for n, a in curve.items()]
    most = max(n for n, _ in points) or 1
    low = min(a for _, a in points) - 1
    high = max(a for _, a in points) + 1

    def at(n: int, accuracy: float) -> tuple[float, float]:
        return (left + (width - left - right) * n / most,
                height - bottom - (height - top - bottom) * (accuracy - low) / (high - low))

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for n in sorted({n for n, _ in points}):
        x, _ = at(n, low)
        draw.text((x - 8, height - bottom + 6), str(n), fill="black")
    for tick in np.linspace(low, high, 6):
        _, y = at(0, tick)
        draw.text((8, y - 6), f"{tick:.1f}", fill="black")
        draw.line([left - 4, y, left, y], fill="black")
    draw.text((left + 120, height - 22), "labels (held-out accuracy %, measuring half)",
              fill="black")
    for row, (order, curve) in enumerate(result["orders"].items()):
        colour = COLOURS.get(order, (0, 0, 0))
        line = [at(int(n), a) for n, a in sorted(curve.items(), key=lambda p: int(p[0]))]
        draw.line(line, fill=colour, width=3)
        for x, y in line:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        label = order + (" (default)" if order == result.get("default_order") else "")
        draw.line([width - right + 12, top + 12 + 20 * row, width - right + 32, top + 12 + 20 * row],
                  fill=colour, width=3)
        draw.text((width - right + 38, top + 6 + 20 * row), label, fill="black")
    image.save(path)
    return Path(path)
