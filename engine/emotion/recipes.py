"""Training recipes for the emotion models: plain functions from data to a saved model folder.

- ``train_default``: the bundled pre-recognizer, from package data only: ``chitchat-dataset``
  conversations, TCMP's contrastive pre-training, then nade's reading of each message as a weak
  label (``memeui train emotion`` reproduces ``assets/models/prerecognizer``).
- ``fit_prerecognizer``: from the bundled weights, on dialogues whose turns carry labels (MELD).
- ``fit_recognizer_on``: a fine-tuned recognizer (ERC) on labelled dialogues.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from engine.dialogue import Dialogue, Turn
from engine.metrics import held_out, scores
from engine.schemes import EKMAN7, convert, scheme
from engine.emotion.prerecognizer import PreRecognizer, Targets, fit, pretrain
from engine.encoders import EMOTION_SPACE, encode_dialogues
from engine.paths import UTTERANCE_EMOTIONS
from engine.settings import Settings

log = logging.getLogger(__name__)


def gold_targets(dialogues: list[Dialogue]) -> list[Targets]:
    """One-hot Ekman-7 and sentiment-3 rows from turns' labels (rows of zeros where a turn has
    none; a sentiment is derived from the emotion when only that is given)."""
    emotions, sentiments = scheme("ekman7"), scheme("sentiment3")
    targets = []
    for dialogue in dialogues:
        emotion = np.zeros((len(dialogue.turns), len(EKMAN7)), dtype=np.float32)
        sentiment = np.zeros((len(dialogue.turns), 3), dtype=np.float32)
        for row, turn in enumerate(dialogue.turns):
            if turn.emotion:
                emotion[row] = emotions.one_hot(turn.emotion)
            if turn.sentiment:
                sentiment[row] = sentiments.one_hot(turn.sentiment)
            elif turn.emotion:
                sentiment[row] = convert(emotion[row], "ekman7", "sentiment3")
        targets.append(Targets(emotion, sentiment))
    return targets


def weak_targets(dialogues: list[Dialogue], teacher) -> list[Targets]:
    """nade's reading of every turn, as soft Ekman-7 and sentiment-3 labels."""
    texts = [turn.content() for dialogue in dialogues for turn in dialogue.turns]
    emotion = np.concatenate([teacher.predict_ekman(texts[i:i + 2000])
                              for i in range(0, len(texts), 2000)])
    sentiment = convert(emotion, "ekman7", "sentiment3")
    targets, start = [], 0
    for dialogue in dialogues:
        n = len(dialogue.turns)
        targets.append(Targets(emotion[start:start + n], sentiment[start:start + n]))
        start += n
    return targets


def train_default(encoder, out: Path, conversations: int = 1200, epochs: int = 4,
                  cache: Path | None = None, progress=log.info) -> dict:
    """The bundled pre-recognizer, from package data (chitchat-dataset + nade) only; a fixed
    amount of training (no time budget), so reruns give the same weights on any machine."""
    from engine.corpora import read_chitchat
    from engine.emotion.conversation import NadeEmotion

    started = time.perf_counter()
    dialogues = read_chitchat(limit=conversations)
    progress(f"embedding {sum(len(d.turns) for d in dialogues)} messages of "
             f"{len(dialogues)} chitchat conversations")
    encoded = encode_dialogues(encoder, dialogues, cache)
    model = PreRecognizer(encoder.dim)
    info = pretrain(model, encoded, max_seconds=float("inf"), progress=progress)
    progress("weak labels from nade")
    info |= fit(model, encoded, weak_targets(dialogues, NadeEmotion()), max_epochs=epochs,
                patience=epochs, max_seconds=float("inf"), progress=progress)
    model.save(out)
    info |= {"conversations": len(dialogues), "seconds": round(time.perf_counter() - started, 1)}
    (out / "train.json").write_text(json.dumps(info, indent=1))
    return info


def fit_prerecognizer(encoder, dialogues: list[Dialogue], base: Path, out: Path,
                      cache: Path | None = None, progress=log.info,
                      rehearsal: list[Dialogue] = ()) -> dict:
    """Fine-tune the pre-recognizer in ``base`` on labelled dialogues; saved to ``out``.
    ``rehearsal``: unlabelled dialogues trained on with nade's weak labels alongside (what the
    bundled model learned from), so a few hundred labels refine the model rather than replace
    what it knew."""
    from engine.emotion.conversation import NadeEmotion

    started = time.perf_counter()
    model = PreRecognizer.load(base)
    targets = gold_targets(dialogues)
    if rehearsal:
        targets += weak_targets(rehearsal, NadeEmotion())
    encoded = encode_dialogues(encoder, dialogues, cache) + (  # the rehearsal: cached once
        encode_dialogues(encoder, rehearsal, cache) if rehearsal else [])
    info = fit(model, encoded, targets, progress=progress)
    model.save(out)
    info["fit_seconds"] = round(time.perf_counter() - started, 1)
    (out / "fit.json").write_text(json.dumps(info, indent=1))
    return info


