"""Contrastive fine-tuning on sentence-transformers' ``SentenceTransformerTrainer``: weighted InfoNCE.

Each example is (query, positive, hard negatives, weight); it becomes a dataset row (anchor, positive,
negative_1…n, label = weight) for ``WeightedMultipleNegativesRankingLoss``: every query is scored against every
positive and negative of its batch at ``scale`` = 1 / temperature (50 ↔ 0.02). The library's no-duplicates
batch sampler keeps any text from appearing twice in a batch, so an in-batch negative is never a copy of the
positive. After each epoch the trainer scores the model on validation (nDCG@10 through ``score``), keeps the
best epoch's checkpoint and stops early after ``patience`` epochs without a gain over the best epoch so far. The
best epoch's weights are then mixed back towards the base's, ``w`` × tuned + (1 − ``w``) × base,
with ``w`` the one of ``tuned_shares`` that scores best on validation (one share: a fixed mix; 1.0: the epoch as
trained); the base weights are kept (``best_epoch`` 0) only when that mix is clearly worse than the base: a
lower score and, where the scorer gives per-query figures (``per_query``), a paired test that says the drop is
not chance (``clearly_worse``). The teacher's validation questions often copy their passage's words, so the base
scores high on them and a drop of a point on a few dozen of them is noise; a rule that took any drop as a loss
kept the base by coin flip while the hand-written questions preferred the trained model. The blocking
``model_not_worse_than_base`` check applies the same test on a fresh validation sample.

With a ``checkpoint`` folder, the trainer writes a checkpoint there after every epoch (weights, optimizer,
scheduler, random states, log history); a later call with the same folder resumes after the last finished
epoch (``resume_from_checkpoint``), and the sampler's per-epoch seed replays the batch order, so an interrupted
training ends where an uninterrupted one would. The caller keys the folder by everything that defines the
training (data, settings, base model) and deletes it after. Several GPUs: the trainer uses every visible one
(``CUDA_VISIBLE_DEVICES`` chooses), or launch with ``accelerate launch`` / ``torchrun`` for data parallelism.

Example:
    >>> outcome = train_contrastive(model, examples, score_fn, TrainingParams(epochs=2))  # doctest: +SKIP
    >>> outcome.best_epoch, outcome.best_score  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from transformers import PrinterCallback, TrainerCallback

from embpipe.core.embedding import column_prompts
from embpipe.core.training.base_comparison import BaseValidation, base_validation, worse_than_base
from embpipe.core.training.interpolation import mix_with_base
from embpipe.core.training.losses import WeightedMultipleNegativesRankingLoss, embed_texts, weighted_info_nce
from embpipe.core.training.rows import TrainingExample, training_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingParams:
    """Optimisation settings."""

    epochs: int = 4  # techqa: 5 scored -0.0040 (p 0.054) on the same examples (techqa-epochs-5.json)
    batch_size: int = 8
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    scale: float = 50.0
    patience: int = 2
    seed: int = 42
    tuned_shares: tuple[float, ...] = (1.0,)  # w in w × tuned + (1 − w) × base, chosen on validation
    distill_weight: float = 1.0  # weight of the guide's soft labels (only for examples that carry guide scores)
    guide_scale: float = 0.0  # the guide's softmax scale in the soft labels; 0 = ``scale``
    guide_mask: bool = False  # leave out negatives the guide scores at least as high as the positive


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
    tuned_share: float = 1.0  # the kept weights: tuned_share × best epoch + (1 − tuned_share) × base


NEGATIVES_PER_EXAMPLE = 4
VALIDATION_NAME = "validation"
VALIDATION_KEY = "ndcg_at_10"
EVAL_METRIC = f"eval_{VALIDATION_NAME}_{VALIDATION_KEY}"
WEIGHT_DECAY = 0.01  # torch's AdamW default, kept from the first training loop
BASE_SCORE_FILE = "base_score.json"


def distinct_query_and_positive_batches(dataset, **sampler_settings):
    """The trainer's batch sampler: the library's no-duplicates sampler, looking at the query and positive
    columns only, so no batch holds a query or positive twice (a false in-batch negative) while examples
    that share a hard negative may still meet, as they do in the mined data."""
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    return NoDuplicatesBatchSampler(dataset.select_columns(["anchor", "positive"]), **sampler_settings)


def batch_loss(model, batch: Sequence[TrainingExample], scale: float) -> torch.Tensor:
    """The weighted InfoNCE loss of one batch (positives, then every hard negative, as documents)."""
    queries = embed_texts(model, [e.query for e in batch])
    documents = embed_texts(model, [e.positive for e in batch] + [n for e in batch for n in e.negatives])
    return weighted_info_nce(queries, documents, torch.tensor([e.weight for e in batch]), scale)


class ValidationEvaluator(BaseEvaluator):
    """The trainer's evaluator: validation nDCG@10 through ``score`` (a function model → float)."""

    def __init__(self, score: Callable[[object], float]) -> None:
        super().__init__()
        self.score, self.name, self.primary_metric = score, VALIDATION_NAME, VALIDATION_KEY

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        return self.prefix_name_to_metrics({VALIDATION_KEY: float(self.score(model))}, self.name)


