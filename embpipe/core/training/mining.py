"""Iterative student–teacher mining: the student retrieves, the teacher judges, labels feed the next round.

State is a set of labels: (query, chunk) → positive or negative. Round r trains a student on the current
labels and scores it on validation; if r > 1 and the score did not beat the previous round's by more than
``min_improvement``, the loop stops (plateau) and the labels that trained the best student are kept.
Otherwise the student retrieves its top-k chunks for every training query, the teacher judges the chunks
not yet labelled for that query, and those judged relevant (P(yes) ≥ ``positive_threshold``) become extra
positives, those judged irrelevant (≤ ``negative_threshold``) hard negatives; judgements in between are kept
as ``uncertain`` and never used. Judgements carried over from an earlier run settle their queries: those
queries keep the earlier verdicts and are never judged again, so a refresh after new documents pays the
teacher only for new queries. The loop is written against three callables so it runs without Dagster,
models or a teacher in tests.

Example:
    >>> labels = [Label("q1", "c1", "positive", "synthetic", 0)]
    >>> candidates_to_judge({"q1": ["c1", "c2", "c3"]}, labels, [], top_k=2)
    [('q1', 'c2')]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from embpipe.core.synthesis.questions import flatten_ids
from embpipe.core.tables import TRAINING_LABELS, LabelSource, Role
from embpipe.llm.concurrency import ordered_map


class StopMining(RuntimeError):
    """Raised by a judge to end mining now (a spent token budget); the judgements made so far are kept."""


@dataclass(frozen=True)
class Label:
    """One (query, chunk) label, where it came from (synthetic, margin, teacher) and in which round."""

    query_id: str
    chunk_id: str
    role: str
    source: str
    round: int
    score: float | None = None


@dataclass(frozen=True)
class MiningParams:
    """Rounds, retrieval depth, judgement thresholds and limits."""

    rounds: int = 2
    top_k: int = 5
    positive_threshold: float = 0.8
    negative_threshold: float = 0.2
    min_improvement: float = 0.0
    max_judgements_per_round: int = 200


@dataclass
class RoundRecord:
    """What one round did."""

    round: int
    validation_score: float
    judged: int = 0
    new_positives: int = 0
    new_negatives: int = 0
    uncertain: int = 0
    stopped: str = ""


@dataclass
class MiningOutcome:
    """The labels to train on, every teacher judgement made, and the per-round history."""

    labels: list[Label]
    judgements: list[Label] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)
    best_round: int = 0


def candidates_to_judge(
    rankings: dict[str, Sequence[str]],
    labels: Sequence[Label],
    judged: Sequence[Label],
    top_k: int,
    settled: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """(query, chunk) pairs among each unsettled query's top-k that carry no label and were never judged."""
    known = {(label.query_id, label.chunk_id) for label in [*labels, *judged]}
    return [
        (query_id, chunk_id)
        for query_id, ranked in rankings.items()
        if query_id not in settled
        for chunk_id in list(ranked)[:top_k]
        if (query_id, chunk_id) not in known
    ]


def label_from_judgement(query_id: str, chunk_id: str, score: float, round_number: int, params: MiningParams) -> Label:
    """A teacher judgement as a positive, negative or uncertain label."""
    if score >= params.positive_threshold:
        role = Role.POSITIVE
    elif score <= params.negative_threshold:
        role = Role.NEGATIVE
    else:
        role = Role.UNCERTAIN
    return Label(query_id, chunk_id, role, LabelSource.TEACHER, round_number, score)


