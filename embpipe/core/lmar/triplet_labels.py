"""LMAR triplet labelling: the teacher says which of an anchor's two candidates is closer.

Ambiguous verdicts (within the margin of 0.5) and failed items are counted and dropped; the rest become
(anchor, positive, negative, confidence) rows, the confidence being the teacher's probability for the kept
order. The loop stops cleanly, keeping what it has, when the run's token budget forbids the next call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from embpipe.core.lmar.triplets import TextTriplet
from embpipe.core.tables import LABELED_TRIPLETS
from embpipe.core.training.examples import chunk_passages
from embpipe.llm.budget import BudgetStop, within_budget
from embpipe.llm.closer_passage import CloserVerdict, judge_closer
from embpipe.llm.teacher import Teacher

STAGE = "labeled_triplets"


def empty_triplets() -> pd.DataFrame:
    """A triplet table with no rows."""
    return LABELED_TRIPLETS.empty()


def label_triplets(
    teacher: Teacher,
    triples: Sequence[tuple[int, int, int]],
    ids: Sequence[str],
    texts: Sequence[str],
    margin: float,
    comparison: str,
    stop: BudgetStop,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The labelled triplets of ``triples`` (positions into ``ids``/``texts``) and the count of each verdict."""

    def label(numbered: tuple[int, tuple[int, int, int]]) -> tuple[tuple[int, int, int], CloserVerdict | None]:
        number, (anchor, first, second) = numbered
        verdict = judge_closer(
            teacher, STAGE, ids[anchor], texts[anchor], texts[first], texts[second], margin, comparison
        )
        if progress:
            progress(number, len(triples))
        return (anchor, first, second), verdict

    rows, verdicts = [], {"first": 0, "second": 0, "ambiguous": 0, "failed": 0}
    judged = within_budget(enumerate(triples, start=1), label, stop, teacher.concurrency)
    for (anchor, first, second), verdict in judged:
        verdicts[verdict.closer if verdict else "failed"] += 1
        if verdict is None or verdict.closer == "ambiguous":
            continue
        positive, negative = (first, second) if verdict.closer == "first" else (second, first)
        confidence = verdict.confidence if verdict.closer == "first" else 1 - verdict.confidence
        rows.append((ids[anchor], ids[positive], ids[negative], float(confidence)))
    teacher.settle(STAGE)
    return LABELED_TRIPLETS.frame(rows), verdicts


def text_triplets(triplets: pd.DataFrame, chunks: pd.DataFrame) -> list[TextTriplet]:
    """The labelled triplets as passages (title + text), weighted by confidence; rows naming a missing chunk
    are left out."""
    passages = dict(zip(chunks["chunk_id"].astype(str), chunk_passages(chunks), strict=True))
    rows = triplets[LABELED_TRIPLETS.names].itertuples(index=False)
    return [
        TextTriplet(passages[a], passages[p], passages[n], w)
        for a, p, n, w in rows
        if a in passages and p in passages and n in passages
    ]
