"""LMAR cluster-level synthesis: a topic summary per cluster, then questions only the cluster answers.

For every cluster of two or more chunks the teacher writes a short topic summary (``cluster_profiles``).
The summary becomes a cluster-specialised system prompt; the teacher then writes questions that need the
cluster's passages and cites, for each, the passages that support it (1–3). The cited chunks are the
question's positives. A validator (the relevance judge, P(yes) that the cited evidence answers the question)
scores each question; the score weights its training loss and questions below a threshold are dropped.

Example:
    >>> parse_cluster_questions({"questions": [{"question": "How do A and B interact?", "passages": [2, 1]}]}, 2, 3)
    [('How do A and B interact?', [2, 1])]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from embpipe.core.synthesis.question_prompts import CONTEXT_REFERENCES
from embpipe.core.synthesis.questions import query_id_for
from embpipe.core.tables import CLUSTER_PROFILES, SYNTHETIC_QUERIES
from embpipe.llm.budget import BudgetStop, within_budget
from embpipe.llm.teacher import Teacher, TeacherOutputError

PROFILE_PROMPT_VERSION = "cluster-profile-v1"
QUESTION_PROMPT_VERSION = "cluster-questions-v1"
PASSAGE_CHARACTERS = 700
MAX_PASSAGES = 6
MAX_HOPS = 3
STRATEGY = "cluster"

PROFILE_SYSTEM = (
    "You label groups of related passages from one document collection. Write a one-sentence topic summary "
    'naming the shared product, component, error or task. Reply with JSON only: {"summary": "..."}.'
)


def numbered_passages(texts: list[str]) -> str:
    """``[1] text`` lines, each cut to ``PASSAGE_CHARACTERS``, at most ``MAX_PASSAGES`` of them."""
    return "\n".join(f"[{i}] {' '.join(t.split())[:PASSAGE_CHARACTERS]}" for i, t in enumerate(texts[:MAX_PASSAGES], 1))


def profile_messages(texts: list[str]) -> list[dict]:
    """Chat messages asking for the topic summary of a cluster's passages."""
    return [
        {"role": "system", "content": PROFILE_SYSTEM},
        {"role": "user", "content": f"PASSAGES:\n{numbered_passages(texts)}\nWhat topic do they share?"},
    ]


PROFILE_SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string", "minLength": 10, "maxLength": 400}},
    "required": ["summary"],
}


def parse_profile(reply: dict) -> str:
    """The summary, whitespace-normalised; ``TeacherOutputError`` when missing or too short."""
    summary = " ".join(str(reply.get("summary", "")).split())
    if len(summary) < 10:
        raise TeacherOutputError(f"no usable summary in {reply!r:.200}")
    return summary[:400]


def cluster_system_prompt(summary: str) -> str:
    """The cluster-specialised system prompt built from its summary."""
    return (
        "You write realistic search queries for training a document retrieval system. The passages you get are "
        f"all about: {summary}\nWrite questions a user with a real problem in this topic would type into a "
        "search box. Each question must need the cited passages (one to three of them) to be answered, must make "
        'sense to someone who has not seen them, and must never say "the passage" or "mentioned". '
        'Reply with JSON only: {"questions": [{"question": "...", "passages": [1, 2]}]}.'
    )


def cluster_question_schema(count: int) -> dict:
    """JSON schema: up to ``count`` questions, each with the numbers of its supporting passages."""
    item = {
        "type": "object",
        "properties": {
            "question": {"type": "string"},
            "passages": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": MAX_HOPS},
        },
        "required": ["question", "passages"],
    }
    return {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": item, "minItems": 1, "maxItems": count}},
        "required": ["questions"],
    }


def cluster_question_messages(summary: str, texts: list[str], count: int) -> list[dict]:
    """Chat messages asking for ``count`` questions over a cluster's passages."""
    user = f"Write {count} different questions, each citing its passages.\nPASSAGES:\n{numbered_passages(texts)}"
    return [{"role": "system", "content": cluster_system_prompt(summary)}, {"role": "user", "content": user}]


