"""Search, BM25 and ranx metrics on inputs small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embpipe.core.evaluation.bm25 import Bm25Index
from embpipe.core.evaluation.metrics import evaluate, per_query, run_from_search
from embpipe.core.evaluation.report import compare_runs
from embpipe.core.evaluation.retrieval import SearchBackend, exact_top_k, faiss_available, normalize, top_k

CORPUS = normalize(np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1]], dtype=np.float32))


def test_exact_top_k_orders_by_cosine():
    result = exact_top_k(normalize(np.array([[1, 0.1, 0]])), CORPUS, k=2)
    assert result.indices.tolist() == [[0, 1]]
    assert result.scores[0, 0] > result.scores[0, 1]


def test_exact_search_blocks_agree_with_one_block():
    rng = np.random.default_rng(0)
    queries, corpus = normalize(rng.normal(size=(50, 8))), normalize(rng.normal(size=(40, 8)))
    assert np.array_equal(exact_top_k(queries, corpus, 5, block=7).indices, exact_top_k(queries, corpus, 5).indices)


@pytest.mark.skipif(not faiss_available(), reason="faiss extra not installed")
def test_faiss_matches_exact_search():
    rng = np.random.default_rng(1)
    queries, corpus = normalize(rng.normal(size=(20, 16))), normalize(rng.normal(size=(100, 16)))
    exact = top_k(queries, corpus, 5, SearchBackend.EXACT)
    assert np.array_equal(top_k(queries, corpus, 5, SearchBackend.FAISS).indices, exact.indices)


def test_hand_computed_metrics():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}}
    run = {"q1": {"d9": 0.9, "d1": 0.8}, "q2": {"d2": 0.9, "d7": 0.5, "d3": 0.4}}
    values = evaluate(qrels, run, ["mrr@5", "recall@2", "accuracy@1", "ndcg@3"])
    assert values["mrr@5"] == pytest.approx((0.5 + 1.0) / 2)
    assert values["recall@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert values["accuracy@1"] == pytest.approx(0.5)
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert values["ndcg@3"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    assert per_query(qrels, run, "mrr@5") == {"q1": pytest.approx(0.5), "q2": pytest.approx(1.0)}


def test_query_without_results_scores_zero():
    assert evaluate({"q1": {"d1": 1}}, {}, ["mrr@10"])["mrr@10"] == 0.0


def test_run_from_search_maps_indices_to_ids():
    result = exact_top_k(CORPUS[:1], CORPUS, 2)
    assert list(run_from_search(["q"], ["a", "b", "c"], result)["q"]) == ["a", "b"]


def test_bm25_prefers_rare_matching_terms():
    index = Bm25Index.build(["replication stalls error", "backup error", "fan failure alert"])
    order, scores = index.search(["replication error"], k=3)[0]
    assert order[:2] == [0, 1] and scores[0] > scores[1]
    assert 2 not in order  # no shared term, no score


def test_compare_runs_reports_p_values_against_base():
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(12)}
    perfect = {q: {next(iter(d)): 1.0} for q, d in qrels.items()}
    wrong = {q: {"dx": 1.0} for q in qrels}
    table = compare_runs(qrels, {"base": wrong, "tuned": perfect}, ["ndcg@10"])
    tuned = table[(table.model == "tuned")].iloc[0]
    assert tuned.value == 1.0 and tuned.p_value < 0.01
    assert math.isnan(table[(table.model == "base")].iloc[0].p_value)
