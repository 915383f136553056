"""memeui's engine: stickers, emotion, chat and training behind one facade. Never imports gradio.

Every name loads on first use (PEP 562), so ``from engine import Settings`` costs no torch: a
command that needs no model starts at once. Concept packages: ``engine.stickers``,
``engine.emotion``, ``engine.chat``, ``engine.training``, ``engine.evaluation``.
"""

from __future__ import annotations

import importlib
from typing import Callable

EXPORTS = {"Dialogue": "dialogue", "Reply": "dialogue", "SearchResult": "dialogue", "Turn": "dialogue",
           "Engine": "engine", "ReplyError": "chat.backends", "Settings": "settings"}
__all__ = sorted(EXPORTS)


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A package's ``__getattr__`` that imports ``exports[name]`` (a module under ``package``)
    the first time ``name`` is asked for; any other name is an ordinary missing attribute, so
    ``from package import submodule`` still imports the submodule."""
    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
    return __getattr__


__getattr__ = lazy_exports(__name__, EXPORTS)
