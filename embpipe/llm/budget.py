"""One token budget per run, split into per-stage shares: the one place for how much each teacher stage may use.

A *run* is one ``embpipe run`` (every pass of the stale-only runner, each a Dagster run of its own, carries
the same ``BUDGET_SCOPE_TAG``), or one Dagster run started any other way (the web UI, the schedule, the
benchmark script): the ledger counts every call of that scope, cached or paid, so a resumed run stops where an
uninterrupted one would. The cap is split into ``STAGE_SHARES``: no stage can take what the stages after it
need. The question stage also gets the shares of stages whose method is switched off and what the stages
before it left unspent when they finished (``TeacherStore.settle``).

Example:
    >>> budget = RunBudget(total=100_000, scope="r1", idle_stages=frozenset(METHOD_STAGES["embgen"]))
    >>> budget.allowance("labeled_triplets"), budget.allowance("synthetic_queries")
    (10000, 55000)
    >>> budget_stage("embgen_proximity"), estimate_tokens([{"role": "user", "content": "x" * 300}])
    ('embgen_queries', 108)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from embpipe.llm.concurrency import ordered_map

T = TypeVar("T")
R = TypeVar("R")

BUDGET_SCOPE_TAG = "embpipe/budget_scope"
DEFAULT_RUN_TOKEN_BUDGET = 60_000  # the default setting the techqa benchmark measures: about 2 hours on 2 cores
QUESTION_STAGE = "synthetic_queries"
MINING_STAGE = "mining_rounds"  # after the question stage: switched off, its share goes to the questions

# Fraction of a run's token budget each teacher stage may use (they sum to 1). The question stage also gets the
# shares of stages that are switched off.
STAGE_SHARES: dict[str, float] = {
    "labeled_triplets": 0.10,
    "cluster_profiles": 0.05,
    "cluster_queries": 0.10,
    "entity_descriptions": 0.05,
    "embgen_queries": 0.10,
    "synthetic_queries": 0.40,
    "mining_rounds": 0.20,
}
METHOD_STAGES: dict[str, tuple[str, ...]] = {
    "lmar": ("labeled_triplets", "cluster_profiles", "cluster_queries"),
    "embgen": ("entity_descriptions", "embgen_queries"),
}
MESSAGE_OVERHEAD_TOKENS = 8


class TokenBudgetExhausted(RuntimeError):
    """The next call could pass the run's token budget or its stage's share of it, so it was not made.

    The budget counts every call of the run, cached or paid, so a resumed run stops exactly where an
    uninterrupted one would have.
    """


def budget_stage(ledger_stage: str) -> str:
    """The stage whose share a ledger stage spends (EmbGen's per-strategy stages spend ``embgen_queries``)."""
    return "embgen_queries" if ledger_stage.startswith("embgen_") else ledger_stage


def estimate_text_tokens(characters: int) -> int:
    """A deliberately high estimate of a text's tokens: one per three characters."""
    return characters // 3


def estimate_tokens(messages: list[dict]) -> int:
    """The one estimate of a prompt's tokens that budget checks and plans use."""
    text = sum(estimate_text_tokens(len(str(m.get("content", "")))) for m in messages)
    return text + MESSAGE_OVERHEAD_TOKENS * len(messages)


@dataclass(frozen=True)
class RunBudget:
    """A run's token cap (``None``: no cap), the ledger scope it counts, the stages switched off, and what the
    stages before the question stage left unspent (``carried``)."""

    total: int | None
    scope: str
    idle_stages: frozenset[str] = field(default_factory=frozenset)
    carried: int = 0

    def allowance(self, stage: str) -> int | None:
        """Most tokens ``stage`` may use in this run; ``None`` without a cap. Unknown stages get the whole cap."""
        if self.total is None:
            return None
        if stage not in STAGE_SHARES:
            return self.total
        share = STAGE_SHARES[stage]
        if stage == QUESTION_STAGE:
            share += sum(STAGE_SHARES[s] for s in self.idle_stages if s in STAGE_SHARES and s != QUESTION_STAGE)
            return int(self.total * share) + self.carried
        return int(self.total * share)

    def earlier_stages(self) -> list[str]:
        """The stages before the question stage that run in this run (their leftovers flow to it)."""
        return [s for stages in METHOD_STAGES.values() for s in stages if s not in self.idle_stages]

    def planning_tokens(self, stage: str) -> int:
        """What a stage that plans its work from a token figure (EmbGen) plans with: its allowance, or its
        share of ``DEFAULT_RUN_TOKEN_BUDGET`` when the run has no cap."""
        allowance = self.allowance(stage)
        if allowance is not None:
            return allowance
        return RunBudget(DEFAULT_RUN_TOKEN_BUDGET, self.scope, self.idle_stages).allowance(stage) or 0


def overrun(budget: RunBudget, stage: str, needed: int, spent_total: int, spent_stage: int) -> str | None:
    """Why a call estimated at ``needed`` tokens may not be made, or ``None`` when it fits."""
    if budget.total is None:
        return None
    if spent_total + needed > budget.total:
        return (
            f"the run's token budget {budget.total} would be exceeded (spent {spent_total}, next call up to "
            f"{needed}); raise --token-budget to generate more"
        )
    allowance = budget.allowance(budget_stage(stage))
    if allowance is not None and spent_stage + needed > allowance:
        return (
            f"{budget_stage(stage)}'s share of the run's token budget ({allowance} of {budget.total}) would be "
            f"exceeded (spent {spent_stage}, next call up to {needed}); raise --token-budget to generate more"
        )
    return None


@dataclass
class BudgetStop:
    """Why a stage stopped before its last item (empty when it did not); recorded in the asset's metadata."""

    message: str = ""

    def metadata(self) -> str:
        return self.message or "none"


def within_budget(items: Iterable[T], step: Callable[[T], R], stop: BudgetStop, workers: int = 1) -> list[R]:
    """``step`` of each item (on up to ``workers`` threads, results in the items' order) until the budget forbids
    a call: the results so far, the stop in ``stop``.

    Every teacher stage loops through this, so a budget stop ends a stage the same way everywhere: what was
    made is kept, and the reason is recorded.
    """
    results, stopped = ordered_map(items, step, workers, TokenBudgetExhausted)
    if stopped is not None:
        stop.message = str(stopped)
    return results
