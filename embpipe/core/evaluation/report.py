"""Side-by-side retrieval comparison: BM25, the base model and the tuned model on one BEIR-style target.

Example:
    >>> table = compare_runs(qrels, {"bm25": run_a, "base": run_b}, ["ndcg@10"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embpipe.core.embedding import RoleEncoder
from embpipe.core.evaluation.beir import BeirDataset, Qrels
from embpipe.core.evaluation.bm25 import Bm25Index
from embpipe.core.evaluation.metrics import DEFAULT_METRICS, Run, evaluate, paired_test, per_query, run_from_search
from embpipe.core.evaluation.report_render import curve_metrics
from embpipe.core.evaluation.retrieval import SearchBackend, normalize, top_k
from embpipe.core.evaluation.significance import bootstrap_interval, win_loss


def dense_run(
    encode: RoleEncoder,
    corpus: dict[str, str],
    queries: dict[str, str],
    k: int = 100,
    corpus_vectors: np.ndarray | None = None,
    backend: SearchBackend = SearchBackend.AUTO,
) -> Run:
    """Top-k run of a dense encoder (corpus vectors, encoded as documents, may be passed in when already computed)."""
    doc_ids = list(corpus)
    vectors = corpus_vectors if corpus_vectors is not None else encode([corpus[d] for d in doc_ids], "document")
    query_ids = list(queries)
    result = top_k(normalize(encode([queries[q] for q in query_ids], "query")), normalize(vectors), k, backend)
    return run_from_search(query_ids, doc_ids, result)


def bm25_run(corpus: dict[str, str], queries: dict[str, str], k: int = 100) -> Run:
    """Top-k BM25 run (k1 0.9, b 0.4)."""
    doc_ids = list(corpus)
    index = Bm25Index.build([corpus[d] for d in doc_ids])
    hits = index.search([queries[q] for q in queries], k)
    return {
        q: {doc_ids[i]: s for i, s in zip(idx, scores, strict=True)}
        for q, (idx, scores) in zip(queries, hits, strict=True)
    }


REPORT_COLUMNS = ["model", "metric", "value", "p_value", "delta", "ci_low", "ci_high", "wins", "losses"]


def per_query_values(qrels: Qrels, runs: dict[str, Run], metric: str) -> pd.DataFrame:
    """Query × model table of one metric."""
    return pd.DataFrame({model: per_query(qrels, run, metric) for model, run in runs.items()}).sort_index()


def compare_runs(
    qrels: Qrels, runs: dict[str, Run], metrics: Sequence[str] = DEFAULT_METRICS, reference: str = "base"
) -> pd.DataFrame:
    """One row per (model, metric): the value and, against ``reference``, the paired randomisation-test
    p-value, the mean per-query delta with its bootstrap 95% interval, and per-query wins and losses."""
    rows = []
    p_values = {}
    if reference in runs and len(runs) > 1:
        ordered = {reference: runs[reference], **{m: r for m, r in runs.items() if m != reference}}
        p_values = {metric: paired_test(qrels, ordered, metric) for metric in metrics}
    for metric in metrics:
        table = per_query_values(qrels, runs, metric)
        for model in runs:
            row = {"model": model, "metric": metric, "value": float(table[model].mean())}
            if model != reference and reference in runs:
                interval = bootstrap_interval(table[reference].to_numpy(), table[model].to_numpy())
                counts = win_loss(table[reference].to_numpy(), table[model].to_numpy())
                row.update(
                    p_value=p_values.get(metric, {}).get(model, np.nan),
                    delta=interval.mean,
                    ci_low=interval.low,
                    ci_high=interval.high,
                    wins=counts.wins,
                    losses=counts.losses,
                )
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=REPORT_COLUMNS)


@dataclass
class TargetComparison:
    """Everything the report needs about one evaluation target."""

    table: pd.DataFrame
    curves: pd.DataFrame
    per_query_ndcg10: pd.DataFrame


def compare_models(
    target: BeirDataset,
    encoders: dict[str, RoleEncoder],
    top_k: int = 100,
    precomputed: dict[str, np.ndarray] | None = None,
    reference: str = "base",
) -> TargetComparison:
    """BM25 and every dense encoder on ``target``: metrics with tests against ``reference``, k-curves,
    and per-query nDCG@10."""
    precomputed = precomputed or {}
    runs = {"bm25": bm25_run(target.corpus, target.queries, top_k)}
    for name, encode in encoders.items():
        runs[name] = dense_run(encode, target.corpus, target.queries, top_k, precomputed.get(name))
    table = compare_runs(target.qrels, runs, DEFAULT_METRICS, reference)
    table.insert(0, "target", target.name)
    table.insert(1, "n_queries", len(target.qrels))
    curves = pd.DataFrame(
        [
            {"model": m, "metric": k, "value": v}
            for m, run in runs.items()
            for k, v in evaluate(target.qrels, run, curve_metrics()).items()
        ]
    )
    return TargetComparison(table, curves, per_query_values(target.qrels, runs, "ndcg@10"))


def headline_metrics(report: pd.DataFrame) -> dict[str, float]:
    """Per target: the tuned model's nDCG@10 gain over the base model and its paired-test p-value."""
    headline = {}
    for target, part in report.groupby("target", sort=False):
        tuned = part[(part.model == "tuned") & (part.metric == "ndcg@10")].iloc[0]
        headline[f"{target}.ndcg@10.tuned_minus_base"] = float(tuned.delta)
        headline[f"{target}.ndcg@10.p_value"] = float(tuned.p_value)
    return headline
