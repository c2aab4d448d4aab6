"""Distil a stronger embedder's geometry into the student before it trains on the teacher's labels.

A guide model (any sentence-transformers model; EmbeddingGemma-300M through ``embpipe fetch-models``) embeds
every document, chunk and pseudo-query of the corpus (the training questions, the teacher-free pairs' queries;
never an evaluation query), with its own query and document prompts. The student is the base with one linear
layer to the guide's width and a normalisation: the layer is first fitted in closed form (ridge least squares
from the frozen base's embeddings to the guide's), then the whole student is tuned end to end on the
sentence-transformers trainer to match the guide's embeddings (``EmbedDistillLoss``, cosine distance: for unit
vectors half their squared error), in batches of similar length. One vector per text is far more signal than
one soft score per (question, passage) pair: on techqa the distilled MiniLM scored 0.7689 nDCG@10 against the
base's 0.7345, and 0.7721 after the teacher's labels (``benchmarks/results/recipe-sweep-techqa-distil.json``).

Resumable: the guide's embeddings are cached in the work folder, each epoch is checkpointed, and the finished
student is saved there, so an interrupted run pays for none of them twice.

Example:
    >>> texts = distillation_texts(passages, queries)  # doctest: +SKIP
    >>> student, outcome = distilled_student(base, guide_loader, texts, DistillationParams(), folder)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sentence_transformers.base.sampler import DefaultBatchSampler
from transformers import PrinterCallback, TrainerCallback

from embpipe.core.embedding import embedding_dimension, encode, encode_with_progress, load_model, role_prompt
from embpipe.core.training.interpolation import mixed_weights
from embpipe.core.training.trainer import TrainingParams, last_checkpoint, trainer_arguments

logger = logging.getLogger(__name__)
DISTILLED_FOLDER = "distilled"  # the finished student, in the work folder
TARGETS_FILE = "guide-targets.npz"
HEAD_FILE = "least-squares-head.pt"  # the layer the distillation starts from


@dataclass(frozen=True)
class DistillationParams:
    """The distillation's optimisation settings (the ones measured on techqa)."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    ridge: float = 1e-2  # of the least-squares layer
    seed: int = 42
    share: float = 1.0  # w in w × distilled + (1 − w) × the least-squares start (the probe's halfway mix: 0.5)


@dataclass(frozen=True)
class DistillationTexts:
    """The corpus' distinct texts by role: passages (documents and chunks, as embedded) and pseudo-queries."""

    documents: tuple[str, ...]
    queries: tuple[str, ...]


@dataclass
class DistillationOutcome:
    """What the distillation did: texts learnt, the guide's and the training's seconds, each epoch's loss."""

    texts: int
    guide_seconds: float
    seconds: float
    epoch_losses: list[float] = field(default_factory=list)


def distillation_texts(passages: Iterable[str], queries: Iterable[str]) -> DistillationTexts:
    """Distinct, non-blank passages and queries, in first-seen order.

    >>> distillation_texts(["a", "b", "a", " "], ["q", "q"])
    DistillationTexts(documents=('a', 'b'), queries=('q',))
    """
    distinct = lambda texts: tuple(dict.fromkeys(t for t in texts if t and t.strip()))  # noqa: E731
    return DistillationTexts(distinct(passages), distinct(queries))


def texts_key(texts: DistillationTexts, guide_id: str, max_seq_length: int) -> str:
    """What the guide's embeddings depend on: the guide, its sequence length and the texts."""
    payload = json.dumps([guide_id, max_seq_length, texts.documents, texts.queries])
    return hashlib.sha256(payload.encode()).hexdigest()


def guide_targets(load_guide: Callable[[], object], texts: DistillationTexts, cache: Path, key: str) -> np.ndarray:
    """The guide's normalised embeddings of the documents (document prompt) then the queries (query prompt);
    read from ``cache`` when it holds them for ``key`` (the guide is then never loaded)."""
    if cache.is_file():
        stored = np.load(cache)
        if str(stored["key"]) == key:
            return stored["targets"]
    guide, log = load_guide(), lambda message: logger.info("guide: %s", message)
    parts = [
        encode_with_progress(guide, list(rows), 16, log, 512, role)
        for role, rows in (("document", texts.documents), ("query", texts.queries))
        if rows
    ]
    targets = np.vstack(parts).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=np.array(key), targets=targets)
    return targets


