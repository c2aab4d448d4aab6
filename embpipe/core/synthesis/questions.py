"""Synthetic questions from single chunks: chunk sampling, the teacher pass, deduplication and the round trip.

The teacher is asked for ``n`` questions per chunk in a question style (the prompts and the validation of
replies are in ``question_prompts``); near-duplicates are dropped, and the round trip (does the base retriever
find a question's chunk) is measured for every kept question.

Example:
    >>> import pandas as pd
    >>> chunks = pd.DataFrame({"chunk_id": ["a", "b", "c"], "doc_id": ["d1", "d1", "d2"], "n_tokens": [30, 40, 5]})
    >>> select_chunks(chunks, max_chunks=2, min_tokens=20, seed=0)["doc_id"].tolist()
    ['d1', 'd1']
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embpipe.core.embedding import stack_embeddings
from embpipe.core.evaluation.retrieval import top_k
from embpipe.core.synthesis.question_prompts import (
    PROMPT_VERSIONS,
    QuestionStyle,
    parse_questions,
    question_messages,
    question_schema,
    reply_tokens,
)
from embpipe.core.synthesis.splits import stable_unit
from embpipe.core.tables import SYNTHETIC_QUERIES, Strategy
from embpipe.llm.budget import BudgetStop, within_budget
from embpipe.llm.teacher import Teacher


def select_chunks(chunks: pd.DataFrame, max_chunks: int, min_tokens: int, seed: int) -> pd.DataFrame:
    """Up to ``max_chunks`` chunks of at least ``min_tokens``, spread over documents round-robin.

    Documents, and chunks within a document, are visited in the order of a seeded hash of their ids, so
    every document contributes before any contributes twice, and adding a document changes the selection
    only by that document's own chunks (and the last ones it displaces when ``max_chunks`` binds).
    """
    eligible = chunks[chunks["n_tokens"] >= min_tokens]
    if eligible.empty:
        longest = int(chunks["n_tokens"].max()) if len(chunks) else 0
        raise ValueError(
            f"No chunk has {min_tokens} tokens or more ({len(chunks)} chunks, the longest {longest} tokens): lower "
            "min_chunk_tokens or add longer documents."
        )
    by_doc = {
        doc: sorted(group.index, key=lambda i: stable_unit(seed, str(group.at[i, "chunk_id"])), reverse=True)
        for doc, group in eligible.groupby("doc_id", sort=True)
    }
    order = sorted(by_doc, key=lambda doc: stable_unit(seed, str(doc)))
    picked: list = []
    while len(picked) < max_chunks and any(by_doc.values()):
        for doc in order:
            if by_doc[doc] and len(picked) < max_chunks:
                picked.append(by_doc[doc].pop())
    return eligible.loc[picked]


def query_id_for(source_id: str, text: str) -> str:
    """Stable query id from the chunk it came from and its text."""
    return "q" + hashlib.sha256(f"{source_id}\0{text}".encode()).hexdigest()[:15]


def near_duplicate_mask(vectors: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Boolean keep-mask: a row is dropped when its cosine to an earlier kept row exceeds ``threshold``."""
    keep = np.ones(len(vectors), dtype=bool)
    kept: list[int] = []
    for i, vector in enumerate(vectors):
        if kept and float(np.max(vectors[kept] @ vector)) > threshold:
            keep[i] = False
        else:
            kept.append(i)
    return keep


def flatten_ids(values: Sequence) -> list[str]:
    """A list-valued cell (list, tuple or numpy array from Parquet) as a list of strings."""
    return [str(v) for v in list(values)]


@dataclass
class GenerationStats:
    """What a generation pass did: items tried, items that failed validation, whether the budget stopped it."""

    attempted: int = 0
    failed: int = 0
    budget_exhausted: bool = False
    budget_message: str = ""


def question_row(chunk_id: str, doc_id: str, text: str) -> dict:
    """The ``synthetic_queries`` row of a single-chunk question."""
    return {
        "query_id": query_id_for(chunk_id, text),
        "text": text,
        "positive_chunk_ids": [chunk_id],
        "doc_ids": [doc_id],
        "strategy": Strategy.SINGLE_CHUNK,
        "hops": 1,
        "validator_score": np.nan,
        "source_chunk_id": chunk_id,
    }