class EpochLog(TrainerCallback):
    """Records each epoch's seconds in the trainer's log history (so a resumed training keeps them); hands each
    finished, checkpointed epoch to ``on_epoch``."""

    def __init__(self, on_epoch: Callable[[EpochRecord], None] | None):
        self.on_epoch, self.started = on_epoch, time.perf_counter()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_evaluate(self, args, state, control, **kwargs):
        state.log_history.append({"epoch": state.epoch, "epoch_seconds": time.perf_counter() - self.started})

    def on_save(self, args, state, control, **kwargs):
        if self.on_epoch is not None:
            self.on_epoch(epoch_records(state.log_history)[-1])


def epoch_records(log_history: list[dict]) -> list[EpochRecord]:
    """One record per evaluated epoch from the trainer's log history."""
    by_epoch: dict[int, dict] = {}
    for entry in log_history:
        if "epoch" in entry:
            by_epoch.setdefault(round(entry["epoch"]), {}).update(entry)
    return [
        EpochRecord(epoch, float(e.get("loss", float("nan"))), float(e[EVAL_METRIC]), float(e.get("epoch_seconds", 0)))
        for epoch, e in sorted(by_epoch.items())
        if EVAL_METRIC in e
    ]


def last_checkpoint(folder: Path) -> str | None:
    """The newest finished checkpoint in ``folder``, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def trainer_arguments(params: TrainingParams, output_dir: Path, model, **overrides):
    """The trainer's settings from ours: AdamW with linear warm-up and decay, epochs, seeds, no reporting."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=params.epochs,
        per_device_train_batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        warmup_steps=params.warmup_ratio,  # a float is a ratio of the steps in Transformers v5
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=1.0,
        seed=params.seed,
        data_seed=params.seed,
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=model.device.type == "cpu",
    )
    return SentenceTransformerTrainingArguments(**{**settings, **overrides})


def train_contrastive(
    model,
    examples: Sequence[TrainingExample],
    score: Callable[[object], float],
    params: TrainingParams,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint: Path | None = None,
) -> TrainingOutcome:
    """Train ``model`` in place on the trainer; it ends holding the weights of its best validation epoch."""
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import EarlyStoppingCallback

    if not examples:
        raise ValueError("no training examples: generate synthetic queries first (or raise the question budget)")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(checkpoint) if checkpoint is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        resume_from = last_checkpoint(folder)
        base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        base = saved_base_validation(folder) if resume_from else None
        if base is None:
            model.eval()
            base = base_validation(model, score)
            (folder / BASE_SCORE_FILE).write_text(json.dumps(vars(base)))
        base_score = base.score
        if resume_from:
            logger.info("resuming training from %s", resume_from)
        dataset = training_dataset(examples)
        documents = [column for column in dataset.column_names if column not in ("anchor", "label")]
        args = trainer_arguments(
            params,
            folder,
            model,
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=2,
            save_only_model=checkpoint is None,  # no resume without a checkpoint folder: weights are enough
            load_best_model_at_end=True,
            metric_for_best_model=EVAL_METRIC,
            greater_is_better=True,
            batch_sampler=distinct_query_and_positive_batches,
            prompts=column_prompts(model, ["anchor"], documents),  # a prompted base's query and document prompts
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=WeightedMultipleNegativesRankingLoss(
                model, params.scale, params.distill_weight, params.guide_scale, params.guide_mask
            ),
            evaluator=ValidationEvaluator(score),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=params.patience), EpochLog(on_epoch)],
        )
        trainer.remove_callback(PrinterCallback)  # epochs are reported through EpochLog, not printed
        trainer.train(resume_from_checkpoint=resume_from)
        history = epoch_records(trainer.state.log_history)
    model.eval()
    held = best_epoch(history)  # the trainer loaded its weights at the end
    if held is not None:
        share, mixed_score = mix_with_base(model, base_state, score, params.tuned_shares, held.score)
        if not worse_than_base(model, score, base, mixed_score):
            return TrainingOutcome(base_score, mixed_score, held.epoch, history, share)
    model.load_state_dict(base_state)
    return TrainingOutcome(base_score, base_score, 0, history)


def best_epoch(history: list[EpochRecord]) -> EpochRecord | None:
    """The first epoch with the best validation score (the one the trainer keeps as its best model)."""
    if not history:
        return None
    top = max(r.score for r in history)
    return next(r for r in history if r.score == top)


def saved_base_validation(folder: Path) -> BaseValidation | None:
    """The base model's validation scores stored when this training started (for a resumed training)."""
    path = folder / BASE_SCORE_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return BaseValidation(**saved) if isinstance(saved, dict) else BaseValidation(float(saved))
