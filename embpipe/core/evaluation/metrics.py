"""Retrieval metrics with ranx, on the BEIR contract (qrels: query → doc → grade; run: query → doc → score).

One adapter (``to_ranx``) casts ids to ``str`` and scores to ``float64`` as ranx requires. ``accuracy@k``
is LMAR's Accuracy@k: the hit rate (a relevant document in the top k), ranx's ``hit_rate@k``.

Example:
    >>> qrels = {"q1": {"d1": 1}}
    >>> run = {"q1": {"d2": 0.9, "d1": 0.5}}
    >>> round(evaluate(qrels, run, ["mrr@5"])["mrr@5"], 2)
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embpipe.core.evaluation.beir import Qrels
from embpipe.core.evaluation.retrieval import SearchResult

Run = dict[str, dict[str, float]]

DEFAULT_METRICS = (
    "ndcg@1",
    "ndcg@5",
    "ndcg@10",
    "ndcg@100",
    "recall@10",
    "recall@100",
    "mrr@5",
    "mrr@10",
    "map@100",
    "precision@10",
    "accuracy@5",
)


def ranx_name(metric: str) -> str:
    """ranx's name for a metric (``accuracy@k`` is ``hit_rate@k``)."""
    return metric.replace("accuracy@", "hit_rate@")


def to_ranx(qrels: Qrels, run: Run):
    """ranx ``Qrels`` and ``Run`` with object-dtype ids and float64 scores, restricted to judged queries."""
    from ranx import Qrels as RanxQrels
    from ranx import Run as RanxRun

    judged = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items() if docs}
    scored = {str(q): {str(d): float(s) for d, s in run.get(q, {}).items()} for q in judged}
    for _query, docs in scored.items():
        if not docs:  # ranx needs at least one entry per query; an empty result scores zero.
            docs["__no_result__"] = 0.0
    return RanxQrels(judged), RanxRun(scored)


def evaluate(qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries."""
    from ranx import evaluate as ranx_evaluate

    ranx_qrels, ranx_run = to_ranx(qrels, run)
    names = [ranx_name(m) for m in metrics]
    values = ranx_evaluate(ranx_qrels, ranx_run, names, make_comparable=True)
    values = values if isinstance(values, dict) else {names[0]: values}
    return {m: float(values[ranx_name(m)]) for m in metrics}


def per_query(qrels: Qrels, run: Run, metric: str) -> dict[str, float]:
    """One metric per judged query."""
    from ranx import evaluate as ranx_evaluate

    ranx_qrels, ranx_run = to_ranx(qrels, run)
    ranx_evaluate(ranx_qrels, ranx_run, ranx_name(metric), make_comparable=True)
    return {q: float(v) for q, v in ranx_run.scores[ranx_name(metric)].items()}


def run_from_search(query_ids: Sequence[str], doc_ids: Sequence[str], result: SearchResult) -> Run:
    """A BEIR run from a top-k search result (row i belongs to ``query_ids[i]``)."""
    return {
        str(q): {str(doc_ids[j]): float(s) for j, s in zip(idx, scores, strict=True) if j >= 0}
        for q, idx, scores in zip(query_ids, result.indices, result.scores, strict=True)
    }


def paired_test(qrels: Qrels, runs: dict[str, Run], metric: str = "ndcg@10", seed: int = 42) -> dict[str, float]:
    """Two-sided paired randomisation-test p-values of each run against the first, on ranx's per-query values.

    The test flips the sign of each query's difference at random (``sign_flip_p_value``). ranx's own ``compare``
    (Fisher's test) compares the permuted means with the observed one without a tolerance, and returned p = 0
    for a gain on 2 of 60 queries whose exact p is 0.5 (``embpipe_tests/data/p_value_case.json``)."""
    from embpipe.core.evaluation.significance import sign_flip_p_value

    names = list(runs)
    values = {name: per_query(qrels, runs[name], metric) for name in names}
    queries = sorted(values[names[0]])
    reference = np.array([values[names[0]][q] for q in queries])
    return {
        name: sign_flip_p_value(reference, np.array([values[name].get(q, 0.0) for q in queries]), seed=seed)
        for name in names[1:]
    }
