"""Emotion: reading the emotion of a conversation's turns and forecasting the next one (the
pre-recognizer, TCMP's idea), the recognizer, and the recipes that train them. Arrows: into the
engine's floor and ``engine.training``, never up."""

from engine import lazy_exports

EXPORTS = {"ConversationEmotion": "conversation", "DescribedEmotion": "conversation",
           "NadeEmotion": "conversation", "EmotionReading": "conversation",
           "forecast_mood": "conversation", "PreRecognizer": "prerecognizer",
           "Recognizer": "recognizer", "Recognition": "recognizer"}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
