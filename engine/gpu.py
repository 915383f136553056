"""GPU work on Hugging Face ZeroGPU: one helper, a no-op everywhere else.

On a ZeroGPU Space the ``spaces`` package is importable and a GPU is attached only while a
function decorated with ``spaces.GPU`` runs, in a worker forked from the app; its arguments
and result cross the process boundary pickled. So the models are placed on ``cuda`` when the
engine loads them (ZeroGPU defers the move until a worker holds a GPU), and the GPU work goes
through the two decorated functions below, which take plain data: the key of an object placed
here (the worker inherits this table, so no model and no engine is ever pickled), the name of
its method, and texts or token ids. They return numpy arrays and strings, never CUDA tensors.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable)
EMBED_SECONDS = 30  # ZeroGPU's budget for one batch of texts or pictures
GENERATE_SECONDS = 60  # and for one reply


def gpu_task(duration: int = 60) -> Callable[[F], F]:
    """``spaces.GPU(duration=duration)`` on ZeroGPU, else the function itself."""
    try:
        import spaces
    except ImportError:
        return lambda function: function
    return spaces.GPU(duration=duration)


def job_device(device: str) -> str:
    """Where a training job (a separate process) may run: ZeroGPU lends its GPUs only to the
    app's decorated functions, so there a job runs on the CPU; elsewhere on the app's device."""
    return "cpu" if os.environ.get("SPACES_ZERO_GPU") else device


_placed: dict[int, object] = {}


def run(owner, method: str, *args):
    """``owner.method(*args)``, inside a GPU task when ``owner.on_gpu``."""
    if not getattr(owner, "on_gpu", False):
        return getattr(owner, method)(*args)
    return _call(_place(owner), method, *args)


def run_stream(owner, method: str, *args) -> Iterator:
    """Like ``run`` for a method that yields (a reply streamed piece by piece)."""
    if not getattr(owner, "on_gpu", False):
        return getattr(owner, method)(*args)
    return _stream(_place(owner), method, *args)


def _place(owner) -> int:
    _placed[id(owner)] = owner
    return id(owner)


@gpu_task(EMBED_SECONDS)
def _call(key: int, method: str, *args):
    return getattr(_placed[key], method)(*args)


@gpu_task(GENERATE_SECONDS)
def _stream(key: int, method: str, *args):
    yield from getattr(_placed[key], method)(*args)
