"""EmbGen: entity pairs, their per-document deduplication and reassembly, and the chunk-sampling strategies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embpipe.core.entities import (
    chunks_by_cluster,
    cluster_centroids,
    deduplicate_per_document,
    parse_entities,
    reassemble,
)
from embpipe.core.sampling import (
    inter_cluster_selections,
    intra_cluster_selections,
    plan_mix,
    proximity_selections,
)
from embpipe.llm.teacher import TeacherOutputError


def unit(rows: list[list[float]]) -> np.ndarray:
    vectors = np.array(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_entity_replies_keep_only_valid_pairs_and_fail_when_none_is_left():
    good = {"entity": "SMTP relay", "description": "Sends the alert e-mails."}
    reply = {"entities": [{"entity": "x"}, {"entity": "Fan 3", "description": "short"}, "junk", good]}
    assert parse_entities(reply, 4) == [("SMTP relay", "Sends the alert e-mails.")]
    with pytest.raises(TeacherOutputError):
        parse_entities({"entities": [{"entity": "a", "description": "b"}]}, 4)


def test_duplicates_merge_within_a_document_but_not_across_documents():
    pairs = pd.DataFrame(
        {
            "doc_id": ["d1", "d1", "d1", "d2"],
            "chunk_id": ["c1", "c2", "c2", "c3"],
            "entity": ["The Fan-3", "fan 3", "SMTP relay", "Fan 3"],
            "description": ["first description", "second description", "relay description", "other document"],
        }
    )
    frame = deduplicate_per_document(pairs)
    assert frame["entity_id"].tolist() == ["d1:fan 3", "d1:smtp relay", "d2:fan 3"]
    assert frame.loc[0, "description"] == "first description" and frame.loc[0, "chunk_ids"] == ["c1", "c2"]
    assert frame.loc[2, "chunk_ids"] == ["c3"]


def test_reassembly_groups_similar_descriptions_and_links_clusters_to_their_chunks():
    entities = pd.DataFrame(
        {"chunk_ids": [["c1"], ["c2", "c1"], ["c3"], ["c4"]], "entity": list("abcd"), "description": list("wxyz")}
    )
    vectors = unit([[1, 0], [0.98, 0.2], [0, 1], [0.2, 0.98]])  # rows 0,1 alike; rows 2,3 alike
    labels = reassemble(vectors, neighbours=3, min_similarity=0.9, seed=0)
    assert labels.tolist() == [0, 0, 1, 1]
    assert chunks_by_cluster(entities, labels) == {0: ["c1", "c2"], 1: ["c3", "c4"]}
    centroids = cluster_centroids(vectors, labels)
    assert centroids[0] @ vectors[0] > 0.99 and centroids[0] @ vectors[2] < 0.3


def test_proximity_adds_the_seed_chunks_nearest_neighbours_as_further_hops():
    ids = ["a", "b", "c", "d", "e"]
    vectors = unit([[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.3, 0], [0, 0, 1], [0, 0.1, 1]])
    selections = proximity_selections(ids, vectors, count=5, max_hops=3, seed=1)
    assert sorted(s.chunk_ids[0] for s in selections) == ids  # every chunk seeds once
    nearest = {"a": ["b", "c"], "b": ["a", "c"], "c": ["b", "a"], "d": ["e"], "e": ["d"]}  # only the near ones
    for selection in selections:
        seed, *hops = selection.chunk_ids
        assert 1 <= len(selection.chunk_ids) <= 3 and hops == nearest[seed][: len(hops)]
    assert {len(s.chunk_ids) for s in selections} != {1}  # some questions are multi-hop


def test_intra_cluster_draws_distinct_chunks_from_one_shared_cluster():
    clusters = {0: ["a", "b", "c", "d"], 1: ["e"], 2: ["f", "g"]}
    selections = intra_cluster_selections(clusters, count=5, max_hops=3, seed=0)
    assert [s.cluster_ids for s in selections] == [(0,), (2,)]  # singleton clusters share nothing
    for selection in selections:
        (cluster,) = selection.cluster_ids
        assert set(selection.chunk_ids) <= set(clusters[cluster]) and 2 <= len(set(selection.chunk_ids)) <= 3


def test_inter_cluster_bridges_a_cluster_and_its_most_related_other_cluster():
    clusters = {0: ["a", "b"], 1: ["b", "c"], 2: ["d"]}
    centroids = dict(enumerate(unit([[1, 0], [0.9, 0.4], [0, 1]])))  # 0 and 1 related; 2 closest to 1
    selections = inter_cluster_selections(clusters, centroids, count=3, seed=0)
    assert {frozenset(s.cluster_ids) for s in selections} == {frozenset((0, 1)), frozenset((1, 2))}
    for selection in selections:
        first, second = selection.chunk_ids
        home, partner = selection.cluster_ids
        assert first in clusters[home] and second in clusters[partner] and second not in clusters[home]


@pytest.mark.parametrize("budget", [0, 999, 5_000, 123_457])
def test_the_planned_mix_never_exceeds_the_budget(budget):
    weights = {"proximity": 0.5, "intra_cluster": 0.3, "inter_cluster": 0.2}
    costs = {"proximity": 700, "intra_cluster": 1300, "inter_cluster": 1100}
    plan = plan_mix(budget, weights, costs)
    assert sum(plan[s] * costs[s] for s in plan) <= budget
    assert plan_mix(budget, {**weights, "inter_cluster": 0.0}, costs)["inter_cluster"] == 0
    with pytest.raises(ValueError, match="positive weight"):
        plan_mix(budget, dict.fromkeys(weights, 0.0), costs)
