"""Emotion pre-recognition (TCMP, text only): the emotion of the utterance nobody has said yet.

Each past turn is read as its sentence embedding, a light recognizer's view of it (emotion and
sentiment from that embedding) and who said it relative to the next speaker; a GRU runs over
the turns; the forecast head reads the GRU state plus what the next speaker felt last time they
spoke and what the last turn felt. Pre-training (``pretrain``) is TCMP's contrastive objective on
unlabelled dialogues: from the state after turn t, pick turn t+1's embedding out of the batch.
``fit`` then learns the labels; the per-turn heads learn from the context turns' own labels at
the same time (a linear map of a frozen embedding, so it cannot memorise its training turns).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.encoders import Encoded
from engine.metrics import macro_f1
from engine.schemes import EKMAN7
from engine.emotion.recognizer import SENTIMENT3
from engine.training.losses import class_weights, in_batch_contrastive, soft_cross_entropy

log = logging.getLogger(__name__)
VIEW = len(EKMAN7) + len(SENTIMENT3)  # a turn's recognized emotion + sentiment
MAX_TURNS = 24  # the forecast reads the latest turns only
HIDDEN = 128


@dataclass
class Targets:
    """Labels of a dialogue's turns as distributions: one-hot (gold), soft (weak labels), or a
    row of zeros where a turn has none."""

    emotion: np.ndarray  # (turns, 7) distributions, rows of zeros where unknown
    sentiment: np.ndarray  # (turns, 3)


def speaker_features(speakers: list[str], next_speaker: str) -> np.ndarray:
    """Per turn: spoken by the next speaker? by the same speaker as the turn before?"""
    return np.array([[float(s == next_speaker), float(i > 0 and s == speakers[i - 1])]
                     for i, s in enumerate(speakers)], dtype=np.float32).reshape(-1, 2)


def _last_by(speakers: list[str], who: str) -> int:
    for i in range(len(speakers) - 1, -1, -1):
        if speakers[i] == who:
            return i
    return -1


class PreRecognizer(torch.nn.Module):
    def __init__(self, dim: int = 384, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.dim = dim
        self.turn_view = torch.nn.Linear(dim, VIEW)  # the light recognizer
        self.turn_in = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(dim + VIEW + 2, hidden),
                                           torch.nn.GELU())
        self.gru = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.start = torch.nn.Parameter(torch.zeros(hidden))  # the state before any turn
        self.predict_next = torch.nn.Linear(hidden, dim)  # TCMP's contrastive pre-training head
        features = hidden + 2 * VIEW + 2
        self.emotion_head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(features, len(EKMAN7)))
        self.sentiment_head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(features, len(SENTIMENT3)))

    def views(self, vectors: torch.Tensor) -> torch.Tensor:
        """Each turn's recognized emotion and sentiment, as distributions (…, 10)."""
        logits = self.turn_view(vectors)
        return torch.cat([logits[..., :len(EKMAN7)].softmax(-1),
                          logits[..., len(EKMAN7):].softmax(-1)], dim=-1)

    def states(self, vectors: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """GRU states after each turn, with the start state in front: (batch, turns + 1, hidden)."""
        views = self.views(vectors).detach()
        inputs = self.turn_in(torch.cat([vectors, views, speaker], dim=-1))
        start = self.start.expand(len(vectors), 1, -1)
        output, _ = self.gru(inputs, start.transpose(0, 1).contiguous())
        return torch.cat([start, output], dim=1)

    def heads(self, state: torch.Tensor, next_view: torch.Tensor, last_view: torch.Tensor,
              flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.cat([state, next_view, last_view, flags], dim=-1)
        return self.emotion_head(features), self.sentiment_head(features)

    @torch.inference_mode()
    def forecast_replies(self, vectors: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Ekman-7 forecasts of the answer to each of many one-turn conversations (a query, a
        tweet), in batches: what the bot's mood would be after each."""
        self.eval()
        out = []
        for start in range(0, len(vectors), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(vectors[start:start + batch_size], np.float32))[:, None]
            state = self.states(x, torch.zeros(len(x), 1, 2))[:, -1]
            no_view = torch.zeros(len(x), VIEW)
            emotion, _ = self.heads(state, no_view, self.views(x[:, 0]), torch.zeros(len(x), 2))
            out.append(emotion.softmax(-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(EKMAN7)), np.float32)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"state": {k: v.half() for k, v in self.state_dict().items()}, "dim": self.dim,
                    "hidden": self.gru.hidden_size}, folder / "prerecognizer.pt")

    def frozen(self) -> "FrozenPreRecognizer":
        return FrozenPreRecognizer(self)

    @classmethod
    def load(cls, folder: Path) -> "PreRecognizer":
        saved = torch.load(Path(folder) / "prerecognizer.pt", weights_only=True)
        model = cls(saved["dim"], saved.get("hidden", HIDDEN))
        model.load_state_dict({k: v.float() for k, v in saved["state"].items()})
        return model.eval()


class FrozenPreRecognizer:
    """A PreRecognizer as served: its turn view and one dialogue's forecast, in numpy over a
    copy of its weights (the same numbers as ``forecast_all``). A chat turn forecasts one short
    dialogue, where torch spends most of the time in per-operation overhead while holding the
    GIL (0.5–0.7 ms against 0.13 here) and needs a lock; read-only arrays let every session
    forecast at once. Training and batch forecasts stay in torch."""

    def __init__(self, model: PreRecognizer) -> None:
        w = {name: value.detach().float().numpy().copy() for name, value in model.state_dict().items()}
        w = {name: np.ascontiguousarray(value.T) if "weight" in name else value
             for name, value in w.items()}  # (in, out), laid out for x @ w
        self.view = (w["turn_view.weight"], w["turn_view.bias"])
        self.turn_in = (w["turn_in.1.weight"], w["turn_in.1.bias"])
        self.gru_in = (w["gru.weight_ih_l0"], w["gru.bias_ih_l0"])
        self.gru_state = (w["gru.weight_hh_l0"], w["gru.bias_hh_l0"])
        self.start = w["start"]
        self.emotion_head = (w["emotion_head.1.weight"], w["emotion_head.1.bias"])
        self.sentiment_head = (w["sentiment_head.1.weight"], w["sentiment_head.1.bias"])

    def views(self, vectors: np.ndarray) -> np.ndarray:
        """Each turn's recognized emotion and sentiment, as distributions (…, 10)."""
        logits = _affine(vectors, self.view)
        return np.concatenate([_softmax(logits[..., :len(EKMAN7)]),
                               _softmax(logits[..., len(EKMAN7):])], axis=-1)

    def forecast(self, encoded: Encoded, next_speaker: str) -> tuple[np.ndarray, np.ndarray]:
        """(emotion over EKMAN7, sentiment over SENTIMENT3) of ``next_speaker``'s next turn."""
        vectors, speakers = encoded.vectors[-MAX_TURNS:], encoded.speakers[-MAX_TURNS:]
        if not len(speakers):
            emotion = np.eye(len(EKMAN7), dtype=np.float32)[EKMAN7.index("neutral")]
            return emotion, np.eye(3, dtype=np.float32)[SENTIMENT3.index("neutral")]
        vectors = np.asarray(vectors, dtype=np.float32)
        views = self.views(vectors)
        inputs = _gelu(_affine(np.concatenate(
            [vectors, views, speaker_features(speakers, next_speaker)], axis=1), self.turn_in))
        state, hidden = self.start, len(self.start)
        weights, bias = self.gru_state
        for gates_in in _affine(inputs, self.gru_in):  # torch's GRU; gates: reset, update, new
            gates_state = state @ weights + bias
            reset_update = _sigmoid(gates_in[:2 * hidden] + gates_state[:2 * hidden])
            new = np.tanh(gates_in[2 * hidden:] + reset_update[:hidden] * gates_state[2 * hidden:])
            state = new + reset_update[hidden:] * (state - new)
        last = _last_by(speakers, next_speaker)
        next_view = views[last] if last >= 0 else np.zeros(VIEW, np.float32)
        flags = np.array([float(last >= 0), float(speakers[-1] == next_speaker)], np.float32)
        features = np.concatenate([state, next_view, views[-1], flags])
        return (_softmax(_affine(features, self.emotion_head)),
                _softmax(_affine(features, self.sentiment_head)))


def _affine(x: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return x @ weights[0] + weights[1]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


SQRT_HALF = 0.7071067811865476  # a Python float keeps float32 arrays float32 (NumPy 2)


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch's exact GELU, x·Φ(x), with erf by Abramowitz & Stegun 7.1.26 (error < 1.5e-7;
    numpy has no erf)."""
    z = np.abs(x) * SQRT_HALF
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return 0.5 * x * (1.0 + erf)


# ------------------------------------------------------------------ training


def _batches(n: int, size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


def _padded(dialogues: list[Encoded], rows) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn vectors (batch, turns, dim) padded with zeros, and their lengths."""
    chosen = [dialogues[i] for i in rows]
    longest = max(len(d.speakers) for d in chosen)
    x = np.zeros((len(chosen), longest, chosen[0].vectors.shape[1]), dtype=np.float32)
    for row, dialogue in enumerate(chosen):
        x[row, :len(dialogue.speakers)] = dialogue.vectors
    return torch.from_numpy(x), torch.tensor([len(d.speakers) for d in chosen])


def windows(dialogues: list[Encoded], length: int = MAX_TURNS) -> list[Encoded]:
    """Long dialogues cut into overlapping windows the model's length (training only)."""
    out = []
    for d in dialogues:
        for start in range(0, max(1, len(d.speakers) - length // 2), length // 2):
            out.append(Encoded(d.vectors[start:start + length], d.speakers[start:start + length]))
    return out


def pretrain(model: PreRecognizer, dialogues: list[Encoded], epochs: int = 3,
             batch_size: int = 32, temperature: float = 0.05, seed: int = 0,
             max_seconds: float = 300, progress=log.info) -> dict:
    """TCMP's contrastive objective: after turns ≤ t, tell turn t+1 from the batch's others."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dialogues = [d for d in windows(dialogues) if len(d.speakers) >= 2]
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    started, losses = time.perf_counter(), []
    for epoch in range(epochs):
        for rows in _batches(len(dialogues), batch_size, rng):
            x, lengths = _padded(dialogues, rows)
            # pre-training has no next speaker: mark turns by the speaker who speaks after them
            speaker = torch.zeros(*x.shape[:2], 2)
            for row, i in enumerate(rows):
                speakers = dialogues[i].speakers
                for t in range(len(speakers)):
                    speaker[row, t, 0] = float(t + 1 < len(speakers) and speakers[t] == speakers[t + 1])
                    speaker[row, t, 1] = float(t > 0 and speakers[t] == speakers[t - 1])
            states = model.states(x, speaker)[:, 1:-1]  # after turn t, for t < last
            valid = torch.arange(x.shape[1] - 1)[None, :] < (lengths - 1)[:, None]
            loss = in_batch_contrastive(model.predict_next(states[valid]), x[:, 1:][valid],
                                        temperature)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        progress(f"pre-training epoch {epoch + 1}/{epochs}: contrastive loss {np.mean(losses[-50:]):.3f}")
        if time.perf_counter() - started > max_seconds:
            break
    return {"pretrain_epochs": epoch + 1, "pretrain_loss": round(float(np.mean(losses[-50:])), 4),
            "pretrain_dialogues": len(dialogues)}


def fit_turn_view(model: PreRecognizer, dialogues: list[Encoded], targets: list[Targets],
                  epochs: int = 300, lr: float = 0.05) -> float:
    """Train the light recognizer alone first (full batch: a linear map of fixed vectors fits
    in seconds), so the forecaster learns on top of views that already mean something.
    Returns the final loss."""
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate([d.vectors for d in dialogues]), np.float32))
    emotion = np.concatenate([t.emotion for t in targets])
    sentiment = np.concatenate([t.sentiment for t in targets])
    weights = class_weights(emotion), class_weights(sentiment)
    optimiser = torch.optim.Adam(model.turn_view.parameters(), lr=lr)
    for _ in range(epochs):
        logits = model.turn_view(x)
        loss = soft_cross_entropy(logits[:, :len(EKMAN7)], emotion, weights[0]) + \
            soft_cross_entropy(logits[:, len(EKMAN7):], sentiment, weights[1])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return float(loss.detach())


def fit(model: PreRecognizer, dialogues: list[Encoded], targets: list[Targets],
        holdout: float = 0.1, max_epochs: int = 40, batch_size: int = 16, lr: float = 1e-3,
        patience: int = 4, seed: int = 0, max_seconds: float = 300, progress=log.info) -> dict:
    """Learn to forecast every turn t ≥ 1 from the turns before it (P-MELD's construction),
    with the turn heads learning each turn's own label alongside. Early stop on the held-out
    dialogues' sentiment macro-F1."""

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dialogues))
    held, train = order[:max(1, int(len(order) * holdout))], order[max(1, int(len(order) * holdout)):]
    all_emotion = np.concatenate([targets[i].emotion for i in train])
    all_sentiment = np.concatenate([targets[i].sentiment for i in train])
    emotion_weights, sentiment_weights = class_weights(all_emotion), class_weights(all_sentiment)
    view_loss = fit_turn_view(model, [dialogues[i] for i in train], [targets[i] for i in train])
    progress(f"turn view fitted (loss {view_loss:.3f})")
    batch_size = max(2, min(batch_size, len(train) // 20))  # small data still takes many steps
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    best, best_state, stale, started, epoch = -1.0, None, 0, time.perf_counter(), 0
    for epoch in range(max_epochs):
        model.train()
        for rows in _batches(len(train), batch_size, rng):
            chosen = train[rows]
            emotion_logits, sentiment_logits, view_logits, emotion, sentiment, view_emotion, \
                view_sentiment = _forward_all(model, [dialogues[i] for i in chosen],
                                              [targets[i] for i in chosen])
            loss = (soft_cross_entropy(emotion_logits, emotion, emotion_weights)
                    + soft_cross_entropy(sentiment_logits, sentiment, sentiment_weights)
                    + 0.5 * soft_cross_entropy(view_logits[:, :len(EKMAN7)], view_emotion, emotion_weights)
                    + 0.5 * soft_cross_entropy(view_logits[:, len(EKMAN7):], view_sentiment, sentiment_weights))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.inference_mode():
            _, sentiment_logits, _, _, sentiment, _, _ = _forward_all(
                model, [dialogues[i] for i in held], [targets[i] for i in held])
        known = sentiment.sum(1) > 0
        score = macro_f1(sentiment_logits.argmax(1).numpy()[known], sentiment.argmax(1)[known], 3)
        progress(f"pre-recognizer epoch {epoch + 1}: held-out sentiment macro-F1 {100 * score:.1f}")
        if score > best:
            best, stale = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
        if time.perf_counter() - started > max_seconds:
            break
    model.load_state_dict(best_state)
    model.eval()
    return {"epochs": epoch + 1, "holdout_sentiment_macro_f1": round(100 * best, 2),
            "dialogues": len(dialogues)}


def forecast_logits(model: PreRecognizer, dialogue: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """Forecast logits for every turn t ≥ 1 (the next speaker being who really spoke), in turn
    order: P-MELD's examples of one dialogue, each seeing only the turns before it."""
    n = len(dialogue.speakers)
    x = torch.from_numpy(np.ascontiguousarray(dialogue.vectors[:n], np.float32))
    views = model.views(x).detach()
    rows: list[torch.Tensor | None] = [None] * (n - 1)
    # the speaker features depend on who speaks next: one GRU run per distinct next speaker
    for who in dict.fromkeys(dialogue.speakers[1:]):
        states = model.states(x[None], torch.from_numpy(speaker_features(dialogue.speakers, who))[None])[0]
        for t in range(1, n):
            if dialogue.speakers[t] != who:
                continue
            last = _last_by(dialogue.speakers[:t], who)
            next_view = views[last] if last >= 0 else torch.zeros(VIEW)
            flags = torch.tensor([float(last >= 0), float(dialogue.speakers[t - 1] == who)])
            rows[t - 1] = torch.cat([states[t], next_view, views[t - 1], flags])
    if not rows:
        return torch.zeros(0, len(EKMAN7)), torch.zeros(0, len(SENTIMENT3))
    features = torch.stack(rows)
    return model.emotion_head(features), model.sentiment_head(features)


@torch.inference_mode()
def forecast_all(model: PreRecognizer, dialogues: list[Encoded]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities for every turn t ≥ 1 of every dialogue, in order."""
    model.eval()
    outputs = [forecast_logits(model, d) for d in dialogues]
    return (torch.cat([e for e, _ in outputs]).softmax(-1).numpy(),
            torch.cat([s for _, s in outputs]).softmax(-1).numpy())


def _forward_all(model: PreRecognizer, dialogues: list[Encoded], targets: list[Targets]):
    """Forecast logits with their label rows, and the turn heads' logits with theirs."""
    outputs = [forecast_logits(model, d) for d in dialogues]
    views = torch.cat([model.turn_view(torch.from_numpy(np.ascontiguousarray(d.vectors, np.float32)))
                       for d in dialogues])
    return (torch.cat([e for e, _ in outputs]), torch.cat([s for _, s in outputs]), views,
            np.concatenate([t.emotion[1:] for t in targets]),
            np.concatenate([t.sentiment[1:] for t in targets]),
            np.concatenate([t.emotion for t in targets]),
            np.concatenate([t.sentiment for t in targets]))
