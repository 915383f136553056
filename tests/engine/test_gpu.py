"""The GPU paths: ZeroGPU's decorator simulated here (work crosses a pickled process boundary
with plain data only), and the CUDA paths, which skip without a GPU."""

import importlib
import inspect
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from engine import gpu
from engine.dialogue import Dialogue, Turn
from engine.encoders import GPU_BATCH, TextEncoder, create_text_encoder, encoder_weights

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class FakeZeroGPU:
    """``spaces`` as a ZeroGPU Space has it: ``GPU(duration=...)`` runs the function as if in a
    forked worker, pickling its arguments and what it returns or yields."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []  # function, duration, argument bytes

    def GPU(self, duration: int = 60):  # noqa: N802 - the name spaces uses
        def decorate(function):
            def crossed(value):
                assert not isinstance(value, torch.Tensor), "a worker may not return tensors"
                return pickle.loads(pickle.dumps(value))

            def arguments(args):
                sent = pickle.dumps(args)
                self.calls.append((function.__name__, duration, len(sent)))
                return pickle.loads(sent)

            if inspect.isgeneratorfunction(function):
                def streamed(*args):
                    for piece in function(*arguments(args)):
                        yield crossed(piece)
                return streamed
            return lambda *args: crossed(function(*arguments(args)))
        return decorate


@pytest.fixture
def zero_gpu():
    fake = FakeZeroGPU()
    sys.modules["spaces"] = types.SimpleNamespace(GPU=fake.GPU)
    importlib.reload(gpu)
    try:
        yield fake
    finally:
        del sys.modules["spaces"]
        importlib.reload(gpu)


def test_text_encoding_runs_as_a_gpu_task_with_only_texts_crossing(zero_gpu):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(encoder_weights("minilm"), device="cpu")
    texts = ["good morning my friend", "I hate mondays"]
    expected = TextEncoder("minilm", model).encode(texts)
    placed = TextEncoder("minilm", model, on_gpu=True)
    assert placed.batch_size == GPU_BATCH
    assert np.allclose(placed.encode(texts), expected, atol=1e-6)
    (name, duration, sent), = zero_gpu.calls
    assert (name, duration) == ("_call", gpu.EMBED_SECONDS)
    assert sent < 1000  # a key, a method name and two texts: no model, no engine


def test_a_reply_streams_from_a_gpu_task_in_pieces(zero_gpu, smollm2):
    from engine.chat.backends import CausalLMReply

    reply = smollm2  # the session's, loaded once
    assert isinstance(reply, CausalLMReply)
    reply.on_gpu = True  # as on cuda, with the model left on this machine's CPU
    try:
        pieces = list(reply.stream(Dialogue((Turn("user", "I just failed my exam"),)),
                                   np.full(7, 1 / 7)))
    finally:
        reply.on_gpu = False
    assert pieces and all(isinstance(piece, str) for piece in pieces)
    (name, duration, sent), = zero_gpu.calls
    assert (name, duration) == ("_stream", gpu.GENERATE_SECONDS)
    assert sent < 4000  # the prompt's token ids


def test_sticker_pictures_are_embedded_in_a_gpu_task(zero_gpu, engine):
    tower = engine.image_tower.get()
    frames = [[Image.new("RGB", (64, 64), colour)] for colour in ("red", "blue", "green")]
    expected = tower.encode_images(frames)
    assert zero_gpu.calls == []
    tower.on_gpu = True
    try:
        assert np.allclose(tower.encode_images(frames), expected, atol=1e-5)
    finally:
        tower.on_gpu = False
    (name, duration, _), = zero_gpu.calls
    assert (name, duration) == ("_call", gpu.EMBED_SECONDS)


def test_training_jobs_run_on_the_app_device_except_on_zero_gpu(monkeypatch):
    assert gpu.job_device("cuda") == "cuda"
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert gpu.job_device("cuda") == "cpu"


@needs_cuda
def test_on_a_gpu_the_text_encoder_runs_in_half_precision_within_tolerance():
    texts = ["good morning my friend", "I hate mondays", "我今天好开心", "lol " * 60]
    full = create_text_encoder("minilm", "cpu")
    half = create_text_encoder("minilm", "cuda")
    assert half.on_gpu and half.batch_size == GPU_BATCH
    assert next(half._model.parameters()).dtype == torch.float16
    cosines = (full.encode(texts) * half.encode(texts)).sum(axis=1)
    assert cosines.min() > 0.999
    many = half.encode([f"sticker number {i}" for i in range(3 * GPU_BATCH)])
    assert many.shape == (3 * GPU_BATCH, half.dim) and many.dtype == np.float32


@needs_cuda
def test_on_a_gpu_faiss_indexes_move_there_with_faiss_gpu():
    import faiss

    from engine.stickers.index import build_faiss, to_gpu_if_available

    if not hasattr(faiss, "StandardGpuResources"):
        pytest.skip("needs faiss-gpu: pip install .[gpu]")
    vectors = np.random.default_rng(0).normal(size=(2000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_faiss(vectors, "Flat")
    moved = to_gpu_if_available(index)
    assert "Gpu" in type(moved).__name__
    assert (moved.search(vectors[:10], 5)[1] == index.search(vectors[:10], 5)[1]).all()


@needs_cuda
def test_on_a_gpu_a_selector_job_reads_dialogues_there(tmp_path, engine):
    from engine.stickers.recipes import Reader

    reader = Reader("minilm", engine._model_folder("prerecognizer"), "cuda")
    assert reader.encoder.on_gpu
    texts, vectors, moods = reader.features([Dialogue((Turn("user", "good morning"),))])
    assert texts == ["good morning"] and vectors.shape == (1, 384) and moods.shape == (1, 7)
