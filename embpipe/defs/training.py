"""Training: contrastive fine-tuning of the base model on the synthetic training split, tracked in MLflow."""

import hashlib
import tempfile

import pandas as pd
from dagster import AssetExecutionContext, Config, DataVersion, MetadataValue, Output, asset
from pydantic import Field

from embpipe.core.datasets import queries_in_split, retrieval_target, subsample_corpus, training_examples
from embpipe.core.evaluation import evaluate
from embpipe.core.report import dense_run
from embpipe.core.training import EpochRecord, TrainingParams, train_contrastive
from embpipe.defs.metadata import CONFIG_FINGERPRINT, config_fingerprint
from embpipe.resources.embedder import EmbedderResource, encode
from embpipe.resources.tracking import MlflowResource


class TrainingConfig(Config):
    """Contrastive training settings (multiple-negatives ranking / InfoNCE)."""

    epochs: int = Field(default=5, description="Most epochs; early stopping may end sooner.")
    batch_size: int = Field(default=8, description="Queries per batch (in-batch negatives).")
    learning_rate: float = Field(default=1e-4, description="AdamW learning rate.")
    warmup_ratio: float = Field(default=0.1, description="Share of steps with linear warm-up.")
    scale: float = Field(default=50.0, description="Similarity scale = 1 / temperature (50 ↔ 0.02).")
    patience: int = Field(default=2, description="Epochs without validation gain before stopping.")
    validation_corpus_size: int = Field(
        default=2000, description="Passages scored per validation (all positives + a seeded sample); 0 = all."
    )
    seed: int = Field(default=42, description="Seed of batching and initialisation.")

    def params(self) -> TrainingParams:
        return TrainingParams(**self.model_dump(exclude={"validation_corpus_size"}))


def model_version(model) -> str:
    """A content hash of the model's weights: its data version, so a retrained model marks its readers stale."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


VALIDATION_METRIC = "ndcg@10"
MLFLOW_METRIC = "ndcg_at_10"  # MLflow metric names may not contain "@"


@asset(io_manager_key="model_io_manager", code_version="1", group_name="training")
def embedding_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    embedder: EmbedderResource,
    mlflow: MlflowResource,
    chunks: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
):
    """The domain-adapted embedding model: best validation checkpoint of contrastive fine-tuning."""
    import mlflow as mlflow_api

    examples = training_examples(queries_in_split(synthetic_queries, query_splits, "train"), chunks)
    validation = subsample_corpus(
        retrieval_target(queries_in_split(synthetic_queries, query_splits, "validation"), chunks, "validation"),
        config.validation_corpus_size,
        config.seed,
    )
    model = embedder.load()
    corpus_ids = list(validation.corpus)

    def score(current) -> float:
        if not validation.queries:
            return 0.0
        run = dense_run(
            lambda texts: encode(current, texts, embedder.batch_size), validation.corpus, validation.queries
        )
        return evaluate(validation.qrels, run, [VALIDATION_METRIC])[VALIDATION_METRIC]

    def on_epoch(record: EpochRecord) -> None:
        context.log.info(
            f"epoch {record.epoch}: loss {record.loss:.4f}, validation {VALIDATION_METRIC} {record.score:.4f}"
        )
        mlflow_api.log_metrics(
            {"train_loss": record.loss, f"val_{MLFLOW_METRIC}": record.score, "epoch_seconds": record.seconds},
            step=record.epoch,
        )

    with mlflow.start_run("embedding_model", tags={"dagster_run_id": context.run_id}) as run:
        mlflow_api.log_params(
            {
                **config.model_dump(),
                "base_model": embedder.model_id(),
                "train_examples": len(examples),
                "validation_queries": len(validation.queries),
                "corpus_chunks": len(corpus_ids),
                "max_seq_length": embedder.max_seq_length,
            }
        )
        context.log.info(f"training on {len(examples)} examples, validating on {len(validation.queries)} queries")
        outcome = train_contrastive(model, examples, score, config.params(), on_epoch)
        mlflow_api.log_metrics(
            {
                f"base_val_{MLFLOW_METRIC}": outcome.base_score,
                f"best_val_{MLFLOW_METRIC}": outcome.best_score,
                "best_epoch": outcome.best_epoch,
            }
        )
        with tempfile.TemporaryDirectory() as staging:
            model.save(staging)
            mlflow_api.log_artifacts(staging, artifact_path="model")
        run_id = run.info.run_id
    return Output(
        model,
        data_version=DataVersion(model_version(model)),
        metadata={
            "train_examples": len(examples),
            "best_epoch": outcome.best_epoch,
            f"base_val_{VALIDATION_METRIC}": outcome.base_score,
            f"best_val_{VALIDATION_METRIC}": outcome.best_score,
            "epochs_run": len(outcome.history),
            "mlflow_run_id": run_id,
            "history": MetadataValue.md(
                pd.DataFrame([vars(r) for r in outcome.history]).to_markdown(index=False)
                if outcome.history
                else "no epochs"
            ),
            CONFIG_FINGERPRINT: config_fingerprint(config),
        },
    )
