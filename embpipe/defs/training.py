"""Training: contrastive fine-tuning of the base model on the mined training labels, tracked in MLflow."""

import dataclasses
import functools
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, Config, DataVersion, MetadataValue, Output, asset
from pydantic import Field

from embpipe.core.embedding import model_version
from embpipe.core.evaluation.beir import passage_text
from embpipe.core.tables import Split
from embpipe.core.training.distillation import DistillationParams, distillation_texts, distilled_student
from embpipe.core.training.examples import chunk_corpus, labelled_examples, pair_examples, queries_in_split
from embpipe.core.training.guide import guide_agreement, load_guide, with_guide_scores
from embpipe.core.training.trainer import NEGATIVES_PER_EXAMPLE, EpochRecord, TrainingParams, train_contrastive
from embpipe.core.training.validation import (
    VALIDATION_CORPUS_SIZE,
    VALIDATION_METRIC,
    chunk_documents,
    epoch_metrics,
    model_card,
    outcome_metrics,
    training_parameters,
    training_summary,
    validation_scorer,
    validation_target,
)
from embpipe.defs.metadata import frame_version
from embpipe.orchestration.fingerprints import CONFIG_FINGERPRINT, config_fingerprint
from embpipe.paths import data_dir
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.tracking import MlflowResource


class TrainingConfig(Config):
    """Contrastive training settings (multiple-negatives ranking / InfoNCE with mined hard negatives)."""

    epochs: int = Field(default=TrainingParams.epochs, description="Most epochs; early stopping may end sooner.")
    batch_size: int = Field(default=TrainingParams.batch_size, description="Queries per batch (in-batch negatives).")
    learning_rate: float = Field(default=TrainingParams.learning_rate, description="AdamW learning rate.")
    warmup_ratio: float = Field(default=TrainingParams.warmup_ratio, description="Share of steps with linear warm-up.")
    scale: float = Field(default=TrainingParams.scale, description="Similarity scale = 1 / temperature (50 ↔ 0.02).")
    patience: int = Field(
        default=TrainingParams.patience, description="Epochs without validation gain before stopping."
    )
    seed: int = Field(default=TrainingParams.seed, description="Seed of batching and initialisation.")
    tuned_shares: list[float] = Field(
        default=list(TrainingParams.tuned_shares),
        description="The kept model is w × tuned + (1 − w) × base, w the one of these that scores best on "
        "validation (the first on a tie); [1.0] keeps the best epoch as trained.",
    )
    negatives_per_example: int = Field(
        default=NEGATIVES_PER_EXAMPLE, description="Hard negatives per (query, positive): 1 positive + N negatives."
    )
    max_seq_length: int = Field(default=0, description="Tokens per text while training; 0 = the embedder's setting.")
    validation_corpus_size: int = Field(
        default=VALIDATION_CORPUS_SIZE,
        description="Passages scored per validation (all positives + a seeded sample); 0 = all.",
    )
    resume: bool = Field(default=True, description="Resume an interrupted training from its last epoch checkpoint.")
    guide_model: str = Field(
        default="",
        description="A stronger embedder the student learns from before and while it trains: a fetched name "
        "(embeddinggemma-300m) or a sentence-transformers path; empty = none.",
    )
    guide_distill_epochs: int = Field(
        default=DistillationParams.epochs,
        description="With a guide: epochs of distilling its embeddings of the corpus' documents, chunks and "
        "training queries into the student (a linear layer to its width, then end to end) before the contrastive "
        "training; 0 = none.",
    )
    guide_distill_share: float = Field(
        default=DistillationParams.share,
        gt=0.0,
        le=1.0,
        description="With a guide: the distilled student mixed back towards its least-squares start, w × distilled "
        "+ (1 − w) × start, before the contrastive training; 1 = no mix (on techqa the probe's 0.5 kept pubmedqa "
        "within noise of the base at a 0.0013 cost in techqa nDCG@10).",
    )
    distill_weight: float = Field(
        default=0.0,
        description="With a guide: weight of its soft labels (its scores of each example's positive and "
        "negatives, KL) in the contrastive loss; 0 = none (on the teacher's labels they did not pay on techqa).",
    )
    guide_scale: float = Field(
        default=TrainingParams.guide_scale,
        description="Softmax scale of the guide's soft labels (lower: softer); 0 = the training scale.",
    )
    guide_mask: bool = Field(
        default=TrainingParams.guide_mask,
        description="Leave out of each example's loss the hard negatives the guide scores at least as high as its "
        "positive (likely false negatives, as GISTEmbed's guide masks them).",
    )

    def params(self) -> TrainingParams:
        if (self.guide_mask or self.guide_scale or self.guide_distill_share != 1.0) and not self.guide_model:
            raise ValueError(
                "embedding_model.guide_mask, guide_scale and guide_distill_share act on a guide: set "
                "embedding_model.guide_model too (a fetched name such as embeddinggemma-300m, or a "
                "sentence-transformers path)"
            )
        pipeline_only = {
            "negatives_per_example", "max_seq_length", "validation_corpus_size", "resume", "guide_model",
            "guide_distill_epochs", "guide_distill_share",
        }  # fmt: skip
        settings = self.model_dump(exclude=pipeline_only)
        return TrainingParams(**{**settings, "tuned_shares": tuple(self.tuned_shares)})


