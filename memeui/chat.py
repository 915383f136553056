"""The Chat tab: a conversation with the meme bot, whose turns carry text, a sticker and a mood."""

from __future__ import annotations

import gradio as gr

from engine import Dialogue, Engine, Reply, Turn
from engine.dialogue import check_message

MOOD_PREFIX = "mood: "


def dialogue_from_history(history: list[dict]) -> Dialogue:
    """Rebuild the engine's dialogue from Gradio's message list (stickers by their alt text)."""
    turns = []
    for message in history or []:
        texts, sticker = [], ""
        for block in _blocks(message.get("content")):
            if block.get("type") == "text" and not block["text"].startswith(MOOD_PREFIX):
                texts.append(block["text"])
            elif block.get("type") == "file":
                sticker = block.get("alt_text") or ""
        speaker = "bot" if message.get("role") == "assistant" else "user"
        turns.append(Turn(speaker, " ".join(texts), sticker))
    return Dialogue(tuple(turns))


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


def mood_summary(mood: dict[str, float], top: int = 2) -> str:
    best = sorted(mood.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{label} {probability:.0%}" for label, probability in best)


def build_chat_tab(engine: Engine) -> None:
    def respond(message: str, history: list[dict]):
        try:
            text = check_message(message)
        except ValueError as error:
            raise gr.Error(str(error), duration=5) from None
        reply = engine.chat(dialogue_from_history(history).then(Turn("user", text)))
        user = {"role": "user", "content": [{"type": "text", "text": text}]}
        return [*history, user, bot_message(reply)], reply.to_dict(), ""

    chatbot = gr.Chatbot(label="Meme bot", height=520, elem_id="chatbot",
                         placeholder="Say something: the bot answers with text and a sticker.")
    with gr.Row():
        message = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                             scale=5, elem_id="chat-input", max_length=2000)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
    with gr.Accordion("Last turn: mood, alternatives, timings", open=False):
        details = gr.JSON(label="reply", elem_id="chat-details")
    clear = gr.Button("Clear conversation", size="sm")

    for trigger, api_name in ((message.submit, "chat"), (send.click, False)):
        trigger(respond, [message, chatbot], [chatbot, details, message], api_name=api_name,
                concurrency_id="reply", concurrency_limit=2)
    clear.click(lambda: ([], None), None, [chatbot, details], api_name="clear_chat",
                queue=False)
