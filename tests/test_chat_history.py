"""Chat history in both shapes the app receives becomes the same engine Dialogue."""

from engine import Dialogue, Turn
from engine.reply import CONTEXT_TURNS, MOOD_HINTS, build_prompt
from memeui.chat import MOOD_PREFIX, dialogue_from_history, mood_summary


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
