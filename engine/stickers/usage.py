"""How often people use a sticker at all: the usage prior of sticker selection.

A chat sticker expresses a reaction; people send faces and hearts far more often than flags,
keycaps or professions. Without this prior the ranking follows the nouns of a message
("Chipotle" → chipmunk). The prior is counted from real tweets of a corpus other than the one
it is evaluated on (TweetEval's *emotion* split, by `memeui train usage-prior`) and shipped as
counts per emoji (``assets/labels/emoji_usage.json``). A sticker's prior is its emoji's count,
smoothed towards the mean count of its Unicode group, so an emoji never seen in the corpus
still gets its group's share, and a sticker of no group (a user pack) gets the average.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from engine.paths import EMOJI_USAGE, STICKER_CHOICES, THRESHOLD_FILE


SMOOTHING = 20  # pseudo-counts spread over the group (chosen on TweetEval emoji train)
VARIATION_SELECTORS = str.maketrans("", "", "\ufe0f\ufe0e")


def plain_emoji(emoji: str) -> str:
    return emoji.translate(VARIATION_SELECTORS)


def count_emojis(texts: list[str], emojis: list[str]) -> Counter:
    """How often each of ``emojis`` occurs in ``texts`` (longest match first, so 👍🏽 is not
    also counted as 👍)."""
    known = sorted({plain_emoji(e) for e in emojis if e}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(e) for e in known))
    return Counter(match.group() for text in texts for match in pattern.finditer(plain_emoji(text)))


def write_usage(counts: Counter, source: str, path: Path = EMOJI_USAGE) -> dict:
    document = {"source": source, "total": sum(counts.values()),
                "counts": dict(counts.most_common())}
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", "utf-8")
    return document


def read_usage(path: Path = EMOJI_USAGE) -> dict[str, int]:
    if not Path(path).is_file():
        return {}
    return {plain_emoji(e): int(n) for e, n in json.loads(Path(path).read_text("utf-8"))["counts"].items()}


def usage_prior(stickers, counts: dict[str, int], smoothing: float = SMOOTHING) -> np.ndarray:
    """Log usage rate of each sticker, centred (0: an average sticker)."""
    if not stickers:
        return np.zeros(0, np.float32)
    total = sum(counts.values())
    count = np.array([counts.get(plain_emoji(s.emoji), 0) if s.emoji else 0 for s in stickers],
                     dtype=np.float64)
    groups = [s.group or "" for s in stickers]
    size, used = Counter(groups), Counter()
    for group, n in zip(groups, count):
        used[group] += n
    share = np.array([(used[g] + 1) / (total + len(size)) / size[g] if g else 1 / len(stickers)
                      for g in groups])
    prior = np.log((count + smoothing * share) / (total + smoothing))
    return (prior - prior.mean()).astype(np.float32)


# ---------------------------------------------------------------- whether to send one at all

UNCALIBRATED = 0.25  # for a text encoder nobody calibrated (`memeui train threshold`)


def meme_share(mod_file: Path) -> float:
    """The share of turns that carry a meme in a MOD JSON file (MOD's meme-usage flag)."""
    data = json.loads(Path(mod_file).read_text("utf-8"))
    turns = [turn for dialogue in data.values() for turn in dialogue]
    if not turns:
        raise ValueError(f"{mod_file} has no turns")
    return sum(bool(str(turn.get("img_id", "")).strip()) for turn in turns) / len(turns)


def calibrated_threshold(top_scores: list[float], keep: float = 0.95) -> float:
    """The score that the best sticker of ``keep`` of the messages reaches."""
    return float(np.quantile(np.asarray(top_scores), 1.0 - keep))


def save_threshold(encoder: str, value: float, info: dict, path: Path = THRESHOLD_FILE) -> None:
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved[encoder] = {"threshold": round(value, 4), **info}
    path.write_text(json.dumps(saved, indent=1) + "\n")


def read_threshold(encoder: str, path: Path = THRESHOLD_FILE) -> float:
    saved = json.loads(path.read_text()) if path.is_file() else {}
    return float(saved[encoder]["threshold"]) if encoder in saved else UNCALIBRATED


def calibrate(engine, openings: int = 500, mod_file: Path | None = None) -> dict:
    """The send threshold for the engine's text encoder, by the selector recipe's rule: the
    messages of the regression set (each one a person would answer with a sticker) get one,
    all but one in twenty. Reported beside it: the share of held-out chitchat openings that get
    a sticker at that threshold, and (``mod_file``) how often people in MOD send a meme."""
    import csv

    from engine.dialogue import Dialogue, Turn
    from engine.corpora import chitchat_split

    def best_scores(messages: list[str]) -> np.ndarray:
        tops = []
        for message in messages:
            reply = engine.chat(Dialogue((Turn("user", message),)))
            best = reply.sticker or (reply.alternatives[0] if reply.alternatives else None)
            tops.append(best.score if best else -np.inf)
        return np.array(tops)

    with STICKER_CHOICES.open(encoding="utf-8", newline="") as file:
        wanted = best_scores([line["message"] for line in csv.DictReader(file)])
    threshold = calibrated_threshold(wanted[np.isfinite(wanted)])
    _, held = chitchat_split(0, openings)
    chitchat = best_scores([dialogue.turns[0].text for dialogue in held])
    info = {"regression_set_sent": round(100 * float(np.mean(wanted >= threshold)), 2),
            "chitchat_openings": len(chitchat),
            "chitchat_sent": round(100 * float(np.mean(chitchat >= threshold)), 2),
            "backend": engine.reply_backend.get().name}
    if mod_file:
        info["mod_meme_share"] = round(100 * meme_share(mod_file), 2)
    save_threshold(engine.settings.text_encoder, threshold, info)
    return {"threshold": round(threshold, 4), "text_encoder": engine.settings.text_encoder, **info}
