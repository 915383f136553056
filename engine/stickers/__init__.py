"""Stickers: the library and its packs, media decoding and ingest, OCR, the image tower, index
versions, the usage prior, the selector that ranks, the sticker emotion head and the recipes
that train them. Arrows: into the engine's floor and ``engine.training``, never up."""

from engine import lazy_exports

EXPORTS = {"Sticker": "library", "StickerLibrary": "library", "load_pack": "library",
           "IngestError": "ingest", "IngestReport": "ingest", "Limits": "ingest", "build_pack": "ingest",
           "StickerOCR": "ocr", "LitTower": "image", "TowerMismatch": "image",
           "create_image_tower": "image", "StickerIndex": "index", "Selector": "selector",
           "emotion_fit": "selector", "StickerEmotionHead": "emotion_head", "usage_prior": "usage"}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
