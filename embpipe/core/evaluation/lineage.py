"""Lineage: which questions and training pairs came from a document, and what lies behind a query.

One row per (query, chunk) relation: the query's positives (synthetic, or confirmed by the teacher) and its
hard negatives (margin-mined or teacher-judged), with the query's split and the chunk's document; teacher-free
pairs appear under their ``pair_id`` with strategy ``title`` or ``inverse_cloze``. Training
pairs are the rows of ``train`` queries; validation and test queries appear with their positives only.

Example:
    >>> rows = lineage_rows(queries, splits, labels, chunks, documents)  # doctest: +SKIP
    >>> rows[rows.doc_path == "kv-0101.md"]  # doctest: +SKIP
"""

from __future__ import annotations

import pandas as pd

from embpipe.core.synthesis.questions import flatten_ids
from embpipe.core.tables import LINEAGE, LabelSource, Role, Split


def lineage_rows(
    queries: pd.DataFrame,
    splits: pd.DataFrame,
    labels: pd.DataFrame,
    chunks: pd.DataFrame,
    documents: pd.DataFrame,
    pairs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The lineage table (see the module docstring); ``labels`` are the training labels (``used`` rows),
    ``pairs`` the teacher-free pairs (their chunk a positive, their negatives margin-mined, all training)."""
    split_of = dict(zip(splits["query_id"].astype(str), splits["split"], strict=True))
    used = labels[labels["used"]] if "used" in labels else labels
    labelled = set(used["query_id"].astype(str))
    rows = [
        {"query_id": str(q.query_id), "chunk_id": c, "role": Role.POSITIVE, "source": LabelSource.SYNTHETIC, "round": 0}
        for q in queries.itertuples(index=False)
        if str(q.query_id) not in labelled
        for c in flatten_ids(q.positive_chunk_ids)
    ]
    columns = ["query_id", "chunk_id", "role", "source", "round"]
    frame = pd.concat([pd.DataFrame(rows, columns=columns), used[columns]], ignore_index=True)
    query_info = queries.assign(query_id=queries["query_id"].astype(str)).set_index("query_id")
    chunk_doc = dict(zip(chunks["chunk_id"].astype(str), chunks["doc_id"].astype(str), strict=True))
    doc_path = dict(zip(documents["doc_id"].astype(str), documents["path"].astype(str), strict=True))
    frame["query_text"] = frame["query_id"].map(query_info["text"])
    frame["strategy"] = frame["query_id"].map(query_info["strategy"])
    frame["split"] = frame["query_id"].map(split_of).fillna(Split.UNASSIGNED)
    if pairs is not None and len(pairs):
        frame = pd.concat([frame, pair_rows(pairs)], ignore_index=True)
    frame["doc_id"] = frame["chunk_id"].astype(str).map(chunk_doc).fillna("")
    frame["doc_path"] = frame["doc_id"].map(doc_path).fillna("")
    return LINEAGE.frame(frame).sort_values(["query_id", "role", "chunk_id"], kind="stable").reset_index(drop=True)


def pair_rows(pairs: pd.DataFrame) -> pd.DataFrame:
    """Lineage rows of teacher-free pairs: the pair's chunk as positive, its negatives, all in training."""
    rows = [
        {
            "query_id": p.pair_id,
            "query_text": p.query,
            "strategy": p.strategy,
            "chunk_id": chunk,
            "role": role,
            "source": source,
            "round": 0,
            "split": Split.TRAIN,
        }  # fmt: skip
        for p in pairs.itertuples(index=False)
        for chunk, role, source in [(p.chunk_id, Role.POSITIVE, LabelSource.SYNTHETIC)]
        + [(c, Role.NEGATIVE, LabelSource.MARGIN) for c in flatten_ids(p.negative_chunk_ids)]
    ]
    return pd.DataFrame(rows)


def per_document_counts(lineage: pd.DataFrame) -> pd.DataFrame:
    """Per document: questions whose positives it holds, training pairs, and times used as a negative."""
    positives = lineage[lineage["role"] == Role.POSITIVE]
    negatives = lineage[(lineage["role"] == Role.NEGATIVE) & (lineage["split"] == Split.TRAIN)]
    counts = pd.DataFrame(
        {
            "questions": positives.groupby("doc_path")["query_id"].nunique(),
            "training_pairs": positives[positives["split"] == Split.TRAIN].groupby("doc_path").size(),
            "as_negative": negatives.groupby("doc_path").size(),
        }
    )
    return counts.fillna(0).astype("int64").sort_values("questions", ascending=False).rename_axis("document")


def rows_for_document(lineage: pd.DataFrame, path: str) -> pd.DataFrame:
    """Lineage rows whose chunk comes from the document at ``path`` (its stored relative path, or a suffix)."""
    wanted = path.replace("\\", "/").lstrip("./")
    mask = (lineage["doc_path"] == wanted) | lineage["doc_path"].map(lambda p: wanted.endswith("/" + p) or p == wanted)
    return lineage[mask]


def rows_for_query(lineage: pd.DataFrame, query_id: str) -> pd.DataFrame:
    """Every chunk and document behind ``query_id``."""
    return lineage[lineage["query_id"] == query_id]
