"""EmbGen's chunk sampling: which chunks a question is written from, and how many of each kind fit a budget.

Three strategies, each giving 1–3 chunks (the question's hops):

- ``proximity``: a seed chunk and up to ``hops - 1`` of its nearest neighbours by chunk embedding (only
  neighbours above a minimum similarity: a far "neighbour" would make a nonsense multi-hop question);
- ``intra_cluster``: several chunks that share one entity cluster;
- ``inter_cluster``: one chunk from each of two related entity clusters (the most similar other cluster by
  centroid), for a bridging question; the two chunks are distinct and the second is not in the first cluster.

``plan_mix`` turns a token budget into a number of requests per strategy from the mix weights and each
strategy's estimated tokens per request, never planning more than the budget; the teacher's own budget check
still stops a run before any call that would exceed it.

Example:
    >>> plan_mix(10_000, {"proximity": 1.0, "intra_cluster": 1.0}, {"proximity": 1000, "intra_cluster": 2000})
    {'proximity': 5, 'intra_cluster': 2}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embpipe.core.evaluation.retrieval import top_k
from embpipe.core.tables import EMBGEN_STRATEGIES

MAX_HOPS = 3


@dataclass(frozen=True)
class ChunkSelection:
    """The chunks one question is written from (in hop order) and the entity clusters they came through."""

    strategy: str
    chunk_ids: tuple[str, ...]
    cluster_ids: tuple[int, ...] = ()


def proximity_selections(
    chunk_ids: list[str], vectors: np.ndarray, count: int, max_hops: int, seed: int, min_similarity: float = 0.5
) -> list[ChunkSelection]:
    """``count`` seed chunks, each with up to ``max_hops - 1`` near neighbours (hop count drawn per seed)."""
    rng = np.random.default_rng(seed)
    seeds = rng.permutation(len(chunk_ids))[:count]
    neighbours = top_k(vectors[seeds], vectors, min(len(chunk_ids), MAX_HOPS + 1)) if len(seeds) else None
    selections = []
    for row, seed_row in enumerate(seeds):
        hops = int(rng.integers(1, min(max_hops, len(chunk_ids)) + 1))
        near = zip(neighbours.indices[row].tolist(), neighbours.scores[row].tolist(), strict=True)
        nearest = [i for i, score in near if i != int(seed_row) and score > min_similarity][: hops - 1]
        selections.append(ChunkSelection("proximity", tuple(chunk_ids[i] for i in [int(seed_row), *nearest])))
    return selections


def intra_cluster_selections(
    cluster_chunks: dict[int, list[str]], count: int, max_hops: int, seed: int
) -> list[ChunkSelection]:
    """Up to ``count`` selections of 2..``max_hops`` chunks from one entity cluster, largest clusters first."""
    rng = np.random.default_rng(seed)
    shared = sorted((c for c, ids in cluster_chunks.items() if len(ids) >= 2), key=lambda c: -len(cluster_chunks[c]))
    selections = []
    for cluster in shared[:count]:
        ids = cluster_chunks[cluster]
        hops = int(rng.integers(2, min(max_hops, len(ids)) + 1))
        picked = rng.choice(len(ids), size=hops, replace=False)
        selections.append(ChunkSelection("intra_cluster", tuple(ids[i] for i in sorted(picked)), (cluster,)))
    return selections


def related_cluster(cluster: int, centroids: dict[int, np.ndarray], candidates: list[int]) -> int | None:
    """The candidate cluster (not ``cluster``) whose centroid is most similar to ``cluster``'s."""
    others = [c for c in candidates if c != cluster]
    if not others:
        return None
    similarity = np.stack([centroids[c] for c in others]) @ centroids[cluster]
    return others[int(np.argmax(similarity))]


def inter_cluster_selections(
    cluster_chunks: dict[int, list[str]], centroids: dict[int, np.ndarray], count: int, seed: int
) -> list[ChunkSelection]:
    """Up to ``count`` bridging pairs: a chunk of one cluster and a chunk of its most related other cluster."""
    rng = np.random.default_rng(seed)
    clusters = sorted(cluster_chunks)
    selections, seen = [], set()
    for cluster in rng.permutation(clusters).tolist():
        if len(selections) >= count:
            break
        partner = related_cluster(cluster, centroids, clusters)
        if partner is None or frozenset((cluster, partner)) in seen:
            continue
        first_ids = cluster_chunks[cluster]
        bridge_ids = [c for c in cluster_chunks[partner] if c not in set(first_ids)]
        if not bridge_ids:
            continue
        seen.add(frozenset((cluster, partner)))
        first = first_ids[int(rng.integers(len(first_ids)))]
        second = bridge_ids[int(rng.integers(len(bridge_ids)))]
        selections.append(ChunkSelection("inter_cluster", (first, second), (cluster, partner)))
    return selections


def plan_mix(budget_tokens: int, weights: dict[str, float], tokens_per_request: dict[str, int]) -> dict[str, int]:
    """Requests per strategy: the budget split by ``weights``, each share divided by that strategy's cost.

    The plan's total estimated cost never exceeds ``budget_tokens``; strategies with weight 0 get none.
    """
    if budget_tokens < 0 or any(w < 0 for w in weights.values()):
        raise ValueError("the token budget and the strategy weights must not be negative")
    total = sum(weights.values())
    if total == 0:
        raise ValueError(f"give at least one strategy a positive weight (strategies: {', '.join(EMBGEN_STRATEGIES)})")
    return {s: int(budget_tokens * w / total) // max(tokens_per_request[s], 1) for s, w in weights.items()}
