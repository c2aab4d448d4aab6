"""Train / validation / test splits grouped so that no test query shares documents with training.

Queries are grouped into connected components over their source documents (two queries touching one
document are in the same group), and whole groups are assigned to splits by a seeded hash of the group's
smallest document id: the assignment of a group does not depend on which other groups exist, so adding a
document moves no existing query to another split (incremental runs stay incremental). The hash is salted
with ``SPLIT_SALT``: chunk selection orders documents by the same seeded hash, so without the salt a token
budget that stops early leaves only low-hash documents, and all of them would land in train.

Example:
    >>> assign_splits({"a": ["d1"], "b": ["d1"], "c": ["d2"]}, (0.5, 0.0, 0.5), seed=0)["a"] in {"train", "test"}
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from embpipe.core.tables import Split

SPLIT_SALT = "split"


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


def stable_unit(seed: int, key: str) -> float:
    """A number in [0, 1) that depends only on ``seed`` and ``key``."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_unit(seed: int, key: str) -> float:
    """A group's place in [0, 1) for the split draw, independent of the chunk-selection order."""
    return stable_unit(seed, f"{SPLIT_SALT}\0{key}")


def group_key(query_docs: dict[str, Sequence[str]], group: list[str]) -> str:
    """A group's identity: its smallest document id (its smallest query id when it has no documents)."""
    docs = sorted(str(d) for q in group for d in query_docs[q])
    return docs[0] if docs else f"query:{group[0]}"


def assign_splits(
    query_docs: dict[str, Sequence[str]], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Split name per query id: each document group falls in the split its stable hash points at.

    Validation and test each get at least one group when there are three or more groups and their
    fraction is positive (the groups with the smallest hashes are moved there).
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    train, validation, _ = fractions
    groups = sorted(document_groups(query_docs), key=lambda g: split_unit(seed, group_key(query_docs, g)))
    names = []
    for group in groups:
        u = split_unit(seed, group_key(query_docs, group))
        names.append(Split.TRAIN if u < train else Split.VALIDATION if u < train + validation else Split.TEST)
    if len(groups) >= 3:
        for split, fraction in ((Split.TEST, fractions[2]), (Split.VALIDATION, validation)):
            if fraction > 0 and split not in names:
                movable = [i for i, n in enumerate(names) if n == Split.TRAIN] or list(range(len(names)))
                names[movable[-1]] = split
    return {query: name for group, name in zip(groups, names, strict=True) for query in group}


def leaking_queries(query_docs: dict[str, Sequence[str]], assignment: dict[str, str]) -> list[str]:
    """Held-out queries (validation or test) that share a document with a training query."""
    train_docs = {d for q, docs in query_docs.items() if assignment.get(q) == Split.TRAIN for d in docs}
    return sorted(
        q
        for q, docs in query_docs.items()
        if assignment.get(q) in {Split.VALIDATION, Split.TEST} and set(docs) & train_docs
    )
