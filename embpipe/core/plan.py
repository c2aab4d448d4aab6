"""What a run will ask the teacher, before it asks: calls and tokens per teacher stage, their cost and hours.

Each call is estimated exactly as the budget check before it is sent estimates it (``budget.estimate_tokens``
of the real prompt builder's messages, plus the call's ``max_tokens``), and a stage's calls are counted in order
until its share of the run's budget would be passed, as the check stops them. A stage the budget stops
(*capped*) is planned at its share, in at least the calls counted (calls cost less than their estimates, so more
of them fit); the question stage's share includes what the stages before it are planned to leave. The figures
are upper bounds: completions at ``max_tokens``. Stages whose items come from the corpus alone (questions,
entities) are planned call by call over the chunks they will read; stages whose items come from earlier teacher
output (LMAR's triplets and clusters, EmbGen's questions, mining's judgements) from their settings and the
corpus's median chunk, at their most (every question kept, every round run).

Example:
    >>> plan = plan_calls("demo", [([{"role": "user", "content": "x" * 300}], 10)] * 5, allowance=300)
    >>> plan.calls, plan.prompt_tokens, plan.completion_tokens, plan.capped
    (2, 216, 20, True)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from embpipe.core.embgen.entities import entity_messages
from embpipe.core.embgen.questions import QUESTION_MAX_TOKENS, quality_messages, selection_messages
from embpipe.core.lmar.cluster_questions import MAX_PASSAGES, cluster_question_messages, profile_messages
from embpipe.core.synthesis.question_prompts import QuestionStyle, question_messages, reply_tokens
from embpipe.core.synthesis.questions import select_chunks
from embpipe.llm.budget import MINING_STAGE, RunBudget, estimate_tokens
from embpipe.llm.closer_passage import closer_messages, same_topic_messages
from embpipe.llm.judge import relevance_messages

Call = tuple[list[dict], int]  # (messages, max_tokens)
TYPICAL_QUESTION = "How do I fix error E217 when replication stalls after the nightly backup window?"
TYPICAL_SUMMARY = "Backup replication alerts, their causes and the steps that clear them on the appliance."


@dataclass(frozen=True)
class StagePlan:
    """One teacher stage's planned calls and their estimated tokens. ``capped``: its budget share (``limit``)
    stops it before its last call; it then spends up to that share, in at least ``calls`` calls (calls cost
    less than their estimates, so more of them fit)."""

    stage: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    capped: bool = False
    limit: int | None = None

    @property
    def tokens(self) -> int:
        """The most tokens the stage will count: its share when capped, else its calls' estimates."""
        if self.capped and self.limit is not None:
            return self.limit
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class StageSettings:
    """The stage settings a plan reads; no defaults here: each stage's own config supplies them
    (``embpipe.cli_plan.plan_settings``), so a default changed there is the one planned."""

    max_chunks: int
    questions_per_chunk: int
    question_style: QuestionStyle
    min_chunk_tokens: int
    seed: int
    triplet_anchors: int
    triplet_comparison: str
    max_clusters: int
    cluster_neighbours: int
    questions_per_cluster: int
    entity_chunks: int
    max_entities: int
    train_share: float
    mining_rounds: int
    mining_top_k: int
    max_judgements_per_round: int
    idle_stages: frozenset[str] = field(default_factory=frozenset)


def plan_calls(stage: str, calls: Iterable[Call], allowance: int | None) -> StagePlan:
    """Sum ``calls`` in order until one would pass ``allowance`` (``None``: no cap)."""
    count = prompt = completion = 0
    estimates: dict[int, int] = {}  # by identity: the stages planned from settings repeat one prompt
    for messages, max_tokens in calls:
        if id(messages) not in estimates:
            estimates[id(messages)] = estimate_tokens(messages)
        needed = estimates[id(messages)]
        if allowance is not None and prompt + completion + needed + max_tokens > allowance:
            return StagePlan(stage, count, prompt, completion, capped=True, limit=allowance)
        count, prompt, completion = count + 1, prompt + needed, completion + max_tokens
    return StagePlan(stage, count, prompt, completion)


