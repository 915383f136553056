"""The Chat tab: a conversation with the meme bot, whose turns carry text, a sticker and a mood.

Replies stream in; the next-best stickers sit under the chat and a click swaps one in; likes,
dislikes and swaps are recorded as best-sticker labels in the store (``annotations.feedback``).
Users can send stickers from the library or pictures of their own, undo a turn, regenerate a
reply, and load a conversation (MOD JSON or a transcript) to continue it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import gradio as gr

from annotations.feedback import Feedback
from engine import Dialogue, Engine, Reply, ReplyError, Turn
from engine.corpora import read_conversations
from engine.dialogue import check_message
from memeui.limits import Admission, RateLimit
from memeui.search import for_api

MOOD_PREFIX = "mood: "
ERROR_TITLE = "No reply"  # failed turns show under this title and are not part of the dialogue
MAX_HISTORY_TURNS = 40  # the models read only the last few turns of a chat
MAX_HISTORY_MESSAGE_CHARS = 4000  # a user's message is at most 2000; a bot reply is shorter
CHAT_CONCURRENCY = 16  # turns at once; backends bound their own generation slots


def dialogue_from_history(history: list[dict]) -> Dialogue:
    """Rebuild the engine's dialogue from a message list: the Chatbot's (stickers by their alt
    text) or an API client's (``{"role", "content", "sticker"?}`` with plain-text content)."""
    if history is None:
        history = []
    if not isinstance(history, list) or not all(isinstance(m, dict) for m in history):
        raise ValueError('The history must be a list of messages, each {"role": "user" or '
                         '"assistant", "content": text}.')
    turns = []
    for message in history:
        if (message.get("metadata") or {}).get("title") == ERROR_TITLE:
            continue
        texts, sticker = [], ""
        for block in _blocks(message.get("content")):
            if block.get("type") == "text" and not block["text"].startswith(MOOD_PREFIX):
                texts.append(block["text"])
            elif block.get("type") == "file" or "path" in block:
                sticker = block.get("alt_text") or ""
        sticker = _sticker_text(message.get("sticker")) or sticker
        speaker = "bot" if message.get("role") == "assistant" else "user"
        text = " ".join(texts)
        if len(text) > MAX_HISTORY_MESSAGE_CHARS:
            raise ValueError(f"A message in the history is {len(text)} characters long; the "
                             f"limit is {MAX_HISTORY_MESSAGE_CHARS}.")
        turns.append(Turn(speaker, text, sticker))
    return Dialogue(tuple(turns[-MAX_HISTORY_TURNS:]))


def _sticker_text(sticker) -> str:
    """API clients name a sticker by its label, or pass back the sticker object of a reply."""
    return sticker.get("label", "") if isinstance(sticker, dict) else (sticker or "")


def _blocks(content) -> list[dict]:
    """Normalise a message's content (a string, one block or a list of blocks) to blocks."""
    items = content if isinstance(content, list) else [content]
    blocks = [{"type": "text", "text": item} if isinstance(item, str) else item
              for item in items if item]
    if not all(isinstance(b, dict) and isinstance(b.get("text", ""), str) for b in blocks):
        raise ValueError("A message's content must be text, or a list of text and file blocks.")
    return blocks


def bot_message(reply: dict) -> dict:
    """A reply (as ``reply_for_api`` gives it) as a Chatbot message."""
    content: list = [{"type": "text", "text": reply["text"]}]
    if reply["sticker"]:
        content.append({"path": reply["sticker"]["file"], "alt_text": reply["sticker"]["label"]})
    content.append({"type": "text", "text": MOOD_PREFIX + mood_summary(reply["mood"])})
    return {"role": "assistant", "content": content}


def reply_for_api(reply: Reply) -> dict:
    details = reply.to_dict()
    details["sticker"] = for_api(details["sticker"]) if details["sticker"] else None
    details["alternatives"] = [for_api(alt) for alt in details["alternatives"]]
    return details


