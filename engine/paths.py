"""Every file the project ships and the engine reads, named once (assets/ and its licences)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS = PROJECT_ROOT / "assets"

DEFAULT_PACK = ASSETS / "stickers" / "fluent-emoji-3d"  # the bundled sticker pack

# models trained by the project's own recipes (``memeui train …``)
DEFAULT_PRERECOGNIZER = ASSETS / "models" / "prerecognizer"
LIT_WEIGHTS = ASSETS / "models" / "lit-image-tower.pt"
RESPONSE_WEIGHTS = ASSETS / "models" / "response-selector.pt"  # MiniLM's
THRESHOLD_FILE = ASSETS / "models" / "sticker-threshold.json"

# labels people wrote for the project: public checks of the gate, regression sets, priors
STICKER_EMOTIONS = ASSETS / "labels" / "sticker_emotions.csv"  # id,emotion
UTTERANCE_EMOTIONS = ASSETS / "labels" / "utterance_emotions.csv"
STICKER_CHOICES = ASSETS / "labels" / "sticker_choices.csv"  # messages → stickers a person would send
EMOJI_USAGE = ASSETS / "labels" / "emoji_usage.json"  # how often people send each emoji
KAOMOJI_EMOTIONS = ASSETS / "labels" / "kaomoji_emotions.json"  # feeling words → Ekman-7, learnt
CHINESE_MOODS_DEV = ASSETS / "labels" / "chinese_moods_dev.csv"  # Chinese messages → emotion, to choose the Chinese mood reader by

# folders of a data dir (MEMEUI_DATA_DIR) that commands read without loading an engine
REGISTRY_DIR = "registry"  # model versions and which is live
JOBS_DIR = "jobs"  # one folder per training job: its record, arguments and log
# folders of a data dir that the engine writes once per key (by rename) and reads after
INDEX_DIR = "index"  # sticker index versions
MODELS_DIR = "models"  # models derived from bundled ones: ONNX exports, de-quantized GGUFs
CACHE_DIR = "cache"  # embeddings of corpora and evaluation splits, sticker features