def generate_single_chunk_questions(
    teacher: Teacher,
    chunks: pd.DataFrame,
    count: int,
    progress: Callable[[int, int], None] | None = None,
    style: QuestionStyle = "terms",
) -> tuple[pd.DataFrame, GenerationStats]:
    """Ask the teacher for ``count`` questions per chunk in ``style``; stops cleanly when the token budget is
    reached."""
    stats, stop = GenerationStats(), BudgetStop()

    def ask(numbered: tuple[int, tuple]) -> list[dict] | None:
        number, chunk = numbered
        questions = teacher.generate_json(
            "synthetic_queries",
            chunk.chunk_id,
            question_messages(chunk.title, chunk.text, count, style),
            lambda r, c=chunk: parse_questions(r, count, c.text, style),
            schema=question_schema(count, style),
            prompt_version=PROMPT_VERSIONS[style],
            max_tokens=reply_tokens(count, style),
        )
        if progress:
            progress(number, len(chunks))
        return None if questions is None else [question_row(chunk.chunk_id, chunk.doc_id, q) for q in questions]

    numbered = enumerate(chunks.itertuples(index=False), start=1)
    asked = within_budget(numbered, ask, stop, teacher.concurrency)
    rows = [row for found in asked for row in found or []]
    stats.attempted, stats.failed = len(asked), sum(found is None for found in asked)
    stats.budget_exhausted, stats.budget_message = bool(stop.message), stop.message
    frame = SYNTHETIC_QUERIES.frame(rows).drop_duplicates("query_id")
    return frame.reset_index(drop=True), stats


def combined_questions(own: pd.DataFrame, *others: pd.DataFrame) -> pd.DataFrame:
    """The single-chunk questions and the other stages' ones (their query columns), each query id once."""
    extra = [q[SYNTHETIC_QUERIES.names] for q in others if len(q)]
    frame = pd.concat([own, *extra], ignore_index=True) if extra else own
    return frame.drop_duplicates("query_id").reset_index(drop=True)


ROUND_TRIP_K = 10


def round_trip_hits(
    question_vectors: np.ndarray, chunk_vectors: np.ndarray, chunk_ids: Sequence[str], positives: Sequence, k: int
) -> np.ndarray:
    """Round trip: whether one of each question's positive chunks is in the base retriever's top ``k`` over all
    chunks (vectors L2-normalised). A question that fails it is vague, off its passage, or hard for the base."""
    if len(question_vectors) == 0:
        return np.zeros(0, dtype=bool)
    found = top_k(question_vectors, chunk_vectors, min(k, len(chunk_ids))).indices
    ids = np.asarray([str(c) for c in chunk_ids])
    return np.array([bool(set(ids[row]) & set(flatten_ids(p))) for row, p in zip(found, positives, strict=True)])


@dataclass(frozen=True)
class Screening:
    """What the question stage drops: near-duplicates, and (when ``round_trip_filter``) round-trip failures."""

    dedup_threshold: float = 0.9
    round_trip_k: int = ROUND_TRIP_K
    round_trip_filter: bool = False


def screen_questions(
    frame: pd.DataFrame, vectors: np.ndarray, chunk_embeddings: pd.DataFrame, screening: Screening
) -> tuple[pd.DataFrame, dict]:
    """Near-duplicates dropped, the round trip measured (and applied when asked); its pass rate as metadata."""
    keep = near_duplicate_mask(vectors, screening.dedup_threshold) if len(frame) else np.zeros(0, dtype=bool)
    frame, vectors = frame[keep].reset_index(drop=True), vectors[keep]
    passed = round_trip_hits(
        vectors, stack_embeddings(chunk_embeddings), chunk_embeddings["chunk_id"].tolist(),
        frame["positive_chunk_ids"].tolist(), screening.round_trip_k,
    )  # fmt: skip
    rate = float(passed.mean()) if len(passed) else 0.0
    if screening.round_trip_filter:
        frame = frame[passed].reset_index(drop=True)
    return frame, {"round_trip_pass_rate": rate, "round_trip_k": screening.round_trip_k}


def question_summary(
    frame: pd.DataFrame, stats: GenerationStats, usage: list, failures: list, cuts: tuple[int, int] = (0, 0)
) -> dict:
    """What the question stage records: questions per strategy, chunks tried and failed, tokens, failures, and
    the prompts cut to fit the teacher's context window."""
    return {
        "queries": len(frame),
        "queries_by_strategy": {str(k): int(v) for k, v in frame["strategy"].value_counts().items()},
        "chunks_attempted": stats.attempted,
        "chunks_failed": stats.failed,
        "failure_rate": stats.failed / max(stats.attempted, 1),
        "budget_exhausted": stats.budget_exhausted,
        "paid_tokens": sum(u.prompt_tokens + u.completion_tokens for u in usage),
        "cached_calls": sum(u.cached_calls for u in usage),
        "failures": "\n".join(f"- {i}: {r[:160]}" for _, i, r in failures[:10]) or "none",
        "prompts_cut": cuts[0],
        "characters_cut": cuts[1],
    }
