"""Synthetic questions from single chunks: prompt, JSON schema, validation, chunk sampling, deduplication.

The teacher is asked for ``n`` search questions that the passage answers, in one of two styles: ``terms``
(questions in the passage's own terms) or ``user`` (a symptom or goal in a user's everyday words, a how-to, a
short search on a code or name, as real support searches read). Replies are validated (``parse_questions``):
each question is a string of 12–300 characters (ending in ``?`` in the ``terms`` style) that does not lean on
unseen context ("the passage", "this error", "mentioned"); copies of the passage's first sentence are refused, and
duplicates removed.

Example:
    >>> parse_questions({"questions": ["How do I fix error E217?", "x"]}, 2)
    ['How do I fix error E217?']
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from embpipe.core.embedding import stack_embeddings
from embpipe.core.evaluation.retrieval import top_k
from embpipe.core.synthesis.splits import stable_unit
from embpipe.core.tables import SYNTHETIC_QUERIES, Strategy
from embpipe.llm.budget import BudgetStop, within_budget
from embpipe.llm.teacher import Teacher, TeacherOutputError

QuestionStyle = Literal["terms", "user"]
QUESTION_STYLES: tuple[str, ...] = get_args(QuestionStyle)
PROMPT_VERSIONS: dict[str, str] = {"terms": "single-chunk-questions-v2", "user": "single-chunk-questions-user-v1"}
RULES = """Rules:
- Each question must make sense to someone who has NOT seen the passage. Never refer to "the passage",
  "the message", "the text", "this error" or "mentioned"."""
SYSTEM_PROMPTS: dict[str, str] = {
    "terms": f"""You write realistic search queries for training a document retrieval system.
Given one passage from a technical document, write questions that a user with a real problem would type
into a search box, and that this passage answers.
{RULES}
- Use the specific terms of the passage: product and model names, error or alert codes, commands,
  settings, symptoms.
- Ask about different facts in each question, and do not copy sentences from the passage.
Example. Passage: "Error 53300 'too many connections' appears when the server reaches max_connections.
Raise the limit in postgresql.conf or put a connection pooler such as PgBouncer in front."
Reply: {{"questions": ["How do I fix PostgreSQL error 53300 too many connections?",
"Where is max_connections configured in PostgreSQL?"]}}
Reply with JSON only: {{"questions": ["...", "..."]}}.""",
    "user": f"""You write the searches that real users type when they need one passage of a technical document.
The users have not read the passage: they describe what they see or what they want, in their own everyday words.
Given the passage, write searches that it answers, each in a different style:
- a problem report: the symptom the user sees, in plain words, without naming its cause;
- a goal: what the user wants to get done ("how do I ...");
- a short search with the exact code, product, command or setting name, when the passage has one.
{RULES}
- Do not copy phrases from the passage, apart from names and codes.
Example. Passage: "Error 53300 'too many connections' appears when the server reaches max_connections.
Raise the limit in postgresql.conf or put a connection pooler such as PgBouncer in front."
Reply: {{"questions": ["our app cannot open new database connections at peak hours, logins are refused",
"how do I let more clients connect to postgres at the same time", "postgres error 53300"]}}
Reply with JSON only: {{"questions": ["...", "..."]}}.""",
}

# Questions that lean on context the searcher does not have are useless as training queries.
CONTEXT_REFERENCES = re.compile(
    r"\b(the|this|that) (passage|message|text|document|article|section|context|scenario|alert)\b"
    r"|\b(this|these) (issue|problem|error|warning|vulnerabilit(y|ies)|option|fix|implementation|report|procedure"
    r"|technote|note|behaviou?r|change|update|setting|feature|tool|steps?)s?\b"
    r"|\bmentioned\b|\bdescribed (above|here|in)\b",
    re.IGNORECASE,
)


def question_schema(count: int) -> dict:
    """JSON schema of a reply with up to ``count`` questions."""
    return {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": count}},
        "required": ["questions"],
    }


def question_messages(title: str, passage: str, count: int, style: QuestionStyle = "terms") -> list[dict]:
    """Chat messages asking for ``count`` questions in ``style`` about ``passage`` from the document ``title``."""
    user = f"Document: {title}\nWrite {count} different questions answered by this passage.\nPASSAGE: {passage}"
    return [{"role": "system", "content": SYSTEM_PROMPTS[style]}, {"role": "user", "content": user}]


def parse_questions(reply: dict, count: int, passage: str = "", style: QuestionStyle = "terms") -> list[str]:
    """Valid, distinct questions from a decoded reply; ``TeacherOutputError`` when none is usable."""
    raw = reply.get("questions")
    if not isinstance(raw, list):
        raise TeacherOutputError("reply has no 'questions' list")
    lead = passage.strip()[:80].lower()
    questions: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            continue
        text = " ".join(item.split())
        asks = text.endswith("?") or style == "user"  # a user's search need not be a question
        if not 12 <= len(text) <= 300 or not asks or CONTEXT_REFERENCES.search(text):
            continue
        if lead and text.lower().startswith(lead[:60]):
            continue
        if text.lower() not in {q.lower() for q in questions}:
            questions.append(text)
    if not questions:
        raise TeacherOutputError(f"no usable question among {raw!r:.200}")
    return questions[:count]


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
            schema=question_schema(count),
            prompt_version=PROMPT_VERSIONS[style],
            max_tokens=64 * count + 32,
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
