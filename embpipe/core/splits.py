"""Train / validation / test splits grouped so that no test query shares documents with training.

Queries are grouped into connected components over their source documents (two queries touching one
document are in the same group), and whole groups are assigned to splits.

Example:
    >>> assign_splits({"a": ["d1"], "b": ["d1"], "c": ["d2"]}, (0.5, 0.0, 0.5), seed=0)["a"] in {"train", "test"}
    True
"""

from __future__ import annotations

import random
from collections.abc import Sequence

SPLITS = ("train", "validation", "test")


def document_groups(query_docs: dict[str, Sequence[str]]) -> list[list[str]]:
    """Query ids grouped into components that share at least one document (union-find)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for docs in query_docs.values():
        docs = list(docs)
        for other in docs[1:]:
            parent[find(other)] = find(docs[0])
    groups: dict[str, list[str]] = {}
    for query, docs in query_docs.items():
        root = find(list(docs)[0]) if len(docs) else f"query:{query}"
        groups.setdefault(root, []).append(query)
    return [sorted(g) for _, g in sorted(groups.items())]


def assign_splits(
    query_docs: dict[str, Sequence[str]], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Split name per query id; groups are shuffled with ``seed`` and filled up to the fractions.

    Validation and test each get at least one group when there are three or more groups and their
    fraction is positive.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    groups = document_groups(query_docs)
    random.Random(seed).shuffle(groups)
    total = sum(len(g) for g in groups)
    assignment: dict[str, str] = {}
    counts = dict.fromkeys(SPLITS, 0)
    targets = {name: fraction * total for name, fraction in zip(SPLITS, fractions, strict=True)}
    for index, group in enumerate(groups):
        if len(groups) >= 3 and index < 2:
            name = ("test", "validation")[index] if targets[("test", "validation")[index]] > 0 else "train"
        else:
            name = max(SPLITS, key=lambda s: targets[s] - counts[s])
        counts[name] += len(group)
        assignment.update(dict.fromkeys(group, name))
    return assignment


def leaking_queries(query_docs: dict[str, Sequence[str]], assignment: dict[str, str]) -> list[str]:
    """Held-out queries (validation or test) that share a document with a training query."""
    train_docs = {d for q, docs in query_docs.items() if assignment.get(q) == "train" for d in docs}
    return sorted(
        q for q, docs in query_docs.items() if assignment.get(q) in {"validation", "test"} and set(docs) & train_docs
    )
