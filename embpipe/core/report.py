"""Side-by-side retrieval comparison: BM25, the base model and the tuned model on one BEIR-style target.

Example:
    >>> table = compare_runs(qrels, {"bm25": run_a, "base": run_b}, ["ndcg@10"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from embpipe.core.beir import Qrels
from embpipe.core.bm25 import Bm25Index
from embpipe.core.evaluation import DEFAULT_METRICS, Run, evaluate, paired_test, run_from_search
from embpipe.core.retrieval import SearchBackend, normalize, top_k

Encoder = Callable[[list[str]], np.ndarray]


def dense_run(
    encode: Encoder,
    corpus: dict[str, str],
    queries: dict[str, str],
    k: int = 100,
    corpus_vectors: np.ndarray | None = None,
    backend: SearchBackend = SearchBackend.AUTO,
) -> Run:
    """Top-k run of a dense encoder (corpus vectors may be passed in when already computed)."""
    doc_ids = list(corpus)
    vectors = corpus_vectors if corpus_vectors is not None else encode([corpus[d] for d in doc_ids])
    query_ids = list(queries)
    result = top_k(normalize(encode([queries[q] for q in query_ids])), normalize(vectors), k, backend)
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


def compare_runs(
    qrels: Qrels, runs: dict[str, Run], metrics: Sequence[str] = DEFAULT_METRICS, reference: str = "base"
) -> pd.DataFrame:
    """One row per (model, metric) with the value and, for models other than ``reference``, the paired
    randomisation-test p-value on that metric against ``reference``."""
    rows = []
    for model, run in runs.items():
        for metric, value in evaluate(qrels, run, metrics).items():
            rows.append({"model": model, "metric": metric, "value": value, "p_value": np.nan})
    table = pd.DataFrame(rows)
    if reference in runs and len(runs) > 1:
        ordered = {reference: runs[reference], **{m: r for m, r in runs.items() if m != reference}}
        for metric in metrics:
            for model, p in paired_test(qrels, ordered, metric).items():
                table.loc[(table.model == model) & (table.metric == metric), "p_value"] = p
    return table


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """Metric rows × model columns (for printing)."""
    wide = table.pivot_table(index="metric", columns="model", values="value", sort=False)
    return wide[[c for c in table["model"].unique() if c in wide.columns]]
