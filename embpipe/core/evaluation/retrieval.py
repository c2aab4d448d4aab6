"""Nearest-neighbour search over L2-normalised vectors: exact numpy by default, faiss when asked.

``faiss`` comes from the ``cpu`` or ``gpu`` extra (never both: they install the same module). Exact search
is blocked so it never builds an n×n matrix; with inner product on normalised vectors scores are cosines.

Example:
    >>> import numpy as np
    >>> corpus = normalize(np.eye(3, dtype=np.float32))
    >>> top_k(corpus[:1], corpus, k=2).indices.tolist()
    [[0, 1]]
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

FAISS_HINT = "install one faiss extra: pip install 'embpipe[cpu]' (or 'embpipe[gpu]' on a CUDA machine)"


class SearchBackend(StrEnum):
    """How top-k search runs: ``exact`` numpy, ``faiss`` (GPU when faiss-gpu sees one), or ``auto``."""

    AUTO = "auto"
    EXACT = "exact"
    FAISS = "faiss"


@dataclass(frozen=True)
class SearchResult:
    """Row i holds the k best corpus indices of query i, best first, and their scores."""

    indices: np.ndarray
    scores: np.ndarray


AUTO_FAISS_MIN_CORPUS = 200_000


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Float32 copy with unit L2 rows (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.clip(norms, 1e-12, None)


def exact_top_k(queries: np.ndarray, corpus: np.ndarray, k: int, block: int = 1024) -> SearchResult:
    """Exact inner-product top-k, ``block`` queries at a time."""
    k = min(k, len(corpus))
    all_indices, all_scores = [], []
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ corpus.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        all_indices.append(np.take_along_axis(part, order, axis=1))
        all_scores.append(np.take_along_axis(part_scores, order, axis=1))
    if not all_indices:
        return SearchResult(np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32))
    return SearchResult(np.vstack(all_indices), np.vstack(all_scores))


def faiss_top_k(queries: np.ndarray, corpus: np.ndarray, k: int) -> SearchResult:
    """Flat inner-product faiss search, moved to the GPU when faiss-gpu sees one."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(f"faiss is not installed: {FAISS_HINT}") from error
    index = faiss.IndexFlatIP(corpus.shape[1])
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(corpus, dtype=np.float32))
    scores, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(corpus)))
    return SearchResult(indices.astype(np.int64), scores)


def faiss_available() -> bool:
    """Whether a faiss module can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, backend: SearchBackend = SearchBackend.AUTO) -> SearchResult:
    """Top-k corpus rows for each query row by inner product; both sides should be normalised."""
    if len(corpus) == 0:
        raise ValueError("cannot search an empty corpus")
    use_faiss = backend == SearchBackend.FAISS or (
        backend == SearchBackend.AUTO and len(corpus) >= AUTO_FAISS_MIN_CORPUS and faiss_available()
    )
    return faiss_top_k(queries, corpus, k) if use_faiss else exact_top_k(queries, corpus, k)
