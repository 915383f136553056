"""Losses the trainable models share (emotion recognisers, the response selector)."""

from __future__ import annotations

import numpy as np
import torch


def class_weights(distributions: np.ndarray) -> torch.Tensor:
    """sqrt-inverse frequency from label rows: rare emotions count more, without drowning
    neutral."""
    counts = distributions.sum(axis=0) + 1.0
    weights = np.sqrt(counts.sum() / (len(counts) * counts))
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def in_batch_contrastive(predicted: torch.Tensor, actual: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """InfoNCE: each row of ``predicted`` should be nearest (cosine) to the same row of
    ``actual``, the other rows of the batch being the negatives."""
    logits = torch.nn.functional.normalize(predicted, dim=-1) @ \
        torch.nn.functional.normalize(actual, dim=-1).T / temperature
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(logits)))


def soft_cross_entropy(logits: torch.Tensor, target: np.ndarray, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against label distributions; rows of zeros (no label) are left out."""
    target = torch.from_numpy(np.ascontiguousarray(target, np.float32))
    known = target.sum(-1) > 0
    if not known.any():
        return logits.sum() * 0.0
    per_class = -target[known] * logits[known].log_softmax(-1) * weights
    return per_class.sum(-1).mean()
