"""The ``selector`` job recipe: best-sticker answers (the studio's picks and the chat's likes,
dislikes and swaps) → fusion weights, text adapter, per-sticker priors and the no-sticker
threshold.

A pick trains the selector against PBR's sentiment-aware hard negatives (similar stickers and
stickers of the opposite sentiment, ``Selector.fit``) plus the stickers the person was shown and
passed over, which are mostly of the same emotion: the negatives that teach the selector what
the emotion alone cannot. "No sticker" answers set the score below which the bot sends none.
One answered question in five is held out. The candidate and the live selector are measured on
the held-out picks (is the picked sticker ranked first among those shown) and on the fixed
public check ``assets/labels/sticker_choices.csv`` (messages with the stickers a person would
accept, in English and Chinese; hit@5 over the whole library).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from engine.dialogue import Dialogue, Turn
from engine.schemes import EKMAN7
from engine.metrics import held_out
from engine.training.snapshot import Choice, sticker_choices
from engine.stickers.usage import plain_emoji
from engine.paths import STICKER_CHOICES

MIN_PICKS = 10
MIN_NO_STICKER = 3  # "no sticker" answers needed before the threshold is learned
MAX_FIT_SECONDS = 120


def read_choice_check(path: Path, emojis: list[str]) -> list[tuple[str, set[int]]]:
    """(message, rows of the stickers a person would accept) per line of the check file; the
    stickers are named by emoji, found in the library by ``emojis`` (row → emoji)."""
    rows_of: dict[str, set[int]] = {}
    for row, emoji in enumerate(emojis):
        if emoji:
            rows_of.setdefault(plain_emoji(emoji), set()).add(row)
    with Path(path).open(encoding="utf-8", newline="") as file:
        lines = list(csv.DictReader(file))
    return [(line["message"], set().union(*(rows_of.get(plain_emoji(e), set())
                                            for e in line["accept"].split())))
            for line in lines]


class Reader:
    """The worker's view of dialogues: the engine's encoder and the live emotion models."""

    def __init__(self, encoder_name: str, prerecognizer: Path, device: str = "cpu") -> None:
        from engine.emotion.conversation import ConversationEmotion
        from engine.encoders import EMOTION_SPACE, create_text_encoder

        self.encoder = create_text_encoder(encoder_name, device)
        emotion_encoder = self.encoder if encoder_name == EMOTION_SPACE else \
            create_text_encoder(EMOTION_SPACE, device)
        self.emotion = ConversationEmotion.load(emotion_encoder, prerecognizer)
        self._seen: dict[Dialogue, tuple[str, np.ndarray, np.ndarray]] = {}

    def features(self, dialogues) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Each dialogue's last turn (the adapter's n-grams), vector and mood, as the engine
        reads them; a dialogue read before (a pick, again for the threshold) is not read twice."""
        from engine.emotion.conversation import forecast_mood
        from engine.encoders import dialogue_vector

        for dialogue in dialogues:
            if dialogue not in self._seen:
                self._seen[dialogue] = (dialogue.turns[-1].content(),
                                        dialogue_vector(dialogue, self.encoder.encode_turns),
                                        forecast_mood(self.emotion, dialogue))
        texts, vectors, moods = zip(*(self._seen[dialogue] for dialogue in dialogues))
        return list(texts), np.stack(vectors).astype(np.float32), np.stack(moods).astype(np.float32)


def fit(args: dict, out: Path, progress) -> dict:
    """``args``: ``snapshot``, ``stickers`` (the engine's sticker file: ids, text vectors,
    emotions, emojis), ``encoder``, ``prerecognizer`` (folder), ``base`` (the live selector's
    folder or ""), ``emotion_weight``, ``image_weight``, ``threshold`` (the live one)."""
    from engine.encoders import text_weight
    from engine.stickers.selector import Selector

    progress(0.05, "reading the best-sticker answers")
    stickers = np.load(args["stickers"], allow_pickle=False)
    ids = [str(i) for i in stickers["ids"]]
    column = {sticker_id: i for i, sticker_id in enumerate(ids)}
    vectors, emotions = stickers["vectors"], stickers["emotions"]
    usage = stickers["usage"] if "usage" in stickers.files else None
    choices = sticker_choices(Path(args["snapshot"]))
    picks = [c for c in choices if c.answer in column]
    train = [c for c in picks if not held_out(c.item)]
    holdout = [c for c in picks if held_out(c.item)]
    if len(train) < MIN_PICKS:
        raise ValueError(f"{len(train)} picked stickers for training (of {len(choices)} "
                         f"answers): the selector needs {MIN_PICKS}; label more first")
    progress(0.1, "loading the text encoder and the emotion models")
    reader = Reader(args["encoder"], Path(args["prerecognizer"]), args.get("device", "cpu"))
    texts, dialogue_vectors, moods = reader.features([c.dialogue for c in train])
    progress(0.25, f"fitting on {len(train)} picks ({len(holdout)} held out)")
    weights = (float(args["emotion_weight"]), float(args["image_weight"]),
               float(args.get("usage_weight", 0.0)), text_weight(args["encoder"]))
    candidate = Selector(*weights)
    report = candidate.fit(texts, dialogue_vectors, moods, [c.answer for c in train], ids, vectors,
                           emotions, list(EKMAN7), max_seconds=MAX_FIT_SECONDS,
                           negatives=[[s for s in c.shown if s != c.answer] for c in train],
                           usage=usage)
    progress(0.7, f"fitted in {report.epochs} epochs", metric=round(100 * report.holdout_macro_f1, 2))
    candidate.threshold = learned_threshold(candidate, reader, choices, column, vectors, emotions,
                                            args.get("threshold"), usage)
    live = Selector.load(Path(args["base"]), vectors.shape[1]) if args.get("base") else \
        Selector(*weights)
    progress(0.8, "measuring the candidate and the live selector")
    check = read_choice_check(Path(args.get("check") or STICKER_CHOICES), [str(e) for e in stickers["emojis"]])
    check_texts, check_vectors, check_moods = reader.features(
        [Dialogue((Turn("user", message),)) for message, _ in check])
    held = reader.features([c.dialogue for c in holdout]) if holdout else None

    def measured(selector: Selector) -> dict:
        result = {"holdout": picked_first(selector, held, holdout, ids, vectors, emotions, usage)}
        scores = selector.scores(check_texts, check_vectors, check_moods, ids, vectors, emotions,
                                 usage=usage)
        threshold = args.get("threshold") if selector.threshold is None else selector.threshold
        result["public"] = hits(scores, [accepted for _, accepted in check], threshold)
        return result

    Path(out).mkdir(parents=True, exist_ok=True)
    candidate.save(Path(out))
    metrics = {"candidate": measured(candidate), "live": measured(live), "train": len(train),
               "holdout": len(holdout), "epochs": report.epochs, "parts": report.parts,
               "threshold": candidate.threshold}
    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    progress(1.0, "done")
    return metrics


