"""Sticker ranking over one live index version: plain data in (a query vector, the last turn's
text, the mood), ranked rows with their score parts out.

What one request reads is a ``LiveVersion``: a library and the index built from it, always a
matching pair, so a request finishes on the version it started with while a new one goes live.
The candidates are the index's nearest stickers to the dialogue, the most used ones, and, with
a fine-tuned selector, the nearest to its learned query too; the selector then fuses text
similarity (IEF's QC), picture similarity (QI), emotion fit (PBR) and the usage prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.stickers.index import StickerIndex
from engine.stickers.library import StickerLibrary
from engine.stickers.selector import Selector

CANDIDATES = 64  # stickers fetched from the index before emotion re-ranking


@dataclass(frozen=True)
class LiveVersion:
    """What one request reads: a library and the index built from it, always a matching pair."""

    library: StickerLibrary
    index: StickerIndex
    usage: np.ndarray  # each index row's usage prior (engine/stickers/usage.py)
    popular: np.ndarray  # the rows people use most, scored for every query (their prior may
    popular_vectors: np.ndarray  # lift them above stickers whose words match better)

    @classmethod
    def of(cls, library: StickerLibrary, index: StickerIndex, usage: np.ndarray, dim: int) -> "LiveVersion":
        popular = np.argsort(-usage, kind="stable")[:CANDIDATES] if len(usage) else np.zeros(0, int)
        vectors = np.stack([index.index.reconstruct(int(row)) for row in popular]) \
            if len(popular) else np.zeros((0, dim), np.float32)
        return cls(library, index, usage, popular, vectors)


@dataclass(frozen=True)
class Ranked:
    """One ranked sticker: its index row, total score and each part of it."""

    row: int
    score: float
    parts: dict[str, float]


def rank(live: LiveVersion, selector: Selector, query: np.ndarray, last_turn: str, mood: np.ndarray,
         k: int, keep: Callable[[np.ndarray], np.ndarray] | None = None,
         image_similarity: Callable[[np.ndarray], np.ndarray | None] = lambda rows: None) -> list[Ranked]:
    """The ``k`` best stickers for a dialogue's ``query`` vector (``last_turn``: the text the
    selector's n-grams read). ``keep(rows)`` narrows the candidates (an emotion filter; the
    pool grows eightfold for it); ``image_similarity(rows)`` is dialogue ↔ picture, or None."""
    pool = max(k, CANDIDATES) * (8 if keep else 1)
    scores, rows, vectors = candidates(live, selector, query, last_turn, pool)
    if keep:
        kept = keep(rows)
        scores, rows = scores[kept], rows[kept]
        vectors = vectors[kept] if vectors is not None else None
    parts = selector.score_parts(
        [last_turn], scores[None, :], mood[None, :],
        [live.index.sticker_ids[row] for row in rows], live.index.emotions[rows],
        sticker_vectors=lambda: vectors if vectors is not None else
        np.stack([live.index.index.reconstruct(int(r)) for r in rows]),
        dialogue_vectors=lambda: query[None, :],
        image_similarity=image_similarity(rows),
        usage=live.usage[rows])
    total = selector.combine(parts)[0]
    order = np.argsort(-total)[:k]
    return [Ranked(int(rows[i]), float(total[i]), {name: float(part[0, i]) for name, part in parts.items()})
            for i in order]


def candidates(live: LiveVersion, selector: Selector, query: np.ndarray, last_turn: str,
               pool: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(text similarity, row, vectors or None) of the stickers worth scoring: the index's
    nearest to the dialogue, the most used ones, and, with a fine-tuned selector, the
    nearest to its learned query too (their vectors, which its adapter reads, come along)."""
    scores, rows = live.index.search(query[None, :], pool)
    scores, rows = scores[0][rows[0] >= 0], rows[0][rows[0] >= 0]  # -1: fewer hits than asked
    more = ~np.isin(live.popular, rows)
    scores = np.concatenate([scores, live.popular_vectors[more] @ query])
    rows = np.concatenate([rows, live.popular[more]])
    if not selector.trained:
        return scores, rows, None
    learned = selector.w_text * query + selector.adapter_queries([last_turn], query[None, :])[0]
    _, found = live.index.search(learned[None, :], pool)
    rows = np.unique(np.concatenate([rows, found[0][found[0] >= 0]]))
    vectors = np.stack([live.index.index.reconstruct(int(row)) for row in rows])
    return vectors @ query, rows, vectors
