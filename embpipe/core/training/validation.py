"""Validation during training: the held-out synthetic queries, their scorer, and the model card it reports.

The validation set is the validation split's queries against all their positive chunks plus a seeded sample
of the other chunks (``VALIDATION_CORPUS_SIZE``), scored by nDCG@10 by document, the figure that picks the best
epoch: a chunk ranks its document, and a query's relevant documents are those of its positive chunks.

Why by document: the trainer never draws a negative from the positive's own document (a teacher question about
one chunk is often answered by its neighbours too), so it learns to find documents, not to tell one document's
chunks apart; the benchmarks and the hand-written sample questions are judged by document too. Judged by chunk,
the sample corpus' validation fell in all four probed runs while the hand-written score rose
(``benchmarks/results/validation-probe-sample-eval.json``); on techqa both figures pick the same epoch
(``validation-probe-techqa.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from embpipe.core.embedding import role_encoder
from embpipe.core.evaluation.beir import BeirDataset, Qrels
from embpipe.core.evaluation.metrics import Run, per_query
from embpipe.core.evaluation.report import dense_run
from embpipe.core.tables import Split
from embpipe.core.training.base_comparison import mean_score
from embpipe.core.training.examples import queries_in_split, retrieval_target, subsample_corpus
from embpipe.core.training.trainer import EpochRecord, TrainingExample, TrainingOutcome

VALIDATION_CORPUS_SIZE = 2000
VALIDATION_SEED = 42
VALIDATION_METRIC = "ndcg@10"
MLFLOW_METRIC = "ndcg_at_10"  # MLflow metric names may not contain "@"


def validation_target(
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
    chunks: pd.DataFrame,
    corpus_size: int = VALIDATION_CORPUS_SIZE,
    seed: int = VALIDATION_SEED,
) -> BeirDataset:
    """The validation queries against all their positives plus a seeded sample of the other chunks."""
    queries = queries_in_split(synthetic_queries, query_splits, Split.VALIDATION)
    return subsample_corpus(retrieval_target(queries, chunks, "validation"), corpus_size, seed)


def chunk_documents(chunks: pd.DataFrame) -> dict[str, str]:
    """chunk id → the id of the document it was cut from."""
    return dict(zip(chunks["chunk_id"].astype(str), chunks["doc_id"].astype(str), strict=True))


def by_document(run: Run, document_of: Mapping[str, str]) -> Run:
    """A chunk run as a document run: each document scored by its best chunk."""
    documents: Run = {}
    for query, hits in run.items():
        best: dict[str, float] = {}
        for chunk, score in hits.items():
            document = document_of[chunk]
            best[document] = max(best.get(document, float("-inf")), float(score))
        documents[query] = best
    return documents


def document_qrels(qrels: Qrels, document_of: Mapping[str, str]) -> Qrels:
    """Chunk judgments as document judgments: a query's relevant documents are those of its relevant chunks."""
    return {query: {document_of[c]: grade for c, grade in relevant.items()} for query, relevant in qrels.items()}


class ValidationScorer:
    """Scores a model on validation: ``scorer(model)`` is its nDCG@10 by document (0 without validation queries),
    ``scorer.per_query(model)`` the same figure per query (in a fixed query order), for paired comparisons."""

    def __init__(self, validation: BeirDataset, document_of: Mapping[str, str], batch_size: int = 32) -> None:
        self.validation, self.document_of, self.batch_size = validation, document_of, batch_size
        self.qrels = document_qrels(validation.qrels, document_of)
        self.query_ids = sorted(self.qrels)

    def per_query(self, model) -> np.ndarray:
        if not self.query_ids:
            return np.zeros(0)
        run = dense_run(role_encoder(model, self.batch_size), self.validation.corpus, self.validation.queries)
        values = per_query(self.qrels, by_document(run, self.document_of), VALIDATION_METRIC)
        return np.array([values.get(q, 0.0) for q in self.query_ids])

    def __call__(self, model) -> float:
        return mean_score(self.per_query(model))


def validation_scorer(
    validation: BeirDataset, document_of: Mapping[str, str], batch_size: int = 32
) -> ValidationScorer:
    """A scorer model → validation nDCG@10 by document, with per-query figures (see ``ValidationScorer``)."""
    return ValidationScorer(validation, document_of, batch_size)


def model_card(settings: dict, base_model: str, examples: int, outcome) -> str:
    """A short Markdown model card: what the model is, how it was trained, how it scored on validation."""
    history = pd.DataFrame([vars(r) for r in outcome.history]).to_markdown(index=False) if outcome.history else ""
    return (
        "# embpipe domain-adapted embedding model\n\n"
        f"Base model: `{base_model}`. Fine-tuned by embpipe with multiple-negatives ranking (InfoNCE) on "
        f"{examples} teacher-synthesised (query, positive, hard negatives) examples; no human labels.\n\n"
        f"Settings: `{json.dumps(settings)}`\n\n"
        f"Validation {VALIDATION_METRIC} (by document): base {outcome.base_score:.4f}, best {outcome.best_score:.4f} "
        f"(epoch {outcome.best_epoch}; epoch 0 means the base weights were kept), mixed back towards the base "
        f"with a tuned share of {outcome.tuned_share:.2f}.\n\n{history}\n"
    )


def training_parameters(base_model: str, examples: Sequence[TrainingExample], validation: BeirDataset, model) -> dict:
    """What a training run logs beside its settings: the data it saw and where it ran."""
    return {
        "base_model": base_model,
        "train_examples": len(examples),
        "examples_with_negatives": sum(bool(e.negatives) for e in examples),
        "validation_queries": len(validation.queries),
        "validation_corpus": len(validation.corpus),
        "effective_max_seq_length": model.max_seq_length,
        "device": str(model.device),
    }


def outcome_metrics(outcome: TrainingOutcome) -> dict[str, float]:
    """The base and best validation scores and the best epoch, as MLflow metrics."""
    return {
        f"base_val_{MLFLOW_METRIC}": outcome.base_score,
        f"best_val_{MLFLOW_METRIC}": outcome.best_score,
        "best_epoch": outcome.best_epoch,
        "tuned_share": outcome.tuned_share,
    }


def epoch_metrics(record: EpochRecord) -> dict[str, float]:
    """One epoch's loss, validation score and seconds, as an MLflow step."""
    return {"train_loss": record.loss, f"val_{MLFLOW_METRIC}": record.score, "epoch_seconds": record.seconds}


def training_summary(outcome: TrainingOutcome, examples: int, device: str) -> dict:
    """The trained model's record for the asset's metadata (the history as a Markdown table)."""
    seconds = [r.seconds for r in outcome.history]
    history = pd.DataFrame([vars(r) for r in outcome.history])
    return {
        "train_examples": examples,
        "best_epoch": outcome.best_epoch,
        "tuned_share": outcome.tuned_share,
        f"base_val_{VALIDATION_METRIC}": outcome.base_score,
        f"best_val_{VALIDATION_METRIC}": outcome.best_score,
        "epochs_run": len(outcome.history),
        "mean_epoch_seconds": sum(seconds) / len(seconds) if seconds else 0.0,
        "device": device,
        "history": history.to_markdown(index=False) if len(history) else "no epochs",
    }
