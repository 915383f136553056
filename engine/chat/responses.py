"""Response selection: how well a message answers a dialogue (MOD's text-response selection).

A dual encoder on the engine's sentence vectors: the dialogue's vector (its last turns, recent
ones weighing more) is mapped by one learned matrix into the space of replies, and a reply
scores by its cosine there. Trained contrastively (in-batch negatives) on consecutive turns of
``chitchat-dataset`` conversations, and MOD's Chinese dialogues when given (``--data``); one
conversation in ten (by a hash of its id) is held out for ``memeui eval replies``. One weights
file per text encoder. It ranks the retrieval backend's corpus replies and checks that a
generated reply is about the user's message.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.dialogue import Dialogue
from engine.corpora import chitchat_split, mod_split
from engine.encoders import EMOTION_SPACE, encode_dialogues, recency_vector
from engine.training.losses import in_batch_contrastive
from engine.paths import RESPONSE_WEIGHTS

log = logging.getLogger(__name__)
CONTEXT_TURNS = 2  # turns of context a dialogue's vector reads, as in the retrieval corpus


@dataclass
class Pairs:
    """(context vector, reply vector) of consecutive turns, and which conversation each is from."""

    contexts: np.ndarray
    replies: np.ndarray
    texts: list[str]
    conversation: np.ndarray


def pairs_of(dialogues: list[Dialogue], turn_vectors: list[np.ndarray]) -> Pairs:
    contexts, replies, texts, conversation = [], [], [], []
    for number, (dialogue, vectors) in enumerate(zip(dialogues, turn_vectors)):
        for i in range(1, len(dialogue.turns)):
            contexts.append(recency_vector(vectors[max(0, i - CONTEXT_TURNS):i]))
            replies.append(vectors[i])
            texts.append(dialogue.turns[i].text)
            conversation.append(number)
    return Pairs(np.stack(contexts).astype(np.float32), np.stack(replies).astype(np.float32),
                 texts, np.array(conversation))


class ResponseSelector:
    """score(context, reply) = cos(context · W, reply); W starts as the identity (plain
    cosine), so an untrained selector is the zero-shot baseline."""

    def __init__(self, dim: int, weights: np.ndarray | None = None, encoder: str = "",
                 floor: float = -1.0) -> None:
        self.map = np.eye(dim, dtype=np.float32) if weights is None else weights.astype(np.float32)
        self.encoder = encoder
        self.floor = floor  # below this a reply is not about the dialogue (see ``fit``)

    def queries(self, contexts: np.ndarray) -> np.ndarray:
        mapped = np.atleast_2d(contexts) @ self.map
        return mapped / np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)

    def scores(self, contexts: np.ndarray, replies: np.ndarray) -> np.ndarray:
        """(n_contexts, n_replies) cosines in the learned space."""
        return self.queries(contexts) @ np.atleast_2d(replies).T

    def fit(self, pairs: Pairs, epochs: int = 8, batch_size: int = 512, lr: float = 1e-3,
            temperature: float = 0.05, seed: int = 0, progress=log.info) -> dict:
        """InfoNCE with the other replies of the batch as negatives; then ``floor``: the score
        that 95 % of true replies reach (a reply scoring below it is off topic)."""
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        weights = torch.nn.Parameter(torch.from_numpy(self.map.copy()))
        optimiser = torch.optim.Adam([weights], lr=lr)
        contexts, replies = torch.from_numpy(pairs.contexts), torch.from_numpy(pairs.replies)
        started = time.perf_counter()
        for epoch in range(epochs):
            losses = []
            for rows in np.array_split(rng.permutation(len(contexts)), max(1, len(contexts) // batch_size)):
                rows = torch.from_numpy(rows)
                loss = in_batch_contrastive(contexts[rows] @ weights, replies[rows], temperature)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
            progress(f"response selector epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f}")
        self.map = weights.detach().numpy().copy()
        true_scores = np.sum(self.queries(pairs.contexts) * pairs.replies, axis=1)
        self.floor = float(np.quantile(true_scores, 0.05))
        return {"epochs": epochs, "pairs": len(contexts), "loss": round(float(np.mean(losses)), 4),
                "floor": round(self.floor, 4), "fit_seconds": round(time.perf_counter() - started, 1)}

    def save(self, path: Path = RESPONSE_WEIGHTS, info: dict | None = None) -> None:
        torch.save({"map": torch.from_numpy(self.map).half(), "encoder": self.encoder,
                    "floor": self.floor, "info": info or {}}, path)

    @classmethod
    def load(cls, encoder_key: str, dim: int, path: Path | None = None) -> ResponseSelector:
        """The selector trained for this encoder (``TextEncoder.key``); else plain cosine (a
        log line says so), whose floor is the loosest (every reply passes)."""
        path = path or weights_file(encoder_key)
        if Path(path).is_file():
            saved = torch.load(path, weights_only=True)
            if saved["encoder"] == encoder_key and saved["map"].shape[0] == dim:
                return cls(dim, saved["map"].float().numpy(), encoder_key, float(saved["floor"]))
            log.info("%s was trained for the %r text encoder; replies are ranked by plain "
                     "cosine with %r", Path(path).name, saved["encoder"], encoder_key)
        else:
            log.info("no response selector for the %r text encoder (`memeui train replies` "
                     "writes %s); replies are ranked by plain cosine", encoder_key, Path(path).name)
        return cls(dim, encoder=encoder_key)


def weights_file(encoder_key: str) -> Path:
    """Where the response selector of a text encoder lives (MiniLM's is bundled)."""
    if encoder_key == EMOTION_SPACE:
        return RESPONSE_WEIGHTS
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_key)
    return RESPONSE_WEIGHTS.with_name(f"response-selector-{safe}.pt")