def picked_first(selector, features, holdout: list[Choice], ids: list[str],
                 vectors: np.ndarray, emotions: np.ndarray, usage: np.ndarray | None = None) -> dict:
    """Percent of held-out picks the selector ranks first among the stickers that were shown
    (the choice the person made), and the mean reciprocal rank."""
    if not holdout:
        return {"n": 0, "accuracy": None, "mrr": None}
    texts, dialogue_vectors, moods = features
    column = {sticker_id: row for row, sticker_id in enumerate(ids)}
    firsts, reciprocal = [], []
    for i, choice in enumerate(holdout):
        shown = [column[s] for s in dict.fromkeys((choice.answer, *choice.shown)) if s in column]
        scores = selector.scores(texts[i:i + 1], dialogue_vectors[i:i + 1], moods[i:i + 1],
                                 [ids[k] for k in shown], vectors[shown], emotions[shown],
                                 usage=None if usage is None else usage[shown])[0]
        rank = 1 + int(np.sum(scores > scores[0]))
        firsts.append(rank == 1)
        reciprocal.append(1.0 / rank)
    return {"n": len(holdout), "accuracy": round(100 * float(np.mean(firsts)), 2),
            "mrr": round(100 * float(np.mean(reciprocal)), 2)}


def hits(scores: np.ndarray, accepted: list[set[int]], threshold: float | None) -> dict:
    """hit@1 and hit@5 (percent): an accepted sticker among the top 1 / 5 of the library; and
    ``sent``: the percent of messages whose best score reaches the threshold (each message of
    the check is one a person would answer with a sticker)."""
    top = np.argsort(-scores, axis=1)[:, :5]
    at = lambda k: round(100 * float(np.mean([bool(set(row[:k].tolist()) & ok)  # noqa: E731
                                              for row, ok in zip(top, accepted)])), 2)
    sent = 100.0 if threshold is None else 100 * float(np.mean(scores.max(axis=1) >= threshold))
    return {"n": len(accepted), "hit_at_1": at(1), "hit_at_5": at(5), "sent": round(sent, 2)}


def learned_threshold(selector, reader: Reader, choices: list[Choice], column: dict[str, int],
                      vectors: np.ndarray, emotions: np.ndarray,
                      live: float | None, usage: np.ndarray | None = None) -> float | None:
    """The top score that best separates questions answered with a sticker from those answered
    "no sticker" (balanced accuracy), never one that would leave more than one pick in twenty
    without its sticker (picks were trained on, so their scores run high); the live threshold
    when there are too few "no sticker" answers."""
    answered = [c for c in choices if c.answer in column or c.no_sticker]
    if sum(c.no_sticker for c in answered) < MIN_NO_STICKER:
        return live
    texts, dialogue_vectors, moods = reader.features([c.dialogue for c in answered])
    ids = list(column)
    top = selector.scores(texts, dialogue_vectors, moods, ids, vectors, emotions,
                          usage=usage).max(axis=1)
    send = np.array([not c.no_sticker for c in answered])
    best, threshold = -1.0, live
    ceiling = np.quantile(top[send], 0.05) if send.any() else np.inf
    for value in np.unique(top[top <= ceiling]):
        predicted = top >= value
        accuracy = (np.mean(predicted[send]) if send.any() else 0.0) + \
            (np.mean(~predicted[~send]) if (~send).any() else 0.0)
        if accuracy > best:
            best, threshold = accuracy, float(value)
    return threshold
