"""LMAR stage 1: candidate triplets from the base model's neighbourhoods, and triplet-margin tuning.

An anchor chunk is sampled; two distinct candidates are drawn at random from its top-K neighbours (itself
and exact copies excluded); the teacher later says which is closer. Tuning minimises the triplet margin
loss on cosine distance of normalised embeddings, max(0, d(a, p) - d(a, n) + margin), weighted per triplet.

Example:
    >>> import numpy as np
    >>> vectors = np.eye(4, dtype=np.float32)
    >>> len(candidate_triplets(vectors, 2, k=3, seed=0))
    2
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from embpipe.core.retrieval import top_k
from embpipe.core.training import embed_batch


@dataclass(frozen=True)
class TripletParams:
    """Triplet tuning settings."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    margin: float = 0.3
    seed: int = 42


@dataclass(frozen=True)
class TextTriplet:
    """Anchor, the passage judged closer, the other one, and the loss weight (the teacher's confidence)."""

    anchor: str
    positive: str
    negative: str
    weight: float = 1.0


def candidate_triplets(vectors: np.ndarray, anchors: int, k: int, seed: int) -> list[tuple[int, int, int]]:
    """(anchor, first, second) row triples: ``anchors`` distinct anchors, candidates from each one's top-``k``."""
    count = len(vectors)
    if count < 3:
        return []
    rng = np.random.default_rng(seed)
    chosen = rng.choice(count, size=min(anchors, count), replace=False)
    neighbours = top_k(vectors[chosen], vectors, min(k + 1, count))
    triples = []
    for row, anchor in enumerate(chosen.tolist()):
        pool = [int(i) for i in neighbours.indices[row] if int(i) != anchor][:k]
        if len(pool) >= 2:
            first, second = rng.choice(len(pool), size=2, replace=False).tolist()
            triples.append((anchor, pool[first], pool[second]))
    return triples


def triplet_loss(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, weights, margin: float):
    """Weighted mean of max(0, d(a, p) - d(a, n) + margin) with d = 1 - cosine (inputs L2-normalised)."""
    closer = 1 - (anchors * positives).sum(dim=-1)
    farther = 1 - (anchors * negatives).sum(dim=-1)
    losses = torch.clamp(closer - farther + margin, min=0)
    weights = torch.as_tensor(weights, dtype=losses.dtype, device=losses.device)
    return (losses * weights).sum() / weights.sum().clamp(min=1e-12)


def train_triplets(model, triplets: Sequence[TextTriplet], params: TripletParams) -> list[float]:
    """Tune ``model`` in place on ``triplets``; returns the mean loss of each epoch."""
    if not triplets:
        raise ValueError("no labelled triplets: every teacher verdict was ambiguous or failed")
    torch.manual_seed(params.seed)
    rng = random.Random(params.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate)
    history = []
    for _ in range(params.epochs):
        order = list(triplets)
        rng.shuffle(order)
        model.train()
        total, batches = 0.0, 0
        for start in range(0, len(order), params.batch_size):
            batch = order[start : start + params.batch_size]
            loss = triplet_loss(
                embed_batch(model, [t.anchor for t in batch]),
                embed_batch(model, [t.positive for t in batch]),
                embed_batch(model, [t.negative for t in batch]),
                [t.weight for t in batch],
                params.margin,
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        model.eval()
        history.append(total / max(batches, 1))
    return history
