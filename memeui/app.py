"""The Blocks app: one tab per capability, all sharing one Engine."""

from __future__ import annotations

import gradio as gr

from annotations.feedback import FeedbackLog
from engine import Engine
from memeui.chat import build_chat_tab
from memeui.emotion import build_emotion_tab
from memeui.library import build_library_tab
from memeui.search import build_search_tab

TITLE = "memeui · chat with stickers"
CSS = """
#chatbot img { max-height: 160px; width: auto; }  /* stickers, not posters */
#chat-alternatives .grid-container { grid-template-columns: repeat(auto-fill, 110px) !important; }
"""
FEEDBACK_FILE = "feedback.jsonl"  # likes, dislikes and sticker swaps, under MEMEUI_DATA_DIR
QUEUE_SIZE = 64  # requests waiting beyond this are refused ("queue is full") instead of piling up
MAX_UPLOAD = "200mb"  # per file; ingest limits then apply per sticker


def build_app(engine: Engine) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"## {TITLE}")
        with gr.Tab("Chat"):
            feedback = FeedbackLog(engine.settings.data_dir / FEEDBACK_FILE)
            picker, picker_choices = build_chat_tab(engine, feedback)
        with gr.Tab("Search"):
            build_search_tab(engine)
        with gr.Tab("Emotion"):
            build_emotion_tab(engine)
        with gr.Tab("Library"):
            build_library_tab(engine)
        demo.load(picker_choices, None, picker, api_name=False, queue=False)
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def launch(demo: gr.Blocks, engine: Engine, host: str | None = None, port: int | None = None,
           **kwargs):
    """Serve the app; sticker files are the only local files it hands to browsers."""
    return demo.launch(
        server_name=host, server_port=port,
        allowed_paths=[str(path) for path in engine.settings.packs] + [str(engine.user_packs_dir)],
        max_file_size=MAX_UPLOAD,
        theme=gr.themes.Soft(), css=CSS, show_error=True, **kwargs,
    )