def median_text(chunks: pd.DataFrame) -> str:
    """The chunk of median length: the representative passage of the stages planned from settings."""
    if chunks.empty:
        return ""
    texts = sorted(chunks["text"].astype(str), key=len)
    return texts[len(texts) // 2]


def question_calls(chunks: pd.DataFrame, s: StageSettings) -> list[Call]:
    """The question stage's calls: one per chunk it will read."""
    sample = select_chunks(chunks, s.max_chunks, s.min_chunk_tokens, s.seed)
    count, style = s.questions_per_chunk, s.question_style
    return [
        (question_messages(str(c.title), str(c.text), count, style), reply_tokens(count, style))
        for c in sample.itertuples()
    ]


def entity_calls(chunks: pd.DataFrame, s: StageSettings) -> list[Call]:
    sample = select_chunks(chunks, s.entity_chunks, s.min_chunk_tokens, s.seed)
    return [(entity_messages(str(text)), 48 * s.max_entities) for text in sample["text"]]


def triplet_calls(passage: str, s: StageSettings) -> list[Call]:
    if s.triplet_comparison == "pairwise":
        one = closer_messages(passage, passage, passage)
    else:
        one = same_topic_messages(passage, passage)
    return [(one, 1)] * (2 * s.triplet_anchors)  # two calls a triplet either way


def cluster_calls(passage: str, chunk_count: int, s: StageSettings) -> dict[str, list[Call]]:
    """Profiles and cluster questions (each question then validated by one judge call)."""
    clusters = min(s.max_clusters, chunk_count // 2)
    shown = [passage] * min(s.cluster_neighbours + 1, MAX_PASSAGES)
    count = s.questions_per_cluster
    per_cluster = [(cluster_question_messages(TYPICAL_SUMMARY, shown, count), 80 * count + 32)]
    per_cluster += [(relevance_messages(TYPICAL_QUESTION, passage), 1)] * count
    return {
        "cluster_profiles": [(profile_messages(shown), 96)] * clusters,
        "cluster_queries": per_cluster * clusters,
    }


def embgen_calls(passage: str, allowance: int) -> list[Call]:
    """EmbGen's questions: its stage plans its selections from its token share, each a question and a judge."""
    question = (selection_messages([], [passage, passage]), QUESTION_MAX_TOKENS)
    judge = (quality_messages(TYPICAL_QUESTION, passage), 1)
    per_pair = estimate_tokens(question[0]) + QUESTION_MAX_TOKENS + estimate_tokens(judge[0]) + 1
    return [question, judge] * max(allowance // max(per_pair, 1), 0)


def mining_calls(passage: str, questions: int, s: StageSettings) -> list[Call]:
    per_round = min(s.max_judgements_per_round, int(questions * s.train_share) * s.mining_top_k)
    return [(relevance_messages(TYPICAL_QUESTION, passage), 1)] * (per_round * s.mining_rounds)


def plan_run(chunks: pd.DataFrame, s: StageSettings, budget: RunBudget) -> list[StagePlan]:
    """Every teacher stage's plan, in the order the stages run; switched-off stages are left out."""
    passage = median_text(chunks)
    allowance = budget.allowance
    calls: dict[str, list[Call]] = {
        "labeled_triplets": triplet_calls(passage, s),
        **cluster_calls(passage, len(chunks), s),
        "entity_descriptions": entity_calls(chunks, s),
        "embgen_queries": embgen_calls(passage, budget.planning_tokens("embgen_queries")),
    }
    earlier = [plan_calls(stage, stage_calls, allowance(stage)) for stage, stage_calls in calls.items()]
    earlier = [p for p in earlier if p.stage not in s.idle_stages]
    left = sum((allowance(p.stage) or 0) - p.tokens for p in earlier)  # flows to the question stage
    carried = RunBudget(budget.total, budget.scope, budget.idle_stages, left if budget.total is not None else 0)
    question_plan = plan_calls("synthetic_queries", question_calls(chunks, s), carried.allowance("synthetic_queries"))
    if MINING_STAGE in s.idle_stages:
        return [*earlier, question_plan]
    mining = mining_calls(passage, question_plan.calls * s.questions_per_chunk, s)
    return [*earlier, question_plan, plan_calls(MINING_STAGE, mining, allowance(MINING_STAGE))]


def seconds_per_call(gaps: Sequence[float]) -> float | None:
    """The teacher's measured pace: the median gap between consecutive paid calls of one run (at least 3)."""
    usable = [g for g in gaps if 0 < g < 600]
    return statistics.median(usable) if len(usable) >= 3 else None


def stage_cost(model: str, plan: StagePlan) -> float | None:
    """USD where litellm knows the model's price, else ``None``."""
    import litellm

    scale = plan.tokens / max(plan.prompt_tokens + plan.completion_tokens, 1)  # a capped stage spends its share
    try:
        prompt, completion = litellm.cost_per_token(
            model=model,
            prompt_tokens=round(plan.prompt_tokens * scale),
            completion_tokens=round(plan.completion_tokens * scale),
        )
    except Exception:  # litellm raises assorted errors for models without a price
        return None
    return float(prompt + completion)
