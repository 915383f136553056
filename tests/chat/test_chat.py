"""The chat's data: history in both shapes the app receives becomes the same Dialogue,
sticker swaps and loaded conversations (the labels users leave: tests/annotations/test_store.py)."""

import json

import pytest

from engine import Dialogue, Turn
from engine.corpora import read_conversations
from engine.chat.backends import CONTEXT_TURNS, MOOD_HINTS, build_prompt
from memeui.chat import (ERROR_TITLE, MOOD_PREFIX, bot_message, dialogue_from_history,
                         history_from_dialogue, mood_summary, swap_sticker)


def test_chatbot_messages_become_turns_with_sticker_text_and_no_mood_line():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "I failed"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Oh no."},
            {"type": "file", "file": {"path": "/tmp/x.webp"}, "alt_text": "crying face"},
            {"type": "text", "text": MOOD_PREFIX + "sadness 40%"},
        ]},
    ]
    assert dialogue_from_history(history) == Dialogue((
        Turn("user", "I failed"), Turn("bot", "Oh no.", "crying face")))


def test_api_messages_with_plain_content_and_sticker_objects():
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": "hello!", "sticker": {"label": "waving hand"}},
               {"role": "user", "content": "", "sticker": "cat face"}]
    turns = dialogue_from_history(history).turns
    assert turns == (Turn("user", "hi"), Turn("bot", "hello!", "waving hand"),
                     Turn("user", "", "cat face"))
    assert turns[2].content() == "[sticker: cat face]"


def test_mood_summary_names_the_strongest_labels():
    assert mood_summary({"joy": 0.6, "neutral": 0.3, "fear": 0.1}) == "joy 60%, neutral 30%"


def test_reply_prompt_carries_mood_hint_roles_and_recent_turns_only():
    turns = tuple(Turn("user" if i % 2 == 0 else "bot", f"turn {i}") for i in range(10))
    messages = build_prompt(Dialogue(turns), "sadness")
    assert messages[0]["role"] == "system" and MOOD_HINTS["sadness"] in messages[0]["content"]
    assert len(messages) == 1 + CONTEXT_TURNS
    assert messages[-1] == {"role": "assistant", "content": "turn 9"}
    assert messages[1] == {"role": "user", "content": "turn 4"}


def test_failed_turns_are_shown_but_not_part_of_the_dialogue():
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": "server down", "metadata": {"title": ERROR_TITLE}},
               {"role": "user", "content": "hello?"}]
    assert dialogue_from_history(history).turns == (Turn("user", "hi"), Turn("user", "hello?"))


def _sticker(label: str) -> dict:
    return {"id": label, "label": label, "file": f"/packs/{label}.webp", "emoji": ""}


def test_swapping_puts_the_pick_in_and_the_old_sticker_among_the_alternatives():
    reply = {"text": "Nice!", "sticker": _sticker("cake"), "mood": {"joy": 1.0},
             "alternatives": [_sticker("party"), _sticker("balloon")]}
    swapped = swap_sticker(reply, 1)
    assert swapped["sticker"]["label"] == "balloon"
    assert [a["label"] for a in swapped["alternatives"]] == ["party", "cake"]
    assert swap_sticker(swapped, 1) == reply  # a second click swaps back
    message = bot_message(swapped)
    assert message["content"][1] == {"path": "/packs/balloon.webp", "alt_text": "balloon"}
    no_sticker = swap_sticker({**reply, "sticker": None}, 0)
    assert no_sticker["sticker"]["label"] == "party"
    assert [a["label"] for a in no_sticker["alternatives"]] == ["balloon"]


def test_a_loaded_mod_conversation_continues_with_the_bot_as_the_other_speaker(tmp_path):
    mod = tmp_path / "dialogue.json"
    mod.write_text(json.dumps({"dialogue 1": [
        {"speaker_id": "[speaker1]", "txt": "今天考试没考好", "emotion_id": 3},
        {"speaker_id": "[speaker2]", "txt": "别难过", "img_id": "42"},
        {"speaker_id": "[speaker1]", "txt": "谢谢你"}]}, ensure_ascii=False), "utf-8")
    history = history_from_dialogue(read_conversations(str(mod))[0])
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    turns = dialogue_from_history(history).turns
    assert turns[0] == Turn("user", "今天考试没考好")
    assert "[sticker: meme 42]" in turns[1].text
    transcript = tmp_path / "chat.txt"
    transcript.write_text("A: hi\nB: hello\n\nA: second chat\nB: yes\n")
    assert [len(d.turns) for d in read_conversations(str(transcript))] == [2, 2]
    with pytest.raises(ValueError, match="no conversation file"):
        read_conversations(str(tmp_path / "missing.json"))
