"""The Chat tab: a conversation with the meme bot, whose turns carry text, a sticker and a mood."""

from __future__ import annotations

import gradio as gr

from engine import Dialogue, Engine, Reply, Turn
from engine.dialogue import check_message
from memeui.search import for_api

MOOD_PREFIX = "mood: "


def dialogue_from_history(history: list[dict]) -> Dialogue:
    """Rebuild the engine's dialogue from a message list: the Chatbot's (stickers by their alt
    text) or an API client's (``{"role", "content", "sticker"?}`` with plain-text content)."""
    turns = []
    for message in history or []:
        texts, sticker = [], ""
        for block in _blocks(message.get("content")):
            if block.get("type") == "text" and not block["text"].startswith(MOOD_PREFIX):
                texts.append(block["text"])
            elif block.get("type") == "file":
                sticker = block.get("alt_text") or ""
        sticker = _sticker_text(message.get("sticker")) or sticker
        speaker = "bot" if message.get("role") == "assistant" else "user"
        turns.append(Turn(speaker, " ".join(texts), sticker))
    return Dialogue(tuple(turns))


def _sticker_text(sticker) -> str:
    """API clients name a sticker by its label, or pass back the sticker object of a reply."""
    return sticker.get("label", "") if isinstance(sticker, dict) else (sticker or "")


def _blocks(content) -> list[dict]:
    """Normalise a message's content (a string, one block or a list of blocks) to blocks."""
    items = content if isinstance(content, list) else [content]
    return [{"type": "text", "text": item} if isinstance(item, str) else item
            for item in items if item]


def bot_message(reply: Reply) -> dict:
    content: list = [{"type": "text", "text": reply.text}]
    if reply.sticker is not None:
        content.append({"path": str(reply.sticker.path), "alt_text": reply.sticker.label})
    content.append({"type": "text", "text": MOOD_PREFIX + mood_summary(reply.mood)})
    return {"role": "assistant", "content": content}


def reply_for_api(reply: Reply) -> dict:
    details = reply.to_dict()
    details["sticker"] = for_api(details["sticker"]) if details["sticker"] else None
    details["alternatives"] = [for_api(alt) for alt in details["alternatives"]]
    return details


def mood_summary(mood: dict[str, float], top: int = 2) -> str:
    best = sorted(mood.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{label} {probability:.0%}" for label, probability in best)


def build_chat_tab(engine: Engine) -> None:
    def take_turn(message: str, history: list[dict]) -> tuple[str, Reply]:
        try:
            text = check_message(message)
        except ValueError as error:
            raise gr.Error(str(error), duration=5) from None
        return text, engine.chat(dialogue_from_history(history).then(Turn("user", text)))

    def respond(message: str, history: list[dict]):
        text, reply = take_turn(message, history)
        user = {"role": "user", "content": [{"type": "text", "text": text}]}
        return [*history, user, bot_message(reply)], reply_for_api(reply), ""

    def chat(message: str, history: list[dict] | None = None) -> dict:
        """The bot's reply to MESSAGE after HISTORY, a list of {"role": "user" | "assistant",
        "content": text, "sticker": label (optional)}: text, sticker, mood, alternatives and
        timings. Append the reply as {"role": "assistant", "content": reply["text"],
        "sticker": reply["sticker"]} to continue."""
        return reply_for_api(take_turn(message, history or [])[1])

    chatbot = gr.Chatbot(label="Meme bot", height=520, elem_id="chatbot",
                         placeholder="Say something: the bot answers with text and a sticker.")
    with gr.Row():
        message = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                             scale=5, elem_id="chat-input", max_length=2000)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
    with gr.Accordion("Last turn: mood, alternatives, timings", open=False):
        details = gr.JSON(label="reply", elem_id="chat-details")
    clear = gr.Button("Clear conversation", size="sm")

    gr.api(chat, api_name="chat", concurrency_id="reply", concurrency_limit=2)
    for trigger, api_name in ((message.submit, "respond"), (send.click, False)):
        trigger(respond, [message, chatbot], [chatbot, details, message], api_name=api_name,
                concurrency_id="reply", concurrency_limit=2)
    clear.click(lambda: ([], None), None, [chatbot, details], api_name="clear_chat",
                queue=False)
