"""LMAR: KNN clustering, triplet verdicts without position bias, validated cluster questions, weighted loss."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from embpipe.core.lmar.cluster_questions import (
    ClusterQuestionStats,
    generate_cluster_questions,
    parse_cluster_questions,
)
from embpipe.core.lmar.clustering import knn_clusters, size_histogram
from embpipe.core.lmar.triplets import TextTriplet, TripletParams, candidate_triplets, train_triplets
from embpipe.core.training.examples import labelled_examples
from embpipe.core.training.losses import triplet_loss
from embpipe.core.training.trainer import TrainingExample, batch_loss
from embpipe.llm.closer_passage import judge_closer, same_topic_messages
from embpipe.llm.fake_provider import judge_overlap
from embpipe_tests.conftest import make_teacher


def unit(*rows):
    vectors = np.array(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_knn_clustering_matches_hand_computed_clusters():
    # two tight groups of three, one pair, one outlier; cosines inside a group > 0.95, across < 0.3
    vectors = unit([1, 0, 0], [0.98, 0.2, 0], [0.97, 0, 0.24], [0, 1, 0], [0.2, 0.98, 0], [0, 0.97, 0.24],
                   [0, 0, 1], [0.1, 0.1, 0.99], [-1, -1, 0])  # fmt: skip
    labels = knn_clusters(vectors, k=5, delta=0.8, seed=3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3]
    assert size_histogram(labels) == {1: 1, 2: 1, 3: 2}
    assert knn_clusters(vectors, k=5, delta=0.8, seed=3).tolist() == labels.tolist()  # deterministic


def test_k_caps_cluster_size_and_seed_order_decides_membership():
    vectors = unit([1, 0], [0.99, 0.1], [0.98, 0.2], [0.97, 0.25])
    labels = knn_clusters(vectors, k=1, delta=0.5, seed=0)
    assert max(np.bincount(labels)) == 2  # a seed plus at most k=1 neighbour
    # by hand: the seed's nearest unassigned neighbour joins it, the rest pair up the same way
    first = np.random.default_rng(0).permutation(4)[0]
    sims = vectors @ vectors[first]
    sims[first] = -1
    assert labels[first] == labels[int(np.argmax(sims))]


def test_clusters_equal_the_direct_algorithm_when_neighbour_lists_run_out():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 16))
    vectors = np.vstack([c + 0.05 * rng.normal(size=(40, 16)) for c in centres]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = knn_clusters(vectors, k=30, delta=0.9, seed=7)  # lists hold 121 rows, groups of 40 exhaust them

    direct = np.full(len(vectors), -1)
    open_rows = np.ones(len(vectors), bool)
    for number, row in enumerate(r for r in np.random.default_rng(7).permutation(len(vectors)) if open_rows[r]):
        if not open_rows[row]:
            continue
        open_rows[row] = False
        candidates = np.flatnonzero(open_rows)
        sims = vectors[candidates] @ vectors[row]
        members = candidates[np.argsort(-sims, kind="stable")][:30][np.sort(-sims)[:30] < -0.9]
        direct[[row, *members]] = number
        open_rows[members] = False
    same = (labels[:, None] == labels[None, :]) == (direct[:, None] == direct[None, :])
    assert same.all()


def test_candidate_triplets_draw_two_distinct_neighbours_of_the_anchor():
    vectors = unit(*np.random.default_rng(0).normal(size=(30, 8)))
    for anchor, first, second in candidate_triplets(vectors, anchors=10, k=4, seed=0):
        top = np.argsort(-(vectors @ vectors[anchor]))[1:5]
        assert first != second and {first, second} <= set(top.tolist()) and anchor not in {first, second}


ANCHOR = "kestrel vault backup encryption key rotation schedule"
CLOSE = "backup encryption key rotation for the vault appliance"
FAR = "rotation of the chassis fan in the rack"


BOTH_WAYS = [(m, c) for m in ("fake/teacher", "fake/no-logprobs") for c in ("pairwise", "pointwise")]


@pytest.mark.parametrize(("model", "comparison"), BOTH_WAYS)
def test_closer_passage_verdict_is_the_same_in_both_orders(tmp_path, model, comparison):
    teacher = make_teacher(tmp_path, model=model)
    assert judge_closer(teacher, "labeled_triplets", "t1", ANCHOR, CLOSE, FAR, 0.1, comparison).closer == "first"
    assert judge_closer(teacher, "labeled_triplets", "t2", ANCHOR, FAR, CLOSE, 0.1, comparison).closer == "second"


@pytest.mark.parametrize(("model", "comparison"), BOTH_WAYS)
def test_a_tie_is_ambiguous_although_the_teacher_favours_position_a(tmp_path, model, comparison):
    teacher = make_teacher(tmp_path, model=model)
    one, other = "backup settings for the appliance", "encryption settings for the appliance"
    single_order = teacher.chat(
        "x", [{"role": "user", "content": f"ANCHOR: {ANCHOR}\nPASSAGE A: {one}\nPASSAGE B: {other}"}], max_tokens=1
    )
    assert single_order.text == "A"  # asked once, the biased teacher would have picked a side
    verdict = judge_closer(teacher, "labeled_triplets", "t3", ANCHOR, one, other, 0.1, comparison)
    assert verdict.closer == "ambiguous"


def test_pointwise_asks_each_candidate_alone_and_shares_the_probabilities(tmp_path):
    teacher = make_teacher(tmp_path)
    verdict = judge_closer(teacher, "labeled_triplets", "t4", ANCHOR, CLOSE, FAR, 0.1, "pointwise")
    p_close = judge_overlap(same_topic_messages(ANCHOR, CLOSE)[-1]["content"])
    p_far = judge_overlap(same_topic_messages(ANCHOR, FAR)[-1]["content"])
    assert p_close > p_far  # the fake teacher's own same-topic probabilities
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    assert verdict.confidence == pytest.approx(1 / (1 + math.exp(logit(p_far) - logit(p_close))), abs=1e-3)
    assert all(u.calls == 2 and u.completion_tokens == 2 for u in teacher.store.usage("run-1"))  # one per candidate
    with pytest.raises(ValueError, match="comparison"):
        judge_closer(teacher, "labeled_triplets", "t5", ANCHOR, CLOSE, FAR, 0.1, "listwise")


def test_triplet_loss_is_zero_beyond_the_margin_and_weighted():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    near, far = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert float(triplet_loss(a[:1], near[:1], far[:1], [1.0], 0.3)) == 0.0  # d(a,p)=0, d(a,n)=1
    assert float(triplet_loss(a[1:], near[1:], far[1:], [1.0], 0.3)) == pytest.approx(1.3)
    assert float(triplet_loss(a, near, far, [1.0, 0.0], 0.3)) == 0.0  # the violated triplet has weight 0


def test_triplet_tuning_moves_the_anchor_towards_the_chosen_passage(base_model):
    model = copy.deepcopy(base_model)
    triplet = TextTriplet("storage pool is read-only", "the pool became read-only at 95 percent", "fan alert H-052")
    before = model.encode([triplet.anchor, triplet.positive, triplet.negative], normalize_embeddings=True)
    losses = train_triplets(model, [triplet] * 8, TripletParams(epochs=3, batch_size=4, learning_rate=1e-4, margin=0.8))
    after = model.encode([triplet.anchor, triplet.positive, triplet.negative], normalize_embeddings=True)
    gap = lambda v: float(v[0] @ v[1] - v[0] @ v[2])  # noqa: E731
    assert gap(after) > gap(before) and losses[-1] < losses[0]


def test_cluster_questions_cite_their_chunks_and_the_validator_drops_weak_ones(tmp_path):
    keys = ["Rotate the backup encryption key monthly. Keys expire.", "Keys live in the vault."]
    fans = ["Fan alert H-052 means a failed chassis fan. Check the fan LEDs.", "Replace the fan tray."]
    members = {
        4: pd.DataFrame({"chunk_id": ["c1", "c2"], "doc_id": ["d1", "d2"], "text": keys}),
        9: pd.DataFrame({"chunk_id": ["c3", "c4"], "doc_id": ["d3", "d3"], "text": fans}),
    }  # fmt: skip
    scores = iter([0.9, 0.9, 0.1, 0.1])
    stats = ClusterQuestionStats()
    frame = generate_cluster_questions(
        make_teacher(tmp_path), members, {4: "backup keys", 9: "fans"}, 2, lambda q, e: next(scores), 0.5, stats
    )
    assert stats.below_threshold == 2 and len(frame) == 2
    assert set(frame["strategy"]) == {"cluster"} and (frame["validator_score"] == 0.9).all()
    assert all(list(p) == ["c1"] for p in frame["positive_chunk_ids"]) and (frame["hops"] == 1).all()


def test_cited_passages_outside_the_cluster_are_refused():
    reply = {"questions": [{"question": "How do A and B interact here?", "passages": [1, 7, 1, 2]},
                           {"question": "What does only chunk nine say?", "passages": [9]}]}  # fmt: skip
    assert parse_cluster_questions(reply, 3, 2) == [("How do A and B interact here?", [1, 2])]


def test_validator_scores_reach_the_training_loss(base_model):
    queries = pd.DataFrame({"query_id": ["q1", "q2"], "text": ["fan alert H-052", "backup key rotation"],
                            "validator_score": [0.25, np.nan]})  # fmt: skip
    chunks = pd.DataFrame({"chunk_id": ["c1", "c2"], "title": ["t", "t"], "text": ["fan tray", "key vault"]})
    labels = pd.DataFrame({"query_id": ["q1", "q2"], "chunk_id": ["c1", "c2"], "role": ["positive"] * 2,
                           "source": ["synthetic"] * 2, "score": [np.nan] * 2})  # fmt: skip
    examples = labelled_examples(labels, queries, chunks, 4)
    assert [e.weight for e in examples] == [0.25, 1.0]

    def loss(weights):
        batch = [TrainingExample(e.query, e.positive, e.negatives, w) for e, w in zip(examples, weights, strict=True)]
        with torch.no_grad():
            return float(batch_loss(base_model, batch, 1.0))  # a low scale keeps both losses well above zero

    only_first, only_second = loss([1.0, 0.0]), loss([0.0, 1.0])
    assert only_first != pytest.approx(only_second)
    assert loss([e.weight for e in examples]) == pytest.approx((0.25 * only_first + only_second) / 1.25, rel=1e-4)


def test_with_lmar_off_the_stages_store_empty_tables_and_call_no_teacher(data_dir):
    from dagster import materialize

    from embpipe.definitions import all_assets, default_resources
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    resources = {
        **default_resources(),
        "teacher": TeacherResource(model="fake/teacher"),
        "methods": MethodsResource(lmar=False),
    }
    selection = [
        "documents", "rejected_documents", "chunks", "chunk_embeddings", "labeled_triplets", "triplet_tuned_model",
        "chunk_clusters", "cluster_profiles", "cluster_queries", "entity_descriptions", "entity_clusters",
        "embgen_queries", "synthetic_queries",
    ]  # fmt: skip
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
            "synthetic_queries": {"config": {"max_chunks": 4}},
        }
    }
    result = materialize(all_assets, selection=selection, resources=resources, run_config=run_config)
    assert result.success
    for name in ("labeled_triplets", "chunk_clusters", "cluster_profiles", "cluster_queries"):
        assert len(pd.read_parquet(data_dir / "assets" / f"{name}.parquet")) == 0, name
    queries = pd.read_parquet(data_dir / "assets" / "synthetic_queries.parquet")
    assert len(queries) and set(queries["strategy"]) == {"single_chunk"}
    stages = {u.stage for u in resources["teacher"].store().usage(result.run_id)}
    assert stages == {"synthetic_queries"}
