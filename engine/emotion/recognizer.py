"""Emotion recognition in conversation (ERC): an utterance, read with the turn before it, → a
distribution over Ekman-7 emotions and over sentiment-3.

A MiniLM sentence encoder (mean pooling, as sentence-transformers does it) reads the pair
(previous turn, utterance) and two linear heads answer. ``fit_recognizer`` fine-tunes the
encoder's top ``tuned_layers`` with the heads, in batches of similar length. Without a
fine-tuned recognizer the engine recognizes turns with the pre-recognizer's light turn view
(``engine.emotion.prerecognizer``), which costs nothing beyond the sentence embedding.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.dialogue import Dialogue
from engine.encoders import MODEL_LOADING
from engine.schemes import EKMAN7, scheme
from engine.training.losses import class_weights, soft_cross_entropy

log = logging.getLogger(__name__)
SENTIMENT3 = scheme("sentiment3").labels
MAX_TOKENS = 64


def turn_text(dialogue: Dialogue, index: int) -> str:
    turn = dialogue.turns[index]
    return f"{turn.speaker}: {turn.content()}" if turn.speaker else turn.content()


def utterance_pairs(dialogue: Dialogue) -> list[tuple[str, str]]:
    """(previous turn, this turn's words) for every turn: what the recognizer reads."""
    return [(turn_text(dialogue, i - 1) if i else "", dialogue.turns[i].content())
            for i in range(len(dialogue.turns))]


@dataclass
class Recognition:
    emotion: np.ndarray  # (n, 7) over EKMAN7
    sentiment: np.ndarray  # (n, 3) over SENTIMENT3

    def features(self) -> np.ndarray:
        return np.concatenate([self.emotion, self.sentiment], axis=1)


class Recognizer(torch.nn.Module):
    def __init__(self, encoder_path: str, tuned_layers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.encoder_path = encoder_path
        with MODEL_LOADING:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(encoder_path)
            self.encoder = AutoModel.from_pretrained(encoder_path)
        dim = self.encoder.config.hidden_size
        with torch.random.fork_rng():  # the heads start alike in every run: a fit repeats
            torch.manual_seed(seed)
            self.emotion_head = torch.nn.Linear(dim, len(EKMAN7))
            self.sentiment_head = torch.nn.Linear(dim, len(SENTIMENT3))
        self.tuned_layers = tuned_layers
        self._freeze()

    def _freeze(self) -> None:
        """Only the top ``tuned_layers`` transformer layers learn (0: heads only)."""
        layers = self.encoder.encoder.layer
        for name, parameter in self.encoder.named_parameters():
            parameter.requires_grad = any(name.startswith(f"encoder.layer.{i}.")
                                          for i in range(len(layers) - self.tuned_layers, len(layers)))

    def embed(self, pairs: list[tuple[str, str]]) -> torch.Tensor:
        contexts, utterances = zip(*pairs)
        batch = self.tokenizer(list(utterances), list(contexts) if any(contexts) else None,
                               truncation="longest_first", max_length=MAX_TOKENS,
                               padding=True, return_tensors="pt")
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.embed(pairs)
        return self.emotion_head(pooled), self.sentiment_head(pooled)

    @torch.inference_mode()
    def recognize_pairs(self, pairs: list[tuple[str, str]], batch_size: int = 64) -> Recognition:
        self.eval()
        emotion = np.zeros((len(pairs), len(EKMAN7)), np.float32)
        sentiment = np.zeros((len(pairs), len(SENTIMENT3)), np.float32)
        for rows in length_batches(pairs, batch_size):
            emotion_logits, sentiment_logits = self([pairs[i] for i in rows])
            emotion[rows] = emotion_logits.softmax(-1).numpy()
            sentiment[rows] = sentiment_logits.softmax(-1).numpy()
        return Recognition(emotion, sentiment)

    def recognize(self, dialogue: Dialogue) -> Recognition:
        """Each turn's emotion, read with the turn before it."""
        return self.recognize_pairs(utterance_pairs(dialogue))

    def save(self, folder: Path) -> None:
        """Heads always; the encoder's tuned layers only when some were tuned."""
        folder.mkdir(parents=True, exist_ok=True)
        tuned = {name: value.half() for name, value in self.state_dict().items()
                 if name.startswith(("emotion_head", "sentiment_head"))
                 or any(name.startswith(f"encoder.encoder.layer.{i}.")
                        for i in range(len(self.encoder.encoder.layer) - self.tuned_layers,
                                       len(self.encoder.encoder.layer)))}
        torch.save({"state": tuned, "tuned_layers": self.tuned_layers}, folder / "recognizer.pt")

    @classmethod
    def load(cls, folder: Path, encoder_path: str) -> "Recognizer":
        saved = torch.load(Path(folder) / "recognizer.pt", weights_only=True)
        model = cls(encoder_path, saved["tuned_layers"])
        model.load_state_dict({k: v.float() for k, v in saved["state"].items()}, strict=False)
        return model.eval()


def length_batches(pairs: list[tuple[str, str]], batch_size: int,
                   rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Batches of similar length, so little compute goes to padding (about half, on MELD);
    shuffled in chunks when ``rng`` is given (training)."""
    lengths = np.array([len(a) + len(b) for a, b in pairs])
    order = np.argsort(lengths + (rng.uniform(0, 8, len(pairs)) if rng is not None else 0),
                       kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


@dataclass
class Labelled:
    """Training data: pairs and their gold (or soft) labels."""

    pairs: list[tuple[str, str]]
    emotion: np.ndarray  # (n, 7) distributions (one-hot for gold labels)
    sentiment: np.ndarray  # (n, 3)

    @classmethod
    def from_dialogues(cls, dialogues: list[Dialogue]) -> "Labelled":
        """Gold Ekman-7 emotions and sentiments of every turn (MELD)."""
        emotions, sentiments = scheme("ekman7"), scheme("sentiment3")
        pairs, emotion, sentiment = [], [], []
        for dialogue in dialogues:
            pairs += utterance_pairs(dialogue)
            emotion += [emotions.one_hot(turn.emotion) for turn in dialogue.turns]
            sentiment += [sentiments.one_hot(turn.sentiment) for turn in dialogue.turns]
        return cls(pairs, np.stack(emotion), np.stack(sentiment))

    def subset(self, rows: np.ndarray) -> "Labelled":
        return Labelled([self.pairs[i] for i in rows], self.emotion[rows], self.sentiment[rows])


def fit_recognizer(model: Recognizer, data: Labelled, epochs: int = 2, batch_size: int = 32,
                   lr: float = 5e-5, head_lr: float = 2e-3, balanced: bool = False, seed: int = 0,
                   max_seconds: float | None = 600, progress=log.info) -> dict:
    """Fine-tune (soft-label cross-entropy on both heads), stopping at ``max_seconds`` (None:
    never); returns what it did."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    heads = [*model.emotion_head.parameters(), *model.sentiment_head.parameters()]
    tuned = [p for p in model.encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW([{"params": heads, "lr": head_lr},
                                   {"params": tuned, "lr": lr}], weight_decay=0.01)
    steps = epochs * -(-len(data.pairs) // batch_size)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay
        optimiser, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup + 1))))
    emotion_weights, sentiment_weights = (
        (class_weights(data.emotion), class_weights(data.sentiment)) if balanced
        else (torch.ones(len(EKMAN7)), torch.ones(len(SENTIMENT3))))
    started, step = time.perf_counter(), 0
    model.train()
    for epoch in range(epochs):
        for rows in length_batches(data.pairs, batch_size, rng):
            emotion, sentiment = model([data.pairs[i] for i in rows])
            loss = soft_cross_entropy(emotion, data.emotion[rows], emotion_weights) + \
                soft_cross_entropy(sentiment, data.sentiment[rows], sentiment_weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step % 50 == 0:
                progress(f"recognizer epoch {epoch + 1}/{epochs}, step {step}/{steps}, "
                         f"loss {loss.item():.3f}")
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                log.warning("recognizer fit stopped at its time budget (%ss)", max_seconds)
                model.eval()
                return {"epochs": epoch + 1, "steps": step, "stopped_early": True}
    model.eval()
    return {"epochs": epochs, "steps": step, "stopped_early": False}
