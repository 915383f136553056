"""memeui's engine: stickers, index, emotion, replies. Never imports gradio."""

from engine.dialogue import Dialogue, Reply, SearchResult, Turn
from engine.engine import Engine
from engine.reply import ReplyError
from engine.settings import Settings

__all__ = ["Dialogue", "Engine", "Reply", "ReplyError", "SearchResult", "Settings", "Turn"]
