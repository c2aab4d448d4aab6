"""Validation during training: the held-out synthetic queries, their scorer, and the model card it reports.

The validation set is the validation split's queries against all their positive chunks plus a seeded sample
of the other chunks (``VALIDATION_CORPUS_SIZE``), scored by nDCG@10, the figure that picks the best epoch.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd

from embpipe.core.beir import BeirDataset
from embpipe.core.datasets import queries_in_split, retrieval_target, subsample_corpus
from embpipe.core.embedding import encode
from embpipe.core.evaluation import evaluate
from embpipe.core.report import dense_run

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
    queries = queries_in_split(synthetic_queries, query_splits, "validation")
    return subsample_corpus(retrieval_target(queries, chunks, "validation"), corpus_size, seed)


def validation_scorer(validation: BeirDataset, batch_size: int = 32) -> Callable[[object], float]:
    """A function model → validation nDCG@10 (0 when there are no validation queries)."""

    def score(model) -> float:
        if not validation.queries:
            return 0.0
        run = dense_run(lambda texts: encode(model, texts, batch_size), validation.corpus, validation.queries)
        return evaluate(validation.qrels, run, [VALIDATION_METRIC])[VALIDATION_METRIC]

    return score


def model_card(settings: dict, base_model: str, examples: int, outcome) -> str:
    """A short Markdown model card: what the model is, how it was trained, how it scored on validation."""
    history = pd.DataFrame([vars(r) for r in outcome.history]).to_markdown(index=False) if outcome.history else ""
    return (
        "# embpipe domain-adapted embedding model\n\n"
        f"Base model: `{base_model}`. Fine-tuned by embpipe with multiple-negatives ranking (InfoNCE) on "
        f"{examples} teacher-synthesised (query, positive, hard negatives) examples; no human labels.\n\n"
        f"Settings: `{json.dumps(settings)}`\n\n"
        f"Validation {VALIDATION_METRIC}: base {outcome.base_score:.4f}, best {outcome.best_score:.4f} "
        f"(epoch {outcome.best_epoch}; epoch 0 means the base weights were kept).\n\n{history}\n"
    )