def judge_candidates(
    to_ask: Sequence[tuple[str, str]],
    judge: Callable[[str, str], float | None],
    round_number: int,
    params: MiningParams,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> tuple[list[Label], str]:
    """One round's teacher labels for ``to_ask`` (judged by up to ``workers`` at once, kept in ``to_ask``'s
    order), and why judging stopped early ("" when it did not)."""

    def ask(numbered: tuple[int, tuple[str, str]]) -> tuple[str, str, float | None]:
        asked, (query_id, chunk_id) = numbered
        verdict = judge(query_id, chunk_id)
        if progress:
            progress(asked, len(to_ask))
        return query_id, chunk_id, verdict

    judged, stopped = ordered_map(enumerate(to_ask, start=1), ask, workers, StopMining)
    labels = [label_from_judgement(q, c, v, round_number, params) for q, c, v in judged if v is not None]
    return labels, f"stopped: {stopped}" if stopped is not None else ""


def run_mining(
    labels: list[Label],
    train_student: Callable[[list[Label]], tuple[object, float]],
    retrieve: Callable[[object], dict[str, Sequence[str]]],
    judge: Callable[[str, str], float | None],
    params: MiningParams,
    on_round: Callable[[RoundRecord], None] | None = None,
    carried: Sequence[Label] = (),
    settled: frozenset[str] = frozenset(),
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> MiningOutcome:
    """Run up to ``params.rounds`` rounds from ``labels`` (see the module docstring).

    ``judge`` returns P(relevant) or ``None`` (no verdict: skipped); it raises ``StopMining`` to end the loop
    (a spent token budget), in which case the judgements made so far are kept. ``carried`` are earlier
    teacher judgements (kept, their verdicts used from round 1); queries in ``settled`` are never judged.
    ``progress`` gets ``(asked, to_ask)`` after each teacher judgement of a round; ``workers`` judgements run at
    once.
    """
    carried = list(carried)
    outcome = MiningOutcome(
        labels=list(labels) + [label for label in carried if label.role != Role.UNCERTAIN], judgements=carried
    )
    labels = outcome.labels
    best_score, best_labels, previous = float("-inf"), list(labels), float("-inf")
    for number in range(1, params.rounds + 1):
        student, score = train_student(outcome.labels)
        record = RoundRecord(number, score)
        if score > best_score:
            best_score, best_labels, outcome.best_round = score, list(outcome.labels), number
        if number > 1 and score <= previous + params.min_improvement:
            record.stopped = "plateau"
            outcome.rounds.append(record)
            outcome.labels = best_labels
            if on_round:
                on_round(record)
            break
        previous = score
        pending = candidates_to_judge(retrieve(student), outcome.labels, outcome.judgements, params.top_k, settled)
        new_labels, record.stopped = judge_candidates(
            pending[: params.max_judgements_per_round], judge, number, params, progress, workers
        )
        outcome.judgements.extend(new_labels)
        record.judged = len(new_labels)
        record.new_positives = sum(label.role == Role.POSITIVE for label in new_labels)
        record.new_negatives = sum(label.role == Role.NEGATIVE for label in new_labels)
        record.uncertain = sum(label.role == Role.UNCERTAIN for label in new_labels)
        outcome.labels = outcome.labels + [label for label in new_labels if label.role != Role.UNCERTAIN]
        outcome.rounds.append(record)
        if on_round:
            on_round(record)
        if record.stopped:
            break
    return outcome


def earlier_judgements(
    previous: pd.DataFrame, train_query_ids: set[str], chunk_ids: set[str]
) -> tuple[list[Label], frozenset[str]]:
    """From the last labels table: the teacher judgements still valid, and the training queries they settle.

    A query is settled when it is still a training query and the last table labelled it; a judgement is kept
    when its query is settled, its chunk still exists (a changed chunk has a new id and is judged anew) and it
    was a training label of the last table (``used``): a judgement the last run made but did not train on
    (a round after its best, an uncertain verdict) never becomes a label later, so the labels of untouched
    queries are exactly the last run's, whatever else changed.
    """
    settled = frozenset(set(previous["query_id"].astype(str)) & train_query_ids)
    judged = previous[
        previous["used"].astype(bool)
        & (previous["source"] == LabelSource.TEACHER)
        & previous["query_id"].astype(str).isin(settled)
        & previous["chunk_id"].astype(str).isin(chunk_ids)
    ]
    labels = [
        Label(str(r.query_id), str(r.chunk_id), str(r.role), LabelSource.TEACHER, int(r.round), float(r.score))
        for r in judged.itertuples(index=False)
    ]
    return labels, settled


def starting_labels(train: pd.DataFrame, negatives: pd.DataFrame) -> list[Label]:
    """The synthetic positives of the training queries and their margin negatives."""
    labels = [
        Label(str(q), c, Role.POSITIVE, LabelSource.SYNTHETIC, 0)
        for q, positives in zip(train["query_id"], train["positive_chunk_ids"], strict=True)
        for c in flatten_ids(positives)
    ]
    for row in negatives.itertuples(index=False):
        labels += [
            Label(str(row.query_id), str(c), Role.NEGATIVE, LabelSource.MARGIN, 0, float(s))
            for c, s in zip(flatten_ids(row.negative_chunk_ids), list(row.negative_scores), strict=True)
        ]
    return labels


def labels_frame(labels: list[Label], judgements: list[Label], chunks: pd.DataFrame) -> pd.DataFrame:
    """Labels used for training plus every teacher judgement left out, each with its source document."""
    used = set(labels)
    rows = [(label, True) for label in labels] + [(j, False) for j in judgements if j not in used]
    doc_of = dict(zip(chunks["chunk_id"].astype(str), chunks["doc_id"].astype(str), strict=True))
    return TRAINING_LABELS.frame(
        {
            "query_id": [label.query_id for label, _ in rows],
            "chunk_id": [label.chunk_id for label, _ in rows],
            "doc_id": [doc_of.get(label.chunk_id, "") for label, _ in rows],
            "role": [label.role for label, _ in rows],
            "source": [label.source for label, _ in rows],
            "round": [label.round for label, _ in rows],
            "score": [float("nan") if label.score is None else label.score for label, _ in rows],
            "used": [flag for _, flag in rows],
        }
    )
