"""Recipes for the job runner's tests: quick, slow, broken, missing_file (run by `python -m
engine.training.jobs`)."""

import json
import time
from pathlib import Path


def quick(args: dict, out: Path, progress) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.txt").write_text(args.get("text", "trained"))
    for step in range(3):
        progress((step + 1) / 3, f"step {step + 1}", loss=1.0 / (step + 1))
    return {"candidate": {"holdout": {"accuracy": args.get("score", 50.0)}}}


def slow(args: dict, out: Path, progress) -> dict:
    deadline = time.monotonic() + args.get("seconds", 60)
    while time.monotonic() < deadline:
        progress(0.5, "working")
        time.sleep(0.1)
    return quick(args, out, progress)


def broken(args: dict, out: Path, progress) -> dict:
    progress(0.1, "about to fail")
    raise ValueError("no labels of two emotions: label more first")


def missing_file(args: dict, out: Path, progress) -> dict:
    progress(0.1, "reading")
    return json.loads(Path(args["features"]).read_text())  # a server path in the error
