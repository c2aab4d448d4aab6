"""Hard negatives by the positive-aware margin rule (NV-Retriever's TopK-PercPos).

For each query the corpus is ranked by the base model; every positive, every chunk whose text is an exact
copy of a positive's text and (by default) every other chunk of a positive's document is excluded (retrieval
is judged per document, so a sibling chunk is not a wrong passage); the remaining candidates must score
below ``margin`` × the weakest positive's score (so near-positives, likely unlabelled positives, are not
used as negatives); the best ``count`` of those are kept.

Example:
    >>> margin_negatives(["a", "b", "c", "d"], [0.9, 0.8, 0.7, 0.3], [0.8], {"a"}, 0.95, 2)
    [('c', 0.7), ('d', 0.3)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embpipe.core.embedding import stack_embeddings
from embpipe.core.evaluation.retrieval import SearchBackend, top_k


@dataclass(frozen=True)
class NegativeParams:
    """How many negatives per query, the margin, and how deep the ranking is read."""

    count: int = 4
    margin: float = 0.95
    depth: int = 100
    exclude_same_document: bool = True


@dataclass(frozen=True)
class QueryNegatives:
    """The negatives kept for one query, best first, and the threshold they had to stay under."""

    chunk_ids: list[str]
    scores: list[float]
    weakest_positive: float
    threshold: float


def margin_threshold(weakest_positive: float, margin: float) -> float:
    """``margin`` × the weakest positive's score, moved away from it also when that score is negative."""
    return weakest_positive * margin if weakest_positive >= 0 else weakest_positive * (2 - margin)


def margin_negatives(
    ranked_ids: Sequence[str],
    ranked_scores: Sequence[float],
    positive_scores: Sequence[float],
    excluded: set[str],
    margin: float,
    count: int,
) -> list[tuple[str, float]]:
    """The first ``count`` ranked candidates outside ``excluded`` that score below the margin threshold."""
    threshold = margin_threshold(min(positive_scores), margin)
    kept = []
    for chunk_id, score in zip(ranked_ids, ranked_scores, strict=True):
        if chunk_id in excluded or score >= threshold:
            continue
        kept.append((chunk_id, float(score)))
        if len(kept) == count:
            break
    return kept


def duplicate_ids(chunk_ids: Sequence[str], texts: Sequence[str]) -> dict[str, set[str]]:
    """chunk id → every chunk id (itself included) with the same whitespace-normalised text."""
    by_text: dict[str, set[str]] = {}
    for chunk_id, text in zip(chunk_ids, texts, strict=True):
        by_text.setdefault(" ".join(text.split()), set()).add(chunk_id)
    return {chunk_id: by_text[" ".join(text.split())] for chunk_id, text in zip(chunk_ids, texts, strict=True)}


def mine_hard_negatives(
    query_vectors: np.ndarray,
    chunk_vectors: np.ndarray,
    chunk_ids: Sequence[str],
    chunk_texts: Sequence[str],
    positives: Sequence[Sequence[str]],
    params: NegativeParams,
    backend: SearchBackend = SearchBackend.AUTO,
    chunk_documents: Sequence[str] | None = None,
) -> list[QueryNegatives]:
    """Negatives for each query (row of ``query_vectors``) given its positive chunk ids.

    ``chunk_documents`` (each chunk's document id) lets ``params.exclude_same_document`` exclude the other
    chunks of a positive's document.

    Vectors must be L2-normalised; ranking uses ``top_k`` (faiss when installed and worthwhile, on the GPU
    when faiss-gpu sees one; exact search otherwise).
    """
    ids = [str(c) for c in chunk_ids]
    row_of = {chunk_id: row for row, chunk_id in enumerate(ids)}
    copies = duplicate_ids(ids, chunk_texts)
    siblings: dict[str, set[str]] = {}
    if chunk_documents is not None and params.exclude_same_document:
        by_document: dict[str, set[str]] = {}
        for chunk_id, document in zip(ids, chunk_documents, strict=True):
            by_document.setdefault(str(document), set()).add(chunk_id)
        siblings = {c: by_document[str(d)] for c, d in zip(ids, chunk_documents, strict=True)}
    longest_document = max((len(s) for s in siblings.values()), default=1)
    depth = min(params.depth + longest_document * max((len(p) for p in positives), default=0), len(ids))
    result = top_k(query_vectors, chunk_vectors, depth, backend)
    mined = []
    for row, query_positives in enumerate(positives):
        known = [str(p) for p in query_positives if str(p) in row_of]
        if not known:
            mined.append(QueryNegatives([], [], float("nan"), float("nan")))
            continue
        positive_scores = [float(chunk_vectors[row_of[p]] @ query_vectors[row]) for p in known]
        excluded = set().union(*(copies[p] | siblings.get(p, set()) for p in known))
        ranked = [ids[i] for i in result.indices[row]]
        kept = margin_negatives(
            ranked, result.scores[row].tolist(), positive_scores, excluded, params.margin, params.count
        )
        weakest = min(positive_scores)
        mined.append(
            QueryNegatives(
                [c for c, _ in kept], [s for _, s in kept], weakest, margin_threshold(weakest, params.margin)
            )
        )
    return mined


def mine_for_chunks(
    query_vectors: np.ndarray,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    positives: Sequence[Sequence[str]],
    params: NegativeParams,
    backend: SearchBackend = SearchBackend.AUTO,
) -> list[QueryNegatives]:
    """``mine_hard_negatives`` over the pipeline's chunk table and its stored base-model embeddings."""
    ids = chunks["chunk_id"].astype(str)
    aligned = chunk_embeddings.set_index("chunk_id").loc[ids].reset_index()
    return mine_hard_negatives(
        query_vectors, stack_embeddings(aligned), ids.tolist(), chunks["text"].tolist(), positives, params, backend,
        chunks["doc_id"].astype(str).tolist(),
    )  # fmt: skip


def negatives_table(query_ids: pd.Series, mined: list) -> pd.DataFrame:
    """One row per training query: its negatives, their scores, the weakest positive's score, the threshold."""
    return pd.DataFrame(
        {
            "query_id": query_ids.astype(str),
            "negative_chunk_ids": [m.chunk_ids for m in mined],
            "negative_scores": [m.scores for m in mined],
            "weakest_positive_score": [m.weakest_positive for m in mined],
            "threshold": [m.threshold for m in mined],
        }
    )