def fit_recognizer_on(dialogues: list[Dialogue], out: Path, tuned_layers: int = 6,
                      epochs: int = 2, seed: int = 0, progress=log.info) -> dict:
    """Fine-tune MiniLM with the heads on labelled dialogues (ERC): all six layers, two epochs
    (about 6 minutes for MELD train on 2 CPU cores). The same ``seed`` gives the same model,
    and it trains to the end however busy the machine is: a time budget would make an
    evaluation's figure depend on the load beside it."""
    from engine.encoders import encoder_weights
    from engine.emotion.recognizer import Labelled, Recognizer, fit_recognizer

    started = time.perf_counter()
    model = Recognizer(encoder_weights(EMOTION_SPACE), tuned_layers, seed=seed)
    info = fit_recognizer(model, Labelled.from_dialogues(dialogues), epochs=epochs, seed=seed,
                          max_seconds=None, progress=progress)
    info["seed"] = seed
    model.save(out)
    info["fit_seconds"] = round(time.perf_counter() - started, 1)
    (out / "fit.json").write_text(json.dumps(info, indent=1))
    return info


def read_utterance_check(path: Path = UTTERANCE_EMOTIONS) -> list[Dialogue]:
    """The pre-recognizer's fixed public check: utterances written and labelled for this
    project (``context,text,emotion``), each a dialogue of its context and itself."""
    import csv

    with Path(path).open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    return [Dialogue(tuple(([Turn("a", row["context"])] if row["context"].strip() else [])
                           + [Turn("b", row["text"], emotion=row["emotion"])]), f"check-{number}")
            for number, row in enumerate(rows)]


def recognition_scores(model: PreRecognizer, encoder, dialogues: list[Dialogue],
                       cache: Path | None) -> dict:
    """Accuracy and macro-F1 of the turn view on every labelled turn of ``dialogues``."""
    encoded = encode_dialogues(encoder, dialogues, cache) if dialogues else []
    rows = [(vectors, EKMAN7.index(turn.emotion))
            for dialogue, e in zip(dialogues, encoded)
            for vectors, turn in zip(e.vectors, dialogue.turns) if turn.emotion in EKMAN7]
    if not rows:
        return scores(np.zeros(0), np.zeros(0))
    views = model.frozen().views(np.stack([vector for vector, _ in rows]).astype(np.float32))
    return scores(views[:, :len(EKMAN7)].argmax(axis=1), np.array([gold for _, gold in rows]))


def fit_job(args: dict, out: Path, progress) -> dict:
    """The ``prerecognizer`` job recipe: utterance-emotion labels of a snapshot (plus MELD's
    train split when ``meld`` names its folder) fine-tune the live pre-recognizer (``base``).
    One labelled dialogue in five is held out; the candidate and ``base`` are measured on it
    and on the fixed public check (recognition of each labelled turn)."""
    from engine.corpora import read_chitchat, read_meld
    from engine.encoders import create_text_encoder
    from engine.training.snapshot import labelled_dialogues

    progress(0.05, "reading the labelled dialogues")
    dialogues = labelled_dialogues(Path(args["snapshot"]))
    train = [d for d in dialogues if not held_out(d.id)]
    holdout = [d for d in dialogues if held_out(d.id)]
    if args.get("meld"):
        train += read_meld(Path(args["meld"]) / "train_sent_emo.csv")
    labelled = [t.emotion for d in train for t in d.turns if t.emotion]
    if len(set(labelled)) < 2 or len(train) < 2:
        raise ValueError(f"{len(labelled)} labelled utterances in {len(train)} dialogues for "
                         "training, of fewer than two emotions: label more first")
    cache = Path(args["cache"]) if args.get("cache") else None
    progress(0.1, "loading the text encoder")
    encoder = create_text_encoder(args.get("encoder", EMOTION_SPACE), args.get("device", "cpu"))
    calls = [0]

    def report(message: str) -> None:
        calls[0] += 1
        progress(min(0.8, 0.15 + 0.04 * calls[0]), message)

    report(f"fitting on {len(labelled)} labelled utterances in {len(train)} dialogues "
           f"({len(holdout)} dialogues held out)")
    rehearsal = [] if args.get("meld") else \
        read_chitchat(limit=int(args.get("rehearsal", Settings.rehearsal_conversations)))
    info = fit_prerecognizer(encoder, train, Path(args["base"]), Path(out), cache, report, rehearsal)
    progress(0.85, "measuring the candidate and the live pre-recognizer")
    check = read_utterance_check(Path(args.get("check") or UTTERANCE_EMOTIONS))

    def measured(model: PreRecognizer) -> dict:
        return {"holdout": recognition_scores(model, encoder, holdout, cache),
                "public": recognition_scores(model, encoder, check, cache)}

    metrics = {"candidate": measured(PreRecognizer.load(Path(out))),
               "live": measured(PreRecognizer.load(Path(args["base"]))),
               "train": len(labelled), "holdout": sum(1 for d in holdout for t in d.turns
                                                      if t.emotion),
               "epochs": info.get("epochs")}
    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    progress(1.0, "done")
    return metrics