def parse_cluster_questions(reply: dict, count: int, passages: int) -> list[tuple[str, list[int]]]:
    """(question, cited passage numbers) pairs that pass validation; ``TeacherOutputError`` when none does."""
    raw = reply.get("questions")
    if not isinstance(raw, list):
        raise TeacherOutputError("reply has no 'questions' list")
    kept: list[tuple[str, list[int]]] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        text = " ".join(str(item.get("question", "")).split())
        cited = item.get("passages")
        if not 12 <= len(text) <= 300 or not text.endswith("?") or CONTEXT_REFERENCES.search(text):
            continue
        if not isinstance(cited, list):
            continue
        numbers = list(dict.fromkeys(n for n in cited if isinstance(n, int) and 1 <= n <= passages))[:MAX_HOPS]
        if numbers and text.lower() not in {q.lower() for q, _ in kept}:
            kept.append((text, numbers))
    if not kept:
        raise TeacherOutputError(f"no usable cited question among {raw!r:.200}")
    return kept[:count]


@dataclass
class ClusterQuestionStats:
    """Clusters asked, failures, questions dropped by the validator, and why generation stopped early."""

    attempted: int = 0
    failed: int = 0
    below_threshold: int = 0
    budget_message: str = ""
    scores: list[float] = field(default_factory=list)


def cluster_members(chunks: pd.DataFrame, labels: pd.DataFrame, min_size: int = 2) -> dict[int, pd.DataFrame]:
    """cluster id → its chunks (clusters of at least ``min_size``), in cluster order."""
    joined = chunks.merge(labels[["chunk_id", "cluster_id"]], on="chunk_id")
    return {
        int(cluster): group.sort_values("chunk_id").head(MAX_PASSAGES)
        for cluster, group in joined.groupby("cluster_id", sort=True)
        if len(group) >= min_size
    }


def question_rows(
    cluster: int, members: pd.DataFrame, questions: list[tuple[str, list[int]]], scores: list[float]
) -> list[dict]:
    """Query rows: positives are the cited chunks, ``hops`` their number, the validator score attached."""
    rows = []
    ids, docs = members["chunk_id"].astype(str).tolist(), members["doc_id"].astype(str).tolist()
    for (text, cited), score in zip(questions, scores, strict=True):
        positives = [ids[n - 1] for n in cited]
        rows.append(
            {
                "query_id": query_id_for(f"cluster-{cluster}-{positives[0]}", text),
                "text": text,
                "positive_chunk_ids": positives,
                "doc_ids": list(dict.fromkeys(docs[n - 1] for n in cited)),
                "strategy": STRATEGY,
                "hops": len(positives),
                "validator_score": score,
                "source_chunk_id": positives[0],
            }
        )
    return rows


def empty_queries() -> pd.DataFrame:
    """A typed table with the ``synthetic_queries`` columns and no rows."""
    return SYNTHETIC_QUERIES.empty()


def as_queries(rows: list[dict]) -> pd.DataFrame:
    """Rows as a typed ``synthetic_queries``-shaped table, one row per query id."""
    if not rows:
        return empty_queries()
    frame = SYNTHETIC_QUERIES.frame(rows)
    return frame.drop_duplicates("query_id").reset_index(drop=True)


def validate_questions(
    judge: Callable[[str, str], float | None], questions: list[tuple[str, list[int]]], texts: list[str]
) -> list[float]:
    """The validator score of each question: P(the cited passages answer it); NaN when it gave none."""
    scores = []
    for text, cited in questions:
        evidence = "\n".join(texts[n - 1] for n in cited)
        score = judge(text, evidence)
        scores.append(np.nan if score is None else float(score))
    return scores


def empty_profiles() -> pd.DataFrame:
    """A cluster-profile table with no rows."""
    return CLUSTER_PROFILES.empty()


