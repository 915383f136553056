"""Evaluation: each benchmark task over an Engine (TweetEval emoji, MELD and P-MELD, the
sticker-emotion and sticker-choice regression sets, replies). Imported only by the commands
that run them (``memeui eval``), never by the engine."""

from engine import lazy_exports

EXPORTS = {"EmojiEvaluation": "tasks", "EmotionEvaluation": "tasks", "choice_evaluation": "tasks",
           "sticker_emotion_evaluation": "tasks", "reply_evaluation": "tasks"}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
