"""Contrastive fine-tuning of a sentence-transformers model: weighted InfoNCE with early stopping.

Each example is (query, positive, hard negatives, weight). A batch scores every query against every
positive and negative in the batch (in-batch negatives) at ``scale`` = 1 / temperature (50 ↔ 0.02); the
per-example cross-entropy is weighted (LMAR validator scores) and averaged. Batches never hold the same
positive twice, so an in-batch negative is never a copy of the positive. After each epoch the model is
scored on validation; the best checkpoint (epoch 0 = the base model) is restored at the end.

Example:
    >>> outcome = train_contrastive(model, examples, score_fn, TrainingParams(epochs=2))  # doctest: +SKIP
    >>> outcome.best_epoch, outcome.best_score  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingExample:
    """One training row: a query, its positive passage, optional hard negatives, a loss weight."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    weight: float = 1.0


@dataclass(frozen=True)
class TrainingParams:
    """Optimisation settings."""

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    scale: float = 50.0
    patience: int = 1
    seed: int = 42


@dataclass
class EpochRecord:
    """What one epoch did."""

    epoch: int
    loss: float
    score: float
    seconds: float


@dataclass
class TrainingOutcome:
    """Base and best validation scores, the best epoch (0 = base kept) and the per-epoch history."""

    base_score: float
    best_score: float
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)


def duplicate_free_batches(
    examples: Sequence[TrainingExample], batch_size: int, rng: random.Random
) -> list[list[TrainingExample]]:
    """Shuffled batches in which no positive text (or query) appears twice."""
    pending = list(examples)
    rng.shuffle(pending)
    batches: list[list[TrainingExample]] = []
    while pending:
        batch, seen, rest = [], set(), []
        for example in pending:
            key_texts = {example.positive, example.query}
            if len(batch) < batch_size and not key_texts & seen:
                batch.append(example)
                seen |= key_texts
            else:
                rest.append(example)
        batches.append(batch)
        pending = rest
    return batches


def weighted_info_nce(
    queries: torch.Tensor, documents: torch.Tensor, weights: torch.Tensor, scale: float
) -> torch.Tensor:
    """InfoNCE where query i's positive is document i; other documents are negatives.

    ``queries`` (B×d) and ``documents`` (N×d, N ≥ B, positives first) are L2-normalised; the per-query
    cross-entropy is weighted by ``weights`` (B) normalised to sum to one.
    """
    logits = scale * queries @ documents.T
    labels = torch.arange(len(queries), device=queries.device)
    losses = F.cross_entropy(logits, labels, reduction="none")
    weights = weights.to(losses.device, losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp(min=1e-12)


def embed_batch(model, texts: list[str]) -> torch.Tensor:
    """Differentiable, L2-normalised embeddings of ``texts``."""
    features = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
    features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
    return F.normalize(model(features)["sentence_embedding"], dim=-1)


def batch_loss(model, batch: list[TrainingExample], scale: float) -> torch.Tensor:
    """The weighted InfoNCE loss of one batch (positives, then every hard negative, as documents)."""
    queries = embed_batch(model, [e.query for e in batch])
    documents = [e.positive for e in batch] + [n for e in batch for n in e.negatives]
    weights = torch.tensor([e.weight for e in batch], dtype=torch.float32)
    return weighted_info_nce(queries, embed_batch(model, documents), weights, scale)


def train_epoch(model, batches, optimizer, scheduler, scale: float) -> float:
    """One pass over ``batches``; returns the mean loss."""
    model.train()
    total = 0.0
    for step, batch in enumerate(batches, start=1):
        loss = batch_loss(model, batch, scale)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach())
        logger.info("step %d/%d loss %.4f", step, len(batches), float(loss.detach()))
    model.eval()
    return total / max(len(batches), 1)


def train_contrastive(
    model,
    examples: Sequence[TrainingExample],
    score: Callable[[object], float],
    params: TrainingParams,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainingOutcome:
    """Train ``model`` in place; it ends holding the weights of its best validation epoch."""
    from transformers import get_linear_schedule_with_warmup

    if not examples:
        raise ValueError("no training examples: generate synthetic queries first (or raise the question budget)")
    random.seed(params.seed)
    torch.manual_seed(params.seed)
    rng = random.Random(params.seed)
    model.eval()
    outcome = TrainingOutcome(base_score=score(model), best_score=0.0, best_epoch=0)
    outcome.best_score = outcome.base_score
    best_state = copy.deepcopy(model.state_dict())
    steps = len(duplicate_free_batches(examples, params.batch_size, random.Random(params.seed))) * params.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(params.warmup_ratio * steps), max(steps, 1))
    stale = 0
    for epoch in range(1, params.epochs + 1):
        started = time.perf_counter()
        loss = train_epoch(
            model, duplicate_free_batches(examples, params.batch_size, rng), optimizer, scheduler, params.scale
        )
        record = EpochRecord(epoch, loss, score(model), time.perf_counter() - started)
        outcome.history.append(record)
        if on_epoch:
            on_epoch(record)
        if record.score > outcome.best_score:
            outcome.best_score, outcome.best_epoch, stale = record.score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= params.patience:
                break
    model.load_state_dict(best_state)
    return outcome