def profile_clusters(
    teacher: Teacher,
    members: dict[int, pd.DataFrame],
    sizes: dict[int, int],
    max_clusters: int,
    stop: BudgetStop,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """The teacher's topic summary of the ``max_clusters`` largest clusters (ties by id); failed ones left out."""
    chosen = sorted(members, key=lambda c: (-int(sizes[c]), c))[:max_clusters]

    def profile(numbered: tuple[int, int]) -> tuple[int, int, str] | None:
        number, cluster = numbered
        summary = teacher.generate_json(
            "cluster_profiles",
            f"cluster-{cluster}",
            profile_messages(members[cluster]["text"].astype(str).tolist()),
            parse_profile,
            schema=PROFILE_SCHEMA,
            prompt_version=PROFILE_PROMPT_VERSION,
            max_tokens=96,
        )
        if progress:
            progress(number, len(chosen))
        return (int(cluster), int(sizes[cluster]), summary) if summary else None

    profiled = within_budget(enumerate(chosen, start=1), profile, stop, teacher.concurrency)
    rows = [row for row in profiled if row is not None]
    teacher.settle("cluster_profiles")
    return CLUSTER_PROFILES.frame(rows)


def generate_cluster_questions(
    teacher: Teacher,
    members: dict[int, pd.DataFrame],
    summaries: dict[int, str],
    count: int,
    judge: Callable[[str, str], float | None],
    min_score: float,
    stats: ClusterQuestionStats,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Validated questions for every profiled cluster; stops (keeping what it has) when the budget runs out."""
    profiled = [c for c in members if c in summaries]
    stop = BudgetStop()

    def ask(numbered: tuple[int, int]) -> tuple[int, list[str], list[float]] | None:
        number, cluster = numbered
        group = members[cluster]
        texts = group["text"].astype(str).tolist()
        shown = min(len(texts), MAX_PASSAGES)
        questions = teacher.generate_json(
            "cluster_queries",
            f"cluster-{cluster}",
            cluster_question_messages(summaries[cluster], texts, count),
            lambda r, n=shown: parse_cluster_questions(r, count, n),
            schema=cluster_question_schema(count),
            prompt_version=QUESTION_PROMPT_VERSION,
            max_tokens=80 * count + 32,
        )
        if progress:
            progress(number, len(profiled))
        return None if questions is None else (cluster, questions, validate_questions(judge, questions, texts))

    rows = []
    for asked in within_budget(enumerate(profiled, start=1), ask, stop, teacher.concurrency):
        stats.attempted += 1
        if asked is None:
            stats.failed += 1
            continue
        cluster, questions, scores = asked
        kept = [(q, s) for q, s in zip(questions, scores, strict=True) if s >= min_score]  # NaN: unvalidated
        stats.below_threshold += len(questions) - len(kept)
        stats.scores += [s for _, s in kept]
        rows += question_rows(cluster, members[cluster], [q for q, _ in kept], [s for _, s in kept])
    stats.budget_message = stop.message
    teacher.settle("cluster_queries")
    return as_queries(rows)


def relevance_validator(teacher: Teacher) -> Callable[[str, str], float | None]:
    """LMAR's validator: the relevance judge's P(yes) that ``evidence`` answers ``question``."""
    from embpipe.llm.judge import judge_relevance

    def validate(question: str, evidence: str) -> float | None:
        return judge_relevance(teacher, "cluster_queries", question[:60], question, evidence)

    return validate


def cluster_question_summary(frame: pd.DataFrame, stats: ClusterQuestionStats) -> dict:
    """What the cluster-question stage records: clusters tried and failed, validator drops, scores, hops."""
    return {
        "queries": len(frame),
        "clusters_attempted": stats.attempted,
        "clusters_failed": stats.failed,
        "dropped_by_validator": stats.below_threshold,
        "mean_validator_score": float(np.mean(stats.scores)) if stats.scores else 0.0,
        "hops": {str(k): int(v) for k, v in frame["hops"].value_counts().items()},
    }
