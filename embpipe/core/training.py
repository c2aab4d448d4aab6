"""Contrastive fine-tuning of a sentence-transformers model: weighted InfoNCE with early stopping.

Each example is (query, positive, hard negatives, weight). A batch scores every query against every
positive and negative in the batch (in-batch negatives) at ``scale`` = 1 / temperature (50 ↔ 0.02); the
per-example cross-entropy is weighted (LMAR validator scores) and averaged. Batches never hold the same
positive twice, so an in-batch negative is never a copy of the positive. After each epoch the model is
scored on validation; the best checkpoint (epoch 0 = the base model) is restored at the end.

With a ``checkpoint`` path, the state after every epoch (weights, optimizer, scheduler, best weights,
history) is written there atomically; a later call with the same path resumes after the last finished epoch
and replays the batch order, so an interrupted training ends where an uninterrupted one would. The caller
keys the path by everything that defines the training (data, settings, base model) and deletes it after.

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
from pathlib import Path

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

    epochs: int = 5
    batch_size: int = 8
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    scale: float = 50.0
    patience: int = 2
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


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a crash leaves the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".partial")
    torch.save(state, staging)
    staging.replace(path)


def train_contrastive(
    model,
    examples: Sequence[TrainingExample],
    score: Callable[[object], float],
    params: TrainingParams,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint: Path | None = None,
) -> TrainingOutcome:
    """Train ``model`` in place; it ends holding the weights of its best validation epoch."""
    from transformers import get_linear_schedule_with_warmup

    if not examples:
        raise ValueError("no training examples: generate synthetic queries first (or raise the question budget)")
    random.seed(params.seed)
    torch.manual_seed(params.seed)
    rng = random.Random(params.seed)
    model.eval()
    steps = len(duplicate_free_batches(examples, params.batch_size, random.Random(params.seed))) * params.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(params.warmup_ratio * steps), max(steps, 1))
    stale, done = 0, 0
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=model.device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        outcome, best_state, stale, done = saved["outcome"], saved["best_state"], saved["stale"], saved["epoch"]
        torch.set_rng_state(saved["torch_rng"])
        for _ in range(done):  # replay the batch order of the finished epochs
            duplicate_free_batches(examples, params.batch_size, rng)
        logger.info("resuming training after epoch %d from %s", done, checkpoint)
    else:
        outcome = TrainingOutcome(base_score=score(model), best_score=0.0, best_epoch=0)
        outcome.best_score = outcome.base_score
        best_state = copy.deepcopy(model.state_dict())
    finished = done > 0 and (stale >= params.patience or done >= params.epochs)
    for epoch in range(done + 1, params.epochs + 1):
        if finished:
            break
        started = time.perf_counter()
        loss = train_epoch(
            model, duplicate_free_batches(examples, params.batch_size, rng), optimizer, scheduler, params.scale
        )
        record = EpochRecord(epoch, loss, score(model), time.perf_counter() - started)
        outcome.history.append(record)
        if record.score > outcome.best_score:
            outcome.best_score, outcome.best_epoch, stale = record.score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        finished = stale >= params.patience
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "outcome": outcome,
                    "best_state": best_state,
                    "stale": stale,
                    "epoch": epoch,
                    "torch_rng": torch.get_rng_state(),
                },
            )
        if on_epoch:
            on_epoch(record)
    model.load_state_dict(best_state)
    return outcome