def against_plain_cosine(selector: ResponseSelector, pairs: Pairs) -> dict:
    """R10@1 and MRR of ``selector`` next to the untrained baseline, on the same pairs."""
    return {"selection": r10_at_1(selector, pairs),
            "plain_cosine": r10_at_1(ResponseSelector(pairs.contexts.shape[1]), pairs)}


def r10_at_1(selector: ResponseSelector, pairs: Pairs, seed: int = 0) -> dict:
    """In percent: the true reply ranked first among itself and 9 replies drawn from other
    conversations (R10@1, as in MOD's text-response selection and the Ubuntu corpus), and MRR
    over those ten."""
    rng = np.random.default_rng(seed)
    firsts, reciprocal = [], []
    for i in range(len(pairs.texts)):
        others = rng.choice(np.flatnonzero(pairs.conversation != pairs.conversation[i]), 9,
                            replace=False)
        scores = selector.scores(pairs.contexts[i], pairs.replies[[i, *others]])[0]
        rank = 1 + int(np.sum(scores[1:] >= scores[0]))
        firsts.append(rank == 1)
        reciprocal.append(1.0 / rank)
    return {"r10_at_1": round(100 * float(np.mean(firsts)), 2),
            "mrr": round(100 * float(np.mean(reciprocal)), 2), "n": len(firsts)}


def encoded_pairs(encoder, dialogues: list[Dialogue], cache: Path | None) -> Pairs:
    return pairs_of(dialogues, [e.vectors for e in encode_dialogues(encoder, dialogues, cache)])


def train_response_selector(encoder, out: Path | None = None, conversations: int | None = None,
                            cache: Path | None = None, mod: Path | None = None,
                            progress=log.info) -> dict:
    """Fit on chitchat's training conversations (and MOD's, from ``mod``); measure plain
    cosine and the fitted selector on the held-out ones (R10@1, MRR; MOD's apart); save with
    those figures, by default where the engine loads this encoder's selector."""
    train, held = chitchat_split(conversations)
    mod_train, mod_held = mod_split(mod)
    progress(f"embedding {sum(len(d.turns) for d in train + held + mod_train + mod_held)} turns "
             f"of {len(train) + len(mod_train)} + {len(held) + len(mod_held)} conversations")
    pairs = encoded_pairs(encoder, train + mod_train, cache)
    held_pairs = encoded_pairs(encoder, held, cache)
    mod_pairs = encoded_pairs(encoder, mod_held, cache) if mod_held else None
    selector = ResponseSelector(pairs.contexts.shape[1], encoder=encoder.key)
    info = {**selector.fit(pairs, progress=progress), "conversations": len(train),
            "mod_conversations": len(mod_train), "heldout_conversations": len(held),
            "encoder": encoder.key}
    for name, held_out_pairs in (("heldout", held_pairs), ("mod_heldout", mod_pairs)):
        if held_out_pairs is not None:  # plain cosine is the selector before fitting
            figures = against_plain_cosine(selector, held_out_pairs)
            info |= {name: figures["selection"], f"{name}_zero_shot": figures["plain_cosine"]}
    if mod_pairs is not None:
        info["mod_heldout_conversations"] = len(mod_held)
    selector.save(out or weights_file(encoder.key), info)
    return info
