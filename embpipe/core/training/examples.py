"""From pipeline tables to training examples and BEIR-style retrieval targets.

Example:
    >>> target = retrieval_target(test_queries, chunks)  # doctest: +SKIP
    >>> len(target.corpus) == len(chunks)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import random

import pandas as pd

from embpipe.core.evaluation.beir import BeirDataset, passage_text
from embpipe.core.synthesis.questions import flatten_ids
from embpipe.core.tables import LabelSource, Role
from embpipe.core.training.trainer import TrainingExample


def queries_in_split(queries: pd.DataFrame, splits: pd.DataFrame, split: str) -> pd.DataFrame:
    """The queries assigned to ``split``."""
    ids = set(splits.loc[splits["split"] == split, "query_id"])
    return queries[queries["query_id"].isin(ids)].reset_index(drop=True)


def chunk_corpus(chunks: pd.DataFrame) -> dict[str, str]:
    """chunk id → the text it is embedded as."""
    return {
        str(c): passage_text(t, x) for c, t, x in zip(chunks["chunk_id"], chunks["title"], chunks["text"], strict=True)
    }


def example_weight(score: float) -> float:
    """Loss weight of a query: its validator score, or 1 when it was not scored."""
    return 1.0 if score is None or (isinstance(score, float) and math.isnan(score)) else float(score)


def labelled_examples(
    labels: pd.DataFrame, queries: pd.DataFrame, chunks: pd.DataFrame, negatives_per_example: int
) -> list[TrainingExample]:
    """One example per (query, positive) from a label table, each with up to ``negatives_per_example`` negatives.

    ``labels`` has ``query_id``, ``chunk_id``, ``role`` (positive / negative) and ``score``; teacher-confirmed
    negatives come before margin-mined ones, each group in label order. Queries keep their validator weight.
    """
    return keyed_examples(labels, queries, chunk_corpus(chunks), "chunk_id", negatives_per_example)


def document_corpus(documents: pd.DataFrame) -> dict[str, str]:
    """doc id → the text a whole document is embedded as (title + text; the model cuts it at its length)."""
    return {
        str(d): passage_text(t, x)
        for d, t, x in zip(documents["doc_id"], documents["title"], documents["text"], strict=True)
    }


def document_examples(
    labels: pd.DataFrame, queries: pd.DataFrame, documents: pd.DataFrame, negatives_per_example: int
) -> list[TrainingExample]:
    """The label table lifted to whole documents, as a document index embeds them: one example per (query,
    positive document), its negatives the documents of its negative chunks (teacher-confirmed first) that hold
    none of its positives, each once, up to ``negatives_per_example``."""
    return keyed_examples(labels, queries, document_corpus(documents), "doc_id", negatives_per_example)


def keyed_examples(
    labels: pd.DataFrame, queries: pd.DataFrame, corpus: dict[str, str], key: str, negatives_per_example: int
) -> list[TrainingExample]:
    """Examples whose passages are ``corpus[label[key]]``: each positive once, negatives that are no positive,
    each once, teacher-confirmed first, up to ``negatives_per_example``; queries keep their validator weight."""
    texts = dict(zip(queries["query_id"].astype(str), queries["text"], strict=True))
    weights = dict(zip(queries["query_id"].astype(str), queries["validator_score"], strict=True))
    examples = []
    for query_id, group in labels.groupby("query_id", sort=True):
        if query_id not in texts:
            continue
        group = group[group[key].isin(corpus)]
        positives = list(dict.fromkeys(group.loc[group["role"] == Role.POSITIVE, key]))
        negative_rows = group[(group["role"] == Role.NEGATIVE) & ~group[key].isin(positives)]
        negative_rows = negative_rows.assign(teacher=negative_rows["source"] == LabelSource.TEACHER).sort_values(
            "teacher", ascending=False, kind="stable"
        )
        negatives = tuple(corpus[k] for k in list(dict.fromkeys(negative_rows[key]))[:negatives_per_example])
        weight = example_weight(weights[query_id])
        examples.extend(TrainingExample(texts[query_id], corpus[k], negatives, weight=weight) for k in positives)
    return examples


def pair_examples(pairs: pd.DataFrame, chunks: pd.DataFrame, negatives_per_example: int) -> list[TrainingExample]:
    """Teacher-free pairs (``passage_pairs``) as examples: the positive as cut, up to ``negatives_per_example``
    of their base-model negatives, and their loss weight."""
    corpus = chunk_corpus(chunks)
    return [
        TrainingExample(
            query,
            positive,
            tuple(corpus[c] for c in flatten_ids(negatives) if c in corpus)[:negatives_per_example],
            weight=float(weight),
        )  # fmt: skip
        for query, positive, negatives, weight in zip(
            pairs["query"], pairs["positive"], pairs["negative_chunk_ids"], pairs["weight"], strict=True
        )
    ]


def retrieval_target(queries: pd.DataFrame, chunks: pd.DataFrame, name: str = "synthetic") -> BeirDataset:
    """The chunk corpus with ``queries`` and their positive chunks as binary qrels."""
    qrels = {
        str(q): dict.fromkeys(flatten_ids(p), 1)
        for q, p in zip(queries["query_id"], queries["positive_chunk_ids"], strict=True)
    }
    return BeirDataset(
        name, chunk_corpus(chunks), dict(zip(queries["query_id"].astype(str), queries["text"], strict=True)), qrels
    )


def subsample_corpus(target: BeirDataset, size: int, seed: int) -> BeirDataset:
    """``target`` with its corpus cut to every judged passage plus a seeded random sample, ``size`` in all.

    Keeps per-epoch validation affordable on large corpora; ``size <= 0`` keeps everything.
    """
    if size <= 0 or len(target.corpus) <= size:
        return target
    judged = {d for docs in target.qrels.values() for d in docs if d in target.corpus}
    others = sorted(set(target.corpus) - judged)
    random.Random(seed).shuffle(others)
    keep = judged | set(others[: max(size - len(judged), 0)])
    corpus = {d: t for d, t in target.corpus.items() if d in keep}
    return BeirDataset(target.name, corpus, target.queries, target.qrels)


def chunk_passages(chunks: pd.DataFrame) -> list[str]:
    """The text each chunk is embedded as (document title + chunk text)."""
    return [passage_text(t, x) for t, x in zip(chunks["title"], chunks["text"], strict=True)]
