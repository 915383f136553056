"""Emotion words learnt from kaomoji: weak supervision for reading a sticker's emotion.

The ``kaomoji-dataset`` package (CC BY 4.0, FontVibe) labels 82,109 kaomoji with an emotion
and describes each with names and keywords in six languages. Read the other way round, it says
which words people use for which feeling ("mad", "rage", "grumpy" → anger; "shock", "wow" →
surprise; "气死", "震惊" likewise in Chinese): the emoji pack's own CLDR tags use those words too.
A word's emotion is the share of each feeling's kaomoji it describes, every feeling weighed
alike (so that 28,000 happy kaomoji do not make every word joyful); a sticker's reading is the
product of its known words' (a sticker with none keeps the reading it had). Learnt once into
``assets/labels/kaomoji_emotions.json`` (``python -m engine.emotion.kaomoji``), which the
engine reads: the dataset is needed only to rebuild and check that file.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from engine.dialogue import ENGLISH_WORD
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
SMOOTHING = 0.01  # a word's share of each emotion before any feeling says it


# Feeling words that emoji tags use for something else: "up"/"down" are arrows and charts there.
DIRECTIONS = frozenset({"up", "down"})
OWN_WORD_SHARE = 0.9  # a word of at least this share of an emotion's kaomoji is that emotion's own


def kaomoji_feelings(entry: dict) -> tuple[str, set[str], set[str] | None] | None:
    """A kaomoji's leading emotion in the dataset and the feeling words said of it: its
    emotion field (phrases such as "middle finger" whole), and its Chinese keywords when the
    kaomoji shows a feeling only (None otherwise: a subject such as food or weapons, or an
    intent such as a greeting, whose words would read as the feeling)."""
    emotions = [emotion.lower() for emotion in entry.get("emotion") or []]
    if not emotions:
        return None
    chinese = None
    if not entry.get("subject") and not entry.get("intent"):
        chinese = {word for word in entry.get("keywords", {}).get("zh", [])
                   if word and not ENGLISH_WORD.fullmatch(word)}
    return emotions[0], set(emotions) - DIRECTIONS, chinese


def own_words(feelings: list[tuple[str, set[str]]]) -> dict[str, set[str]]:
    """Each leading emotion's own words: those said of nearly all the kaomoji it leads (of
    those whose words were read). The dataset appends the words of other feelings to many (an
    angry kaomoji that also laughs), and with the emotions weighed alike those would outvote:
    "无语" of a few disgusted kaomoji would outweigh a thousand dissatisfied ones."""
    count, words = Counter(), defaultdict(Counter)
    for leading, said in feelings:
        count[leading] += 1
        words[leading].update(said)
    return {leading: {word for word, n in words[leading].items()
                      if n >= OWN_WORD_SHARE * count[leading]} for leading in count}


def kaomoji_votes(entries: Iterable[dict]) -> list[tuple[str, str, list[str]]]:
    """For each kaomoji whose leading emotion is one of Ekman's, a vote per language read:
    that feeling and language ("angry/zh"), its Ekman emotion and the words
    of its own that are said of it (English and Chinese words are each an emotion's own by
    their share of the kaomoji whose words of that language were read)."""
    feelings = [found for found in map(kaomoji_feelings, entries) if found]
    own_english = own_words([(leading, english) for leading, english, _ in feelings])
    own_chinese = own_words([(leading, chinese) for leading, _, chinese in feelings
                             if chinese is not None])
    votes = []
    for leading, english, chinese in feelings:
        if leading not in KAOMOJI_EKMAN:
            continue
        votes.append((f"{leading}/en", KAOMOJI_EKMAN[leading], sorted(english & own_english[leading])))
        if chinese is not None:
            votes.append((f"{leading}/zh", KAOMOJI_EKMAN[leading],
                          sorted(chinese & own_chinese[leading])))
    return votes


def phrases_and_words(texts: Iterable[str]) -> list[str]:
    """Each English text whole ("middle finger") and its words, lowercased."""
    texts = [text.lower() for text in texts if text]
    return list(dict.fromkeys([*texts, *ENGLISH_WORD.findall(" ".join(texts))]))


def learn_word_emotions(votes: list[tuple[str, str, list[str]]]) -> dict[str, np.ndarray]:
    """P(emotion | word) over EKMAN7 for each word said of at least MIN_KAOMOJI kaomoji: the
    share of each leading feeling's kaomoji that the word describes, summed into its Ekman
    emotion, every feeling weighed alike (28,000 happy kaomoji and 300 disgusted ones: counted
    per kaomoji, "爱" of 17 loving ones would be a rare joy word; per feeling, it is love's)."""
    size = Counter(leading for leading, _, _ in votes)
    said: dict[str, Counter] = defaultdict(Counter)
    for leading, _, words in votes:
        for word in words:
            said[word][leading] += 1
    ekman = {leading: emotion for leading, emotion, _ in votes}
    lexicon = {}
    for word, by_feeling in said.items():
        if sum(by_feeling.values()) < MIN_KAOMOJI:
            continue
        share = np.full(len(EKMAN7), SMOOTHING)
        for leading, n in by_feeling.items():
            if size[leading] >= MIN_KAOMOJI:
                share[EKMAN7.index(ekman[leading])] += n / size[leading]
        lexicon[word] = share / share.sum()
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
    def learn(cls, entries: Iterable[dict]) -> "KaomojiLexicon":
        return cls(learn_word_emotions(kaomoji_votes(entries)))

    def read(self, terms: list[str]) -> np.ndarray | None:
        """The product of the known terms' emotions, normalised (Ekman-7), or None if the
        lexicon knows none of them."""
        known = [self.words[term] for term in terms if term in self.words]
        if not known:
            return None
        logs = np.sum(np.log(np.stack(known) + 1e-9), axis=0)
        reading = np.exp(logs - logs.max())
        return reading / reading.sum()

    def weigh(self, reading: np.ndarray, terms: list[list[str]], weight: float) -> np.ndarray:
        """``reading`` (one Ekman-7 row per sticker) times this lexicon's reading of each
        sticker's terms to the power ``weight``, a product of experts: a tag such as "mad" or
        "shock" moves the emotion its words name; a sticker whose words the lexicon does not
        know keeps its reading."""
        if not weight or not terms:
            return reading
        product = reading * self.read_many(terms) ** weight
        return product / product.sum(axis=1, keepdims=True)

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
    lexicon = KaomojiLexicon.learn(read_kaomoji_entries())
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
