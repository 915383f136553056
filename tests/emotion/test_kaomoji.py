"""The kaomoji lexicon: emotion words learnt from labelled kaomoji, read over a sticker's tags."""

import numpy as np
import pytest

from engine.emotion.kaomoji import (KaomojiLexicon, bundled_lexicon, kaomoji_votes,
                                    learn_word_emotions, sticker_terms)
from engine.schemes import EKMAN7


def kaomoji(emotion, keywords, zh=(), subject=(), intent=()):
    """One entry in the dataset's format (the fields the lexicon reads)."""
    return {"emotion": [emotion, *keywords], "names": {"en": f"{emotion} face", "zh": ""},
            "keywords": {"en": list(keywords), "zh": list(zh)}, "subject": list(subject),
            "intent": list(intent)}


FIXTURE = ([kaomoji("angry", ["mad", "rage"], zh=["生气"])] * 6
           + [kaomoji("happy", ["glad", "smile"], zh=["开心"])] * 30
           + [kaomoji("happy", ["glad"], subject=["food"], zh=["食物"])] * 6
           + [kaomoji("surprised", ["shock", "wow"])] * 6
           + [kaomoji("shy", ["blush"])] * 6)


def emotion_of(reading):
    return EKMAN7[int(np.argmax(reading))]


def test_words_take_the_emotion_of_the_kaomoji_they_describe():
    lexicon = KaomojiLexicon.learn(FIXTURE)
    assert emotion_of(lexicon.words["mad"]) == "anger"
    assert emotion_of(lexicon.words["生气"]) == "anger"  # Chinese keywords too
    assert emotion_of(lexicon.words["shock"]) == "surprise"
    assert all(abs(p.sum() - 1) < 1e-9 for p in lexicon.words.values())


def test_things_and_emotions_outside_ekman_are_not_learnt():
    lexicon = KaomojiLexicon.learn(FIXTURE)
    assert "食物" not in lexicon.words  # a Chinese keyword of kaomoji about food, not a feeling
    assert kaomoji_votes([kaomoji("shy", ["blush"])]) == []
    assert "blush" not in lexicon.words
    assert not any("up" in words or "down" in words
                   for *_, words in kaomoji_votes([kaomoji("happy", ["up"]), kaomoji("sad", ["down"])]))


def test_only_an_emotions_own_words_vote_for_it():
    """The dataset appends other feelings' words to some kaomoji (angry ones that also laugh):
    a word said of few of an emotion's kaomoji is not that emotion's."""
    entries = ([kaomoji("angry", ["mad"])] * 10 + [kaomoji("angry", ["mad", "haha"])] * 2
               + [kaomoji("happy", ["haha"])] * 10)
    lexicon = KaomojiLexicon.learn(entries)
    assert emotion_of(lexicon.words["haha"]) == "joy"
    assert lexicon.words["haha"][EKMAN7.index("anger")] < 0.1


def test_emotions_are_weighed_alike_whatever_their_kaomoji_count():
    """30 happy kaomoji against 6 angry: a word said of all of both reads as much anger as
    joy (each feeling weighed alike, not each kaomoji), and a word of 6 of 300 loving ones
    ("爱" in the dataset) is still love's, not the few disgusted kaomoji's."""
    votes = [("happy/en", "joy", ["face"])] * 30 + [("angry/en", "anger", ["face"])] * 6
    reading = learn_word_emotions(votes)["face"]
    assert abs(reading[EKMAN7.index("joy")] - reading[EKMAN7.index("anger")]) < 1e-9
    votes = [("love/zh", "joy", ["爱"])] * 6 + [("love/en", "joy", ["love"])] * 300
    votes += [("disgusted/zh", "disgust", ["恶心"])] * 10
    assert emotion_of(learn_word_emotions(votes)["爱"]) == "joy"


def test_a_sticker_reads_the_product_of_its_known_words():
    lexicon = KaomojiLexicon.learn(FIXTURE)
    terms = sticker_terms("angry face with horns", ("mad", "devil"), "生气的恶魔脸", ("生气",))
    assert "mad" in terms and "angry face with horns" in terms and "生气" in terms
    assert emotion_of(lexicon.read(terms)) == "anger"
    assert lexicon.read(["spoon", "table"]) is None
    flat = lexicon.read_many([["spoon"]])[0]
    assert np.allclose(flat, 1 / len(EKMAN7))


def test_the_bundled_lexicon_names_the_feelings_of_the_packs_tags():
    words = bundled_lexicon().words
    for word, emotion in {"mad": "anger", "grumpy": "anger", "rage": "anger", "生气": "anger",
                          "shock": "surprise", "shocked": "surprise", "惊讶": "surprise",
                          "scared": "fear", "sad": "sadness", "happy": "joy", "gross": "disgust"}.items():
        assert emotion_of(words[word]) == emotion, word
    assert "food" not in words and "weapon" not in words


@pytest.mark.slow
def test_the_bundled_lexicon_is_what_the_installed_dataset_teaches(tmp_path):
    """assets/labels/kaomoji_emotions.json is written by ``python -m engine.emotion.kaomoji``;
    this fails when the recipe or the dataset changed and the file was not rewritten."""
    from engine.emotion.kaomoji import write_bundled_lexicon

    learnt = write_bundled_lexicon(tmp_path / "lexicon.json").words
    bundled = bundled_lexicon().words
    assert set(learnt) == set(bundled)
    assert all(np.allclose(learnt[w], bundled[w], rtol=1e-3, atol=1e-6) for w in learnt)


def test_the_chinese_mood_words_take_the_lexicons_chinese_words():
    from engine.emotion.conversation import EMOTION_WORDS, emotion_words

    words = emotion_words()
    assert all(words[e][:len(EMOTION_WORDS[e])] == list(EMOTION_WORDS[e]) for e in EKMAN7)
    assert "无所谓" in words["neutral"] and "笑死" in words["joy"]
    assert "气死" in words["anger"] and "无所谓" not in words["joy"]
    added = words["joy"][len(EMOTION_WORDS["joy"]):]
    assert added and not any(c.isascii() and c.isalpha() for word in added for c in word)  # English words stay out
    assert all(len(set(own)) == len(own) for own in words.values())  # each word once
