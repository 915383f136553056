"""Emotion words learnt from kaomoji: weak supervision for reading a sticker's emotion.

The ``kaomoji-dataset`` package (CC BY 4.0, FontVibe) labels 82,109 kaomoji with an emotion
and describes each with names and keywords in six languages. Read the other way round, it says
which words people use for which feeling ("mad", "rage", "grumpy" → anger; "shock", "wow" →
surprise; "气死", "惊" likewise in Chinese): the emoji pack's own CLDR tags use those words too.
Each word's emotion is learnt by counting (naive Bayes with the emotions weighed alike, so that
the 28,000 happy kaomoji do not make every word joyful); a sticker's reading is the product of
its words' (a word no emotion owns reads flat and changes nothing).
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from engine.paths import KAOMOJI_EMOTIONS
from engine.schemes import EKMAN7

# The dataset's leading emotion word of a kaomoji → Ekman-7; the others (shy, cute, drooling,
# embarrassed) name no Ekman emotion and are not read.
KAOMOJI_EKMAN = {
    "happy": "joy", "excited": "joy", "love": "joy", "laugh": "joy", "proud": "joy",
    "angry": "anger", "dissatisfied": "anger", "rude": "anger",
    "sad": "sadness", "crying": "sadness", "hurt": "sadness", "disappointed": "sadness",
    "lonely": "sadness", "tired": "sadness",
    "scared": "fear", "panic": "fear",
    "surprised": "surprise",
    "disgusted": "disgust", "smug": "disgust", "sick": "disgust",
    "indifferent": "neutral", "sleepy": "neutral", "doubt": "neutral", "thinking": "neutral",
    "confused": "neutral", "cool": "neutral",
}
MIN_KAOMOJI = 5  # a word described fewer kaomoji than this says too little to learn from
SMOOTHING = 1.0  # add-one counts per emotion
ENGLISH_WORD = re.compile(r"[a-z]+")


# Feeling words that emoji tags use for something else: "up"/"down" are arrows and charts there.
DIRECTIONS = frozenset({"up", "down"})


def kaomoji_words(entry: dict) -> set[str]:
    """The words that describe a kaomoji: English words of its name and keywords, its Chinese
    name and keywords whole (as emoji tags are written)."""
    english = [entry.get("names", {}).get("en", ""), *entry.get("keywords", {}).get("en", [])]
    chinese = [entry.get("names", {}).get("zh", ""), *entry.get("keywords", {}).get("zh", [])]
    return {*phrases_and_words(english), *(word for word in chinese if word)}


def phrases_and_words(texts: Iterable[str]) -> list[str]:
    """Each English text whole ("middle finger") and its words, lowercased."""
    texts = [text.lower() for text in texts if text]
    return list(dict.fromkeys([*texts, *ENGLISH_WORD.findall(" ".join(texts))]))


def feeling_words(entries: Iterable[dict]) -> frozenset[str]:
    """The words that name feelings, not things: the entries of the dataset's emotion field
    (phrases such as "middle finger" whole, not "in" of "in love"), and the Chinese keywords of kaomoji that show a feeling only (no subject such as
    food or weapons, no intent such as greeting); a tag like "food" or "weapon" would otherwise
    read as the emotion of the kaomoji that hold them."""
    words: set[str] = set()
    for entry in entries:
        words |= {emotion.lower() for emotion in entry.get("emotion") or []}
        if not entry.get("subject") and not entry.get("intent"):
            words |= {word for word in entry.get("keywords", {}).get("zh", [])
                      if word and not ENGLISH_WORD.fullmatch(word)}
    return frozenset(words - DIRECTIONS)


def kaomoji_votes(entry: dict) -> tuple[str, list[str]] | None:
    """A kaomoji's Ekman emotion and the words that describe it, or None when its emotion is
    none of Ekman's."""
    emotions = entry.get("emotion") or []
    emotion = KAOMOJI_EKMAN.get(emotions[0]) if emotions else None
    if emotion is None:
        return None
    return emotion, sorted(kaomoji_words(entry))


