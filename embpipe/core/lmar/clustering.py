"""LMAR's sampling-based KNN clustering (Algorithm 1).

Repeat until every point is assigned: pick a random unassigned seed; its cluster is the seed plus its top-``k``
unassigned neighbours whose cosine similarity to the seed exceeds ``delta``; remove them. Points with no
neighbour above ``delta`` become singletons. The seed order comes from ``seed``, so the result is
deterministic. Memory stays O(n·(d + depth)): every point's top-``depth`` neighbours are found first in
blocked matrix products (faiss when installed), never as an n×n matrix; a seed whose list runs out while
still above ``delta`` is rescored against the unassigned points, so the result equals the direct algorithm.

Example:
    >>> import numpy as np
    >>> vectors = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    >>> knn_clusters(vectors, k=3, delta=0.9, seed=0).tolist()
    [0, 0, 1, 1]
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from embpipe.core.evaluation.retrieval import top_k


def knn_clusters(vectors: np.ndarray, k: int, delta: float, seed: int) -> np.ndarray:
    """Cluster label per row of L2-normalised ``vectors``; labels are numbered in order of first row."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    count = len(vectors)
    labels = np.full(count, -1, dtype=np.int64)
    unassigned = np.ones(count, dtype=bool)
    depth = min(count, 4 * k + 1)
    neighbours = top_k(vectors, vectors, depth) if count else None
    order = np.random.default_rng(seed).permutation(count)
    cluster = 0
    for seed_row in order:
        if not unassigned[seed_row]:
            continue
        unassigned[seed_row] = False
        rows, scores = neighbours.indices[seed_row], neighbours.scores[seed_row]
        open_rows = unassigned[rows] & (scores > delta)
        members = rows[open_rows][:k].tolist()
        if len(members) < k and depth < count and scores[-1] > delta:  # the list may stop short: rescore
            members = unassigned_neighbours(vectors, unassigned, seed_row, k, delta)
        labels[[seed_row, *members]] = cluster
        unassigned[members] = False
        cluster += 1
    return renumber_by_first_row(labels)


def unassigned_neighbours(vectors: np.ndarray, unassigned: np.ndarray, row: int, k: int, delta: float) -> list[int]:
    """The top-``k`` unassigned rows with cosine to ``row`` above ``delta``, best first."""
    candidates = np.flatnonzero(unassigned)
    similarity = vectors[candidates] @ vectors[row]
    above = np.flatnonzero(similarity > delta)
    best = above[np.argsort(-similarity[above], kind="stable")[:k]]
    return candidates[best].tolist()


def renumber_by_first_row(labels: np.ndarray) -> np.ndarray:
    """The same partition, with cluster numbers in order of each cluster's first row."""
    mapping: dict[int, int] = {}
    for label in labels.tolist():
        mapping.setdefault(label, len(mapping))
    return np.array([mapping[label] for label in labels.tolist()], dtype=np.int64)


def size_histogram(labels: np.ndarray) -> dict[int, int]:
    """Cluster size → number of clusters of that size."""
    sizes = Counter(Counter(labels.tolist()).values())
    return dict(sorted(sizes.items()))
