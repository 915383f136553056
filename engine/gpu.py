"""GPU work on Hugging Face ZeroGPU: one helper, a no-op everywhere else.

On a ZeroGPU Space the ``spaces`` package is importable and a GPU is attached only while a
function decorated with ``spaces.GPU`` runs. ``gpu_task(duration)`` applies it when ``spaces``
is there and returns the function unchanged otherwise, so the same code runs on a CPU, a GPU
machine and ZeroGPU. ZeroGPU runs the decorated function in a worker and passes its arguments
and result between processes: decorate functions of plain data (a dialogue in, a reply out),
never a method of the engine, so nothing pickles the engine or its models.
"""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def gpu_task(duration: int = 60) -> Callable[[F], F]:
    """``spaces.GPU(duration=duration)`` on ZeroGPU, else the function itself."""
    try:
        import spaces
    except ImportError:
        return lambda function: function
    return spaces.GPU(duration=duration)
