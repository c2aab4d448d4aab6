"""A guide embedder's scores for training examples: soft labels the student learns to rank by.

A stronger embedding model (any sentence-transformers model: e.g. EmbeddingGemma-300M, fetched with
``embpipe fetch-models embeddinggemma-300m --accept-licence``) scores every example's query against its positive
and its hard negatives, cosine with the guide's own query and document prompts. Scoring a pair costs the guide
milliseconds, an LLM judgement seconds, so every example can carry the guide's view of its candidates: the
loss then distils it (KL between the guide's and the student's softmax over the same candidates, see
``losses.distillation_kl``). Where a hard label is wrong (a "negative" as relevant as the positive, a title
that fits several chunks) the guide's soft label says so, and the student is not pushed the wrong way.

Example:
    >>> examples = with_guide_scores(examples, load_guide("embeddinggemma-300m", 256, "cpu"))  # doctest: +SKIP
    >>> examples[0].guide_scores  # doctest: +SKIP
    (0.71, 0.52, 0.49, 0.40, 0.38)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from embpipe.core.embedding import encode
from embpipe.core.training.rows import TrainingExample

logger = logging.getLogger(__name__)


def load_guide(name_or_path: str, max_seq_length: int, device: str):
    """The guide model: a fetched model by name (``embpipe fetch-models NAME``) or any sentence-transformers path."""
    from embpipe.core.base_models import base_model_path
    from embpipe.core.embedding import load_model

    return load_model(base_model_path(name_or_path), max_seq_length, device)


def unique(texts: list[str]) -> dict[str, int]:
    """Each distinct text → its row in the encoded matrix, in first-seen order."""
    return {text: row for row, text in enumerate(dict.fromkeys(texts))}


def guide_scores(guide, examples: Sequence[TrainingExample], batch_size: int = 16) -> list[tuple[float, ...]]:
    """Per example: the guide's cosine of its query with its positive, then with each of its negatives.

    Every distinct query and passage is encoded once, whatever number of examples share it.
    """
    queries = unique([e.query for e in examples])
    passages = unique([text for e in examples for text in (e.positive, *e.negatives)])
    logger.info("guide scoring %d examples: %d queries, %d passages", len(examples), len(queries), len(passages))
    query_vectors = encode(guide, list(queries), batch_size, role="query")
    passage_vectors = encode(guide, list(passages), batch_size, role="document")
    scores = []
    for example in examples:
        rows = [passages[text] for text in (example.positive, *example.negatives)]
        scores.append(tuple(float(s) for s in passage_vectors[rows] @ query_vectors[queries[example.query]]))
    return scores


def with_guide_scores(examples: Sequence[TrainingExample], guide, batch_size: int = 16) -> list[TrainingExample]:
    """``examples`` with ``guide_scores`` filled in by ``guide``."""
    scored = guide_scores(guide, examples, batch_size)
    return [dataclasses.replace(e, guide_scores=s) for e, s in zip(examples, scored, strict=True)]


def guide_agreement(examples: Sequence[TrainingExample]) -> float:
    """The share of examples whose positive the guide scores above every one of their negatives (how often the
    guide agrees with the hard labels; 1.0 when no example has negatives)."""
    judged = [e.guide_scores for e in examples if len(e.guide_scores) > 1]
    return float(np.mean([s[0] > max(s[1:]) for s in judged])) if judged else 1.0