def checkpoint_path(config: TrainingConfig, base_model: str, *data: pd.DataFrame) -> Path:
    """The folder where this exact training (settings, base model, data tables) keeps its epoch checkpoints;
    emptied first when ``config.resume`` is off."""
    key = json.dumps([config.model_dump(mode="json"), base_model, *(frame_version(frame) for frame in data)])
    folder = data_dir() / "checkpoints" / "embedding_model" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if not config.resume:
        shutil.rmtree(folder, ignore_errors=True)
    return folder


@asset(io_manager_key="model_io_manager", code_version="9", group_name="training")
def embedding_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    embedder: EmbedderResource,
    mlflow: MlflowResource,
    documents: pd.DataFrame,
    chunks: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
    mining_rounds: pd.DataFrame,
    passage_pairs: pd.DataFrame,
):
    """The domain-adapted embedding model: with a guide, the base distilled from it first; then the best
    validation checkpoint of contrastive fine-tuning (teacher labels and teacher-free pairs)."""
    import mlflow as mlflow_api

    train, labels = queries_in_split(synthetic_queries, query_splits, Split.TRAIN), mining_rounds[mining_rounds["used"]]
    examples = labelled_examples(labels, train, chunks, config.negatives_per_example) + pair_examples(
        passage_pairs, chunks, config.negatives_per_example
    )
    validation = validation_target(synthetic_queries, query_splits, chunks, config.validation_corpus_size, config.seed)
    checkpoint = checkpoint_path(config, embedder.model_id(), documents, labels, train, passage_pairs)
    model = embedder.load(config.max_seq_length or None)
    guide = functools.cache(functools.partial(load_guide, config.guide_model, model.max_seq_length, str(model.device)))
    distilled, frames = {}, (documents, chunks, train, passage_pairs)
    if config.guide_model and config.guide_distill_epochs:
        model, distilled = distilled_start(context, config, model, guide, checkpoint, frames)
    if config.guide_model and (config.distill_weight > 0 or config.guide_mask):
        examples = with_guide_scores(examples, guide())  # loaded once, whichever use comes first
    with mlflow.start_run("embedding_model", tags={"dagster_run_id": context.run_id}) as run:
        mlflow_api.log_params(
            {**config.model_dump(), **training_parameters(embedder.model_id(), examples, validation, model)}
        )
        context.log.info(
            f"training on {len(examples)} examples on {model.device}, {len(validation.queries)} validation queries"
        )
        score = validation_scorer(validation, chunk_documents(chunks), embedder.batch_size)
        outcome = train_contrastive(model, examples, score, config.params(), epoch_logger(context), checkpoint)
        log_trained_model(
            model, model_card(config.model_dump(mode="json"), embedder.model_id(), len(examples), outcome), outcome
        )
    shutil.rmtree(checkpoint, ignore_errors=True)
    return model_output(model, outcome, config, examples, len(passage_pairs), run.info.run_id, distilled)