def learn_word_emotions(votes: list[tuple[str, list[str]]],
                        vocabulary: frozenset[str] | None = None) -> dict[str, np.ndarray]:
    """P(emotion | word) over EKMAN7 for each word (of ``vocabulary``, if given) seen in at
    least MIN_KAOMOJI kaomoji, from P(word | emotion) with the emotions weighed alike."""
    per_emotion = Counter(emotion for emotion, _ in votes)
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(EKMAN7)))
    for emotion, words in votes:
        for word in words:
            if vocabulary is None or word in vocabulary:
                counts[word][EKMAN7.index(emotion)] += 1
    sizes = np.array([per_emotion.get(emotion, 0) for emotion in EKMAN7], dtype=float)
    seen = sizes > 0
    lexicon = {}
    for word, count in counts.items():
        if count.sum() < MIN_KAOMOJI:
            continue
        likelihood = np.where(seen, (count + SMOOTHING) / (sizes + 2 * SMOOTHING), 0.0)
        lexicon[word] = likelihood / likelihood.sum()
    return lexicon


def sticker_terms(label: str, tags: tuple[str, ...] = (), label_zh: str = "",
                  tags_zh: tuple[str, ...] = ()) -> list[str]:
    """The words of a sticker the lexicon may know: its English label and tags whole and
    their words, its Chinese label and tags whole (as kaomoji keywords are written)."""
    english = phrases_and_words([label, *tags])
    return list(dict.fromkeys([*english, *(term for term in (label_zh, *tags_zh) if term)]))


@dataclass(frozen=True)
class KaomojiLexicon:
    words: dict[str, np.ndarray]

    @classmethod
    def learn(cls, entries: list[dict]) -> "KaomojiLexicon":
        votes = [vote for vote in map(kaomoji_votes, entries) if vote]
        return cls(learn_word_emotions(votes, feeling_words(entries)))

    def read(self, terms: list[str]) -> np.ndarray | None:
        """The product of the known terms' emotions, normalised (Ekman-7), or None if the
        lexicon knows none of them."""
        known = [self.words[term] for term in terms if term in self.words]
        if not known:
            return None
        logs = np.sum(np.log(np.stack(known) + 1e-9), axis=0)
        reading = np.exp(logs - logs.max())
        return reading / reading.sum()

    def read_many(self, terms: list[list[str]]) -> np.ndarray:
        """One row per sticker; a sticker without known terms reads flat (uniform)."""
        flat = np.full(len(EKMAN7), 1 / len(EKMAN7))
        return np.stack([reading if (reading := self.read(t)) is not None else flat
                         for t in terms]) if terms else np.zeros((0, len(EKMAN7)))


def read_kaomoji_entries() -> Iterator[dict]:
    """The installed dataset's entries, streamed from its gzip file (the package's own
    ``all()`` keeps all 82,109 parsed, about 250 MB, for the process's life)."""
    data = importlib.resources.files("kaomoji_dataset") / "data" / "kaomoji.jsonl.gz"
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def write_bundled_lexicon(path: Path = KAOMOJI_EMOTIONS) -> KaomojiLexicon:
    """Learn the lexicon from the installed dataset (about 5 s) and write it where the engine
    reads it: ``python -m engine.emotion.kaomoji``."""
    lexicon = KaomojiLexicon.learn(list(read_kaomoji_entries()))
    rows = ",\n".join(f"  {json.dumps(word, ensure_ascii=False)}: "
                      f"[{', '.join(f'{p:.4g}' for p in lexicon.words[word])}]"
                      for word in sorted(lexicon.words))  # 4 significant digits: small
    # probabilities stay non-zero (a product of experts would read a zero as a veto)
    path.write_text(f'{{"source": "kaomoji-dataset 1.0.6 (CC BY 4.0, FontVibe)",\n'
                    f' "emotions": {json.dumps(list(EKMAN7))},\n "words": {{\n{rows}\n}}}}\n',
                    encoding="utf-8")
    return lexicon


@functools.cache
def bundled_lexicon() -> KaomojiLexicon:
    """The lexicon learnt from ``kaomoji-dataset``, as bundled (read once per process)."""
    data = json.loads(KAOMOJI_EMOTIONS.read_text(encoding="utf-8"))
    order = [data["emotions"].index(emotion) for emotion in EKMAN7]
    return KaomojiLexicon({word: np.array(p)[order] for word, p in data["words"].items()})


if __name__ == "__main__":
    print(f"{len(write_bundled_lexicon().words)} words written to {KAOMOJI_EMOTIONS}")