def projection(width: int, guide_width: int):
    """A linear layer (with bias, no activation) from the student's width to the guide's."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Dense

    return Dense(width, guide_width, activation_function=torch.nn.Identity())


def least_squares_head(sources: np.ndarray, targets: np.ndarray, ridge: float):
    """A linear layer from the student's width to the guide's, fitted by ridge least squares (with a bias)."""
    import torch

    ones = np.hstack([sources, np.ones((len(sources), 1), dtype=np.float32)]).astype(np.float64)
    gram = ones.T @ ones + ridge * np.eye(ones.shape[1])
    weights = np.linalg.solve(gram, ones.T @ targets.astype(np.float64)).astype(np.float32)
    dense = projection(sources.shape[1], targets.shape[1])
    with torch.no_grad():
        dense.linear.weight.copy_(torch.from_numpy(weights[:-1].T.copy()))
        dense.linear.bias.copy_(torch.from_numpy(weights[-1].copy()))
    return dense


def start_head(model, texts: list[str], targets: np.ndarray, params: DistillationParams, folder: Path):
    """The least-squares layer the distillation starts from, fitted once and kept in ``folder``. A resumed run's
    epoch checkpoint holds the trained layer, so it needs the fitted one only to mix back towards it."""
    import torch

    saved = folder / HEAD_FILE
    head = projection(embedding_dimension(model), targets.shape[1])
    if saved.is_file():
        head.load_state_dict(torch.load(saved))
        return head
    if last_checkpoint(folder / "trainer") is not None and params.share == 1.0:
        return head
    head = least_squares_head(encode(model, texts, 64), targets, params.ridge)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head.state_dict(), saved)
    return head


def with_head(model, head):
    """``model`` followed by ``head`` and a normalisation, as one sentence-transformers model."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize

    student = SentenceTransformer(modules=[*model, head, Normalize()], device=str(model.device))
    student.max_seq_length = model.max_seq_length
    if getattr(model, "prompts", None):
        student.prompts = dict(model.prompts)
    return student


def prompted(model, texts: DistillationTexts) -> list[str]:
    """The texts as the student reads them: each with the student's own prompt for its role, if it has one."""
    document, query = role_prompt(model, "document") or "", role_prompt(model, "query") or ""
    return [document + t for t in texts.documents] + [query + t for t in texts.queries]


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Shuffled batches of texts of similar length (little padding): the rows are shuffled (seeded by the seed
    and epoch), sorted by length within blocks of 50 batches, cut into batches, and the batches shuffled."""

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        lengths = [len(text) for text in self.sampler["text"]]
        yield from length_grouped_batches(lengths, self.batch_size, rng)


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Every row once, in batches of similar length.

    >>> batches = length_grouped_batches([5, 1, 9, 2, 8, 3], 2, random.Random(0))
    >>> sorted(i for b in batches for i in b), [len(b) for b in batches]
    ([0, 1, 2, 3, 4, 5], [2, 2, 2])
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    block = batch_size * 50
    batches = []
    for start in range(0, len(order), block):
        part = sorted(order[start : start + block], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def distil_into(
    student, texts: list[str], targets: np.ndarray, params: DistillationParams, folder: Path
) -> list[float]:
    """Tune ``student`` end to end on the trainer so its embeddings of ``texts`` match ``targets``; each epoch
    is checkpointed in ``folder``, where an interrupted call resumes. Returns each epoch's mean loss (none for
    0 epochs: the student is left as it is)."""
    if params.epochs == 0:
        return []
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss

    settings = TrainingParams(
        epochs=params.epochs, batch_size=params.batch_size, learning_rate=params.learning_rate,
        warmup_ratio=params.warmup_ratio, seed=params.seed,
    )  # fmt: skip
    args = trainer_arguments(
        settings, folder, student, save_strategy="epoch", save_total_limit=1, batch_sampler=LengthGroupedBatchSampler
    )
    trainer = SentenceTransformerTrainer(
        model=student,
        args=args,
        train_dataset=Dataset.from_dict({"text": texts, "label": targets}),
        loss=EmbedDistillLoss(student, distance_metric="cosine"),
        callbacks=[StepProgress()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=last_checkpoint(folder))
    student.eval()
    return [round(float(entry["loss"]), 5) for entry in trainer.state.log_history if "loss" in entry]


class StepProgress(TrainerCallback):
    """Logs the step, the steps in all and the elapsed seconds every 50 steps."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % 50 == 0:
            seconds = time.perf_counter() - self.started
            logger.info("distillation step %d/%d, %.0f s", state.global_step, state.max_steps, seconds)


def distilled_student(
    model, load_guide: Callable[[], object], guide_id: str, texts: DistillationTexts, params: DistillationParams,
    folder: Path,
):  # fmt: skip
    """``model`` with a least-squares layer to the guide's width, tuned end to end on the guide's embeddings of
    ``texts``; with what it took. ``folder`` keeps the guide's embeddings, the epochs and the finished student,
    so a second call with the same folder returns at once and an interrupted one resumes."""
    done = folder / DISTILLED_FOLDER
    if (done / "outcome.json").is_file():
        logger.info("distilled student found in %s", done)
        outcome = DistillationOutcome(**json.loads((done / "outcome.json").read_text()))
        return load_model(str(done), model.max_seq_length, str(model.device)), outcome
    started = time.perf_counter()
    key = texts_key(texts, guide_id, model.max_seq_length)
    targets = guide_targets(load_guide, texts, folder / TARGETS_FILE, key)
    guide_seconds = round(time.perf_counter() - started, 1)
    student_texts = prompted(model, texts)
    student = with_head(model, start_head(model, student_texts, targets, params, folder))
    mixing = params.share != 1.0  # part of the way back to the start: keeps more of what the base knew
    start = {k: v.detach().clone() for k, v in student.state_dict().items()} if mixing else {}
    losses = distil_into(student, student_texts, targets, params, folder / "trainer")
    if mixing:
        student.load_state_dict(mixed_weights(start, student.state_dict(), params.share))
    outcome = DistillationOutcome(len(targets), guide_seconds, round(time.perf_counter() - started, 1), losses)
    student.save(str(done))
    (done / "outcome.json").write_text(json.dumps(outcome.__dict__))
    return student, outcome
