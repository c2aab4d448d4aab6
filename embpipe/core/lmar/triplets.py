"""LMAR stage 1: candidate triplets from the base model's neighbourhoods, and triplet-margin tuning.

An anchor chunk is sampled; two distinct candidates are drawn at random from its top-K neighbours (itself
and exact copies excluded); the teacher later says which is closer. Tuning minimises the triplet margin
loss on cosine distance of normalised embeddings, max(0, d(a, p) - d(a, n) + margin), weighted per triplet
(``WeightedTripletLoss`` on sentence-transformers' trainer).

Example:
    >>> import numpy as np
    >>> vectors = np.eye(4, dtype=np.float32)
    >>> len(candidate_triplets(vectors, 2, k=3, seed=0))
    2
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embpipe.core.embedding import column_prompts
from embpipe.core.evaluation.retrieval import top_k
from embpipe.core.training.losses import WeightedTripletLoss
from embpipe.core.training.trainer import TrainingParams, trainer_arguments


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


def train_triplets(model, triplets: Sequence[TextTriplet], params: TripletParams) -> list[float]:
    """Tune ``model`` in place on ``triplets`` with the trainer (constant learning rate); the mean loss per epoch."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import PrinterCallback

    if not triplets:
        raise ValueError("no labelled triplets: every teacher verdict was ambiguous or failed")
    rows = {
        "anchor": [t.anchor for t in triplets],
        "positive": [t.positive for t in triplets],
        "negative": [t.negative for t in triplets],
        "label": [float(t.weight) for t in triplets],
    }
    training = TrainingParams(
        epochs=params.epochs, batch_size=params.batch_size, learning_rate=params.learning_rate, warmup_ratio=0.0
    )
    with tempfile.TemporaryDirectory() as scratch:
        args = trainer_arguments(
            training,
            Path(scratch),
            model,
            seed=params.seed,
            lr_scheduler_type="constant",
            save_strategy="no",
            prompts=column_prompts(model, [], ["anchor", "positive", "negative"]),  # three chunks
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(rows),
            loss=WeightedTripletLoss(model, triplet_margin=params.margin),
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    model.eval()
    return [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
