"""Bootstrap intervals, wins and losses, the Markdown report and its plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embpipe.core.evaluation.beir import BeirDataset
from embpipe.core.evaluation.metrics import paired_test
from embpipe.core.evaluation.report import compare_models, per_query_values
from embpipe.core.evaluation.report_render import markdown_report, save_report
from embpipe.core.evaluation.significance import bootstrap_interval, clearly_worse, sign_flip_p_value, win_loss
from embpipe.core.training.examples import subsample_corpus


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    before = np.array([0.2, 0.4, 0.5, 0.1, 0.9, 0.3])
    after = before + np.array([0.1, 0.2, -0.1, 0.3, 0.0, 0.1])
    interval = bootstrap_interval(before, after, seed=1)
    assert interval.mean == pytest.approx(0.1)
    assert interval.low < 0.1 < interval.high
    assert interval == bootstrap_interval(before, after, seed=1)


def test_constant_improvement_has_a_zero_width_interval():
    interval = bootstrap_interval(np.zeros(5), np.full(5, 0.25))
    assert (interval.low, interval.high) == pytest.approx((0.25, 0.25))


def test_the_sign_flip_test_finds_a_consistent_gain_and_not_a_mixed_one():
    # three queries each +1: of the 8 sign patterns only all-plus and all-minus are as extreme, p = 2/8
    assert sign_flip_p_value(np.zeros(3), np.ones(3), samples=20000, seed=0) == pytest.approx(0.25, abs=0.02)
    assert sign_flip_p_value(np.zeros(30), np.full(30, 0.1)) < 0.001
    assert sign_flip_p_value(np.zeros(4), np.array([0.5, -0.5, 0.5, -0.5])) == 1.0
    assert sign_flip_p_value(np.ones(4), np.ones(4)) == 1.0


def test_only_a_drop_that_chance_does_not_explain_is_clearly_worse():
    base = np.ones(30)
    assert clearly_worse(base, np.full(30, 0.9))  # every query lower
    assert not clearly_worse(base, np.r_[np.ones(28), [0.5, 0.5]])  # two queries lower: within chance
    assert not clearly_worse(base, np.full(30, 1.0)) and not clearly_worse(np.zeros(30), np.full(30, 0.1))
    assert not clearly_worse(np.zeros(0), np.zeros(0))


def test_a_gain_on_two_of_sixty_queries_is_not_called_significant():
    """The demo's hand-written questions as one run ranked them (top 5, ranks as scores): the tuned model did
    better on 2 of 60 queries at nDCG@5, whose exact sign-flip p is 0.5; ranx's Fisher test returned 0."""
    case = json.loads((Path(__file__).parent / "data" / "p_value_case.json").read_text())
    qrels = {q: v["relevant"] for q, v in case.items()}
    runs = {m: {q: {d: float(5 - i) for i, d in enumerate(v[m])} for q, v in case.items()} for m in ("base", "tuned")}
    values = per_query_values(qrels, runs, "ndcg@5")
    assert int(((values["tuned"] - values["base"]).abs() > 1e-9).sum()) == 2
    assert 0.4 < paired_test(qrels, runs, "ndcg@5")["tuned"] < 0.6


def test_wins_losses_ties():
    counts = win_loss(np.array([0.5, 0.5, 0.5]), np.array([0.7, 0.5, 0.1]))
    assert (counts.wins, counts.losses, counts.ties) == (1, 1, 1)


def test_subsample_keeps_judged_passages():
    target = BeirDataset("t", {f"d{i}": "x" for i in range(100)}, {"q": "?"}, {"q": {"d7": 1, "d93": 1}})
    small = subsample_corpus(target, 10, seed=0)
    assert len(small.corpus) == 10 and {"d7", "d93"} <= set(small.corpus)
    assert subsample_corpus(target, 0, seed=0) is target


def test_report_compares_models_and_renders(tmp_path):
    corpus = {"d1": "fan failure alert", "d2": "mail relay login", "d3": "disk rebuild speed"}
    queries = {"q1": "fan alert", "q2": "relay login fails", "q3": "rebuild slow"}
    target = BeirDataset("toy", corpus, queries, {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}})
    vectors = {"fan": [1, 0, 0], "relay": [0, 1, 0], "login": [0, 1, 0], "mail": [0, 1, 0], "rebuild": [0, 0, 1]}

    def keyword_encoder(texts, role):
        return np.array([np.sum([vectors.get(w, [0, 0, 0]) for w in t.split()], axis=0) + 1e-3 for t in texts])

    def constant_encoder(texts, role):
        return np.ones((len(texts), 3))

    comparison = compare_models(target, {"base": constant_encoder, "tuned": keyword_encoder}, top_k=3)
    table = comparison.table
    tuned = table[(table.model == "tuned") & (table.metric == "accuracy@5")].iloc[0]
    assert tuned.value == 1.0 and tuned.wins + tuned.losses <= 3
    ndcg = table[(table.model == "tuned") & (table.metric == "ndcg@1")].iloc[0]
    assert ndcg.value == 1.0 and ndcg.delta > 0
    assert set(comparison.per_query_ndcg10.columns) == {"bm25", "base", "tuned"}
    markdown = markdown_report(table)
    assert "## toy (3 queries)" in markdown and "Δ vs base" in markdown
    written = save_report(tmp_path / "report", markdown, [comparison])
    assert [p.name for p in written] == ["report.md", "toy-metric-vs-k.png", "toy-ndcg10-delta-histogram.png"]
    assert all(p.stat().st_size > 0 for p in written)
