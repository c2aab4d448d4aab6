"""Grouped splits never let a held-out query share a document with training."""

from __future__ import annotations

from collections import Counter

import pytest

from embpipe.core.synthesis.splits import assign_splits, document_groups, leaking_queries


def test_groups_join_queries_through_shared_documents():
    groups = document_groups({"a": ["d1"], "b": ["d1", "d2"], "c": ["d2"], "e": ["d3"]})
    assert sorted(groups) == [["a", "b", "c"], ["e"]]


def test_assignment_has_no_leaks_and_roughly_follows_fractions():
    query_docs = {f"q{i}": [f"d{i // 2}"] for i in range(60)}
    assignment = assign_splits(query_docs, (0.7, 0.15, 0.15), seed=3)
    assert leaking_queries(query_docs, assignment) == []
    counts = Counter(assignment.values())
    assert set(counts) == {"train", "validation", "test"}
    assert 36 <= counts["train"] <= 48
    assert assignment == assign_splits(query_docs, (0.7, 0.15, 0.15), seed=3)


def test_leak_detector_finds_shared_documents():
    assert leaking_queries({"a": ["d1"], "b": ["d1"]}, {"a": "train", "b": "test"}) == ["b"]


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits({"a": ["d"]}, (0.5, 0.2, 0.2), seed=0)


def test_adding_a_document_moves_no_existing_query():
    query_docs = {f"q{i}": [f"d{i // 2}"] for i in range(60)}
    before = assign_splits(query_docs, (0.6, 0.2, 0.2), seed=1)
    after = assign_splits({**query_docs, "new": ["d-new"]}, (0.6, 0.2, 0.2), seed=1)
    assert {q: after[q] for q in before} == before


def test_small_corpora_still_get_validation_and_test_groups():
    assignment = assign_splits({"a": ["d1"], "b": ["d2"], "c": ["d3"]}, (0.8, 0.1, 0.1), seed=0)
    assert sorted(assignment.values()) == ["test", "train", "validation"]


def test_a_budget_cut_chunk_selection_still_splits_by_the_fractions():
    import pandas as pd

    from embpipe.core.synthesis.questions import select_chunks

    chunks = pd.DataFrame(
        {"chunk_id": [f"c{i}" for i in range(400)], "doc_id": [f"d{i}" for i in range(400)], "n_tokens": 50}
    )
    picked = select_chunks(chunks, 60, 20, seed=42)  # the budget stops after the first documents in hash order
    assignment = assign_splits({f"q{d}": [d] for d in picked["doc_id"]}, (0.6, 0.2, 0.2), seed=42)
    counts = {name: list(assignment.values()).count(name) for name in ("train", "validation", "test")}
    assert 20 <= counts["train"] <= 52 and counts["validation"] >= 4 and counts["test"] >= 4