def corpus_texts(documents: pd.DataFrame, chunks: pd.DataFrame, train: pd.DataFrame, pairs: pd.DataFrame):
    """What a guide is distilled on: every document and chunk as it is embedded (title and text), and the
    training queries and teacher-free pairs' queries (never a validation or test query)."""
    whole = [passage_text(t, x) for t, x in zip(documents["title"], documents["text"], strict=True)]
    return distillation_texts(whole + list(chunk_corpus(chunks).values()), [*train["text"], *pairs["query"]])


def distilled_start(context: AssetExecutionContext, config: TrainingConfig, model, guide, checkpoint: Path, frames):
    """``model`` distilled from the guide's embeddings of the corpus (``frames``: documents, chunks, training
    queries, teacher-free pairs), where the contrastive training starts; with the distillation's metadata."""
    texts = corpus_texts(*frames)
    context.log.info(
        f"distilling {config.guide_model} into the base: {len(texts.documents)} passages, {len(texts.queries)} "
        f"queries, {config.guide_distill_epochs} epochs"
    )
    params = DistillationParams(epochs=config.guide_distill_epochs, seed=config.seed, share=config.guide_distill_share)
    student, outcome = distilled_student(model, guide, config.guide_model, texts, params, checkpoint / "guide")
    context.log.info(f"distilled in {outcome.seconds:.0f} s (guide {outcome.guide_seconds:.0f} s), losses "
                     f"{outcome.epoch_losses}")  # fmt: skip
    return student, {"guide_distillation": MetadataValue.json(dataclasses.asdict(outcome))}


def model_output(
    model, outcome, config: TrainingConfig, examples: list, pairs: int, mlflow_run_id: str, distilled: dict
) -> Output:
    """The trained model with its weights' hash as data version and the training summary as metadata."""
    summary = training_summary(outcome, len(examples), str(model.device))
    metadata = {
        **summary,
        "history": MetadataValue.md(summary["history"]),
        "teacher_free_examples": pairs,
        **({"guide_agrees_with_labels": guide_agreement(examples)} if any(e.guide_scores for e in examples) else {}),
        **distilled,
        "mlflow_run_id": mlflow_run_id,
        CONFIG_FINGERPRINT: config_fingerprint(config),
    }
    return Output(model, data_version=DataVersion(model_version(model)), metadata=metadata)


def epoch_logger(context: AssetExecutionContext) -> Callable[[EpochRecord], None]:
    """Each finished epoch: a log line and its metrics as an MLflow step."""
    import mlflow as mlflow_api

    def on_epoch(record: EpochRecord) -> None:
        context.log.info(
            f"epoch {record.epoch}: loss {record.loss:.4f}, validation {VALIDATION_METRIC} {record.score:.4f}, "
            f"{record.seconds:.0f} s"
        )
        mlflow_api.log_metrics(epoch_metrics(record), step=record.epoch)

    return on_epoch


def log_trained_model(model, card: str, outcome) -> None:
    """The best scores, the model folder with its card, and the card alone, into the active MLflow run."""
    import mlflow as mlflow_api

    mlflow_api.log_metrics(outcome_metrics(outcome))
    with tempfile.TemporaryDirectory() as staging:
        model.save(staging)
        (Path(staging) / "README.md").write_text(card)
        mlflow_api.log_artifacts(staging, artifact_path="model")
    mlflow_api.log_text(card, "model_card.md")