def mood_summary(mood: dict[str, float], top: int = 2) -> str:
    best = sorted(mood.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{label} {probability:.0%}" for label, probability in best)


def alternatives_gallery(reply: dict | None) -> list[tuple[str, str]]:
    return [(alt["file"], f"{alt['emoji']} {alt['label']}".strip())
            for alt in (reply or {}).get("alternatives", [])]


def swap_sticker(reply: dict, choice: int) -> dict:
    """The reply with alternative ``choice`` as its sticker; the old sticker (if any) takes
    the alternative's place, so a second click can swap back."""
    alternatives = list(reply["alternatives"])
    picked = alternatives.pop(choice)
    if reply["sticker"]:
        alternatives.insert(choice, reply["sticker"])
    return {**reply, "sticker": picked, "alternatives": alternatives}


def history_from_dialogue(dialogue: Dialogue) -> list[dict]:
    """A loaded conversation as chat messages: whoever spoke last is the user, the bot
    plays everyone else, so it answers next."""
    last = dialogue.turns[-1].speaker
    return [{"role": "user" if turn.speaker == last else "assistant",
             "content": [{"type": "text", "text": turn.content()}]} for turn in dialogue.turns]


def _text_of(content) -> str:
    return " ".join(b["text"] for b in _blocks(content) if b.get("type") == "text")


def build_chat_tab(engine: Engine, record: Callable[..., None]) -> tuple[gr.Dropdown, Callable[[], gr.Dropdown]]:
    """The tab's components and events; ``record(*labels)`` keeps likes, dislikes and swaps.
    Returns the sticker picker and what fills it (the app runs it at page load, so packs
    added since show up)."""
    settings = engine.settings
    admission = Admission(settings.chat_slots, settings.chat_waiting, settings.reply_timeout)
    chat_rate = RateLimit(settings.chat_per_minute, "chat messages")

    def run_turn(history: list[dict], replies: dict, restore: str = ""):
        """Stream the bot's answer to ``history``; yields (chat, details, replies,
        alternatives, message box). A failed turn shows why and gives the message back."""
        try:
            dialogue = dialogue_from_history(history)
        except ValueError as error:
            raise gr.Error(str(error), duration=5) from None
        try:
            for step in engine.chat_stream(dialogue):
                if isinstance(step, str):
                    yield [*history, {"role": "assistant", "content": step}], *[gr.skip()] * 4
        except ReplyError as error:
            failed = {"role": "assistant", "content": str(error),
                      "metadata": {"title": ERROR_TITLE}}
            yield [*history, failed], None, replies, [], restore
            return
        reply = reply_for_api(step)
        replies = {**_kept(replies, len(history)), len(history): reply}
        yield [*history, bot_message(reply)], reply, replies, alternatives_gallery(reply), ""

    def respond(message: str, history: list[dict], replies: dict, request: gr.Request):
        chat_rate.check(request)
        try:
            text = check_message(message)
        except ValueError as error:
            raise gr.Error(str(error), duration=5) from None
        if not isinstance(history, list) or not isinstance(replies, (dict, type(None))):
            raise gr.Error("The history must be a list of messages.", duration=5)
        user = {"role": "user", "content": [{"type": "text", "text": text}]}
        yield from run_turn([*history, user], replies or {}, restore=message)

    def send_sticker(sticker_id: str | None, history: list[dict], replies: dict):
        sticker = engine.library().by_id.get(sticker_id or "")
        if sticker is None:
            raise gr.Error("Pick a sticker to send first.", duration=5)
        yield from run_turn([*history, _picture_message(sticker.path, sticker.text())], replies)

    def send_picture(path: str | None, history: list[dict], replies: dict):
        if not path:
            raise gr.Error("Choose a picture to send.", duration=5)
        try:
            text = engine.describe_image(Path(path))
        except ValueError as error:
            raise gr.Error(f"{Path(path).name}: {error}", duration=8) from None
        yield from run_turn([*history, _picture_message(path, text)], replies)

    def chat(message: str, history: list[dict] | None = None, request: gr.Request = None) -> dict:
        """The bot's reply to MESSAGE after HISTORY, a list of {"role": "user" | "assistant",
        "content": text, "sticker": label (optional)}: text, sticker, mood, alternatives and
        timings. Append the reply as {"role": "assistant", "content": reply["text"],
        "sticker": reply["sticker"]} to continue."""
        chat_rate.check(request)
        try:
            text = check_message(message)
            dialogue = dialogue_from_history(history or []).then(Turn("user", text))
        except ValueError as error:
            raise gr.Error(str(error)) from None
        with admission.turn():
            try:
                return reply_for_api(engine.chat(dialogue))
            except (ValueError, ReplyError) as error:
                raise gr.Error(str(error)) from None

    def swap(history: list[dict], replies: dict, selected: gr.SelectData, request: gr.Request):
        index = len(history) - 1
        if index not in replies or not replies[index]["alternatives"]:
            raise gr.Error("Only the last reply's sticker can be swapped.", duration=5)
        old, reply = replies[index], swap_sticker(replies[index], selected.index)
        labels = [verdict(history[:index], reply, reply["sticker"], "picked", request)]
        if old["sticker"]:
            labels.append(verdict(history[:index], reply, old["sticker"], "replaced", request))
        record(*labels)
        history = [*history[:index], bot_message(reply)]
        return history, reply, {**replies, index: reply}, alternatives_gallery(reply)

    def rate(history: list[dict], replies: dict, liked: gr.LikeData, request: gr.Request):
        index = liked.index if isinstance(liked.index, int) else liked.index[0]
        reply = replies.get(index)
        if reply is None:
            return
        record(verdict(history[:index], reply, reply["sticker"],
                       "like" if liked.liked else "dislike", request))
        gr.Info("Thanks: noted.", duration=2)

    def retry(history: list[dict], replies: dict, again: gr.RetryData):
        yield from run_turn(history[: again.index + 1], replies)

    def undo(history: list[dict], replies: dict, undone: gr.UndoData):
        return (history[: undone.index], _kept(replies, undone.index), [],
                _text_of(undone.value))

    def load(path: str | None):
        try:
            dialogues = read_conversations(path) if path else []
        except (ValueError, OSError, KeyError, TypeError) as error:
            raise gr.Error(f"Could not read that conversation: {error}", duration=8) from None
        if not dialogues:
            raise gr.Error("That file holds no conversation.", duration=5)
        return history_from_dialogue(dialogues[0]), None, {}, []

    replies = gr.State({})  # index of a bot message in the chat → its reply, for swaps and likes
    chatbot = gr.Chatbot(label="Meme bot", height=520, elem_id="chatbot",
                         placeholder="Say something: the bot answers with text and a sticker.")
    with gr.Row():
        message = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                             scale=5, elem_id="chat-input", max_length=2000)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
    gr.Markdown("Other stickers for the last reply: click one to swap", elem_id="chat-alternatives-title")
    alternatives = gr.Gallery(show_label=False, columns=8, rows=1, height=150, object_fit="contain",
                              allow_preview=False, elem_id="chat-alternatives")
    with gr.Accordion("Send a sticker or a picture, load a conversation", open=False):
        with gr.Row():
            picker = gr.Dropdown([], label="A sticker from the library", scale=3,
                                 elem_id="chat-picker")
            send_picked = gr.Button("Send sticker", scale=1)
        with gr.Row():
            picture = gr.Image(type="filepath", label="Your own picture (its text is read)",
                               height=160, sources=["upload", "clipboard"])
            conversation = gr.File(label="A conversation to continue (MOD JSON or transcript)",
                                   file_types=[".json", ".txt"], type="filepath")
        send_own = gr.Button("Send picture")
    with gr.Accordion("Last turn: mood, alternatives, timings", open=False):
        details = gr.JSON(label="reply", elem_id="chat-details")
    clear = gr.Button("Clear conversation", size="sm")

    turn_outputs = [chatbot, details, replies, alternatives, message]
    queue = {"concurrency_id": "reply", "concurrency_limit": CHAT_CONCURRENCY}
    gr.api(chat, api_name="chat", queue=False)  # request → reply: no queue round trips
    for trigger, api_name in ((message.submit, "respond"), (send.click, False)):
        trigger(respond, [message, chatbot, replies], turn_outputs, api_name=api_name, **queue)
    send_picked.click(send_sticker, [picker, chatbot, replies], turn_outputs, api_name=False, **queue)
    send_own.click(send_picture, [picture, chatbot, replies], turn_outputs, api_name=False, **queue)
    chatbot.retry(retry, [chatbot, replies], turn_outputs, api_name=False, **queue)
    chatbot.undo(undo, [chatbot, replies], [chatbot, replies, alternatives, message], api_name=False)
    chatbot.like(rate, [chatbot, replies], None, api_name=False)
    alternatives.select(swap, [chatbot, replies], [chatbot, details, replies, alternatives],
                        api_name=False)
    conversation.upload(load, conversation, [chatbot, details, replies, alternatives], api_name=False)
    clear.click(lambda: ([], None, {}, []), None, [chatbot, details, replies, alternatives],
                api_name="clear_chat", queue=False)

    def picker_choices() -> gr.Dropdown:
        library = engine.library()
        return gr.Dropdown(choices=[(f"{s.emoji} {s.label}".strip(), s.id) for s in library.stickers])

    return picker, picker_choices


def _picture_message(path, text: str) -> dict:
    return {"role": "user", "content": [{"path": str(path), "alt_text": text}]}


def _kept(replies: dict, length: int) -> dict:
    """The replies still in a chat cut to ``length`` messages."""
    return {index: reply for index, reply in replies.items() if index < length}


def verdict(before: list[dict], reply: dict, sticker: dict | None, kind: str,
            request: gr.Request | None) -> Feedback:
    """A label on ``reply`` (after the messages ``before`` it) and one of its stickers."""
    said = [turn.content() for turn in dialogue_from_history(before).turns] + [reply["text"]]
    who = f"session-{request.session_hash}" if request and request.session_hash else "api"
    shown = [s["id"] for s in [reply["sticker"], *reply["alternatives"]] if s]
    return Feedback(said, sticker["id"] if sticker else "", kind, who, reply["text"],
                    shown=tuple(shown))
