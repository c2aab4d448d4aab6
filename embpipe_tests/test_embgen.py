"""EmbGen: entity pairs and their reassembly, the chunk-sampling strategies, questions under a budget, the stages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embpipe.core.embedding import encode
from embpipe.core.embgen.entities import (
    chunks_by_cluster,
    cluster_centroids,
    deduplicate_per_document,
    parse_entities,
    reassemble,
)
from embpipe.core.embgen.questions import (
    EmbGenStats,
    generate_selection_questions,
    quality_messages,
    specialised_system_prompt,
)
from embpipe.core.embgen.sampling import (
    ChunkSelection,
    inter_cluster_selections,
    intra_cluster_selections,
    plan_mix,
    proximity_selections,
)
from embpipe.core.synthesis.questions import near_duplicate_mask
from embpipe.llm.judge import ask_yes_probability
from embpipe.llm.teacher import TeacherOutputError
from embpipe_tests.conftest import make_teacher


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


PASSAGES = {
    "c1": ("Alert H-052 means chassis fan 3 runs below its minimum speed. Replace the fan.", "d1"),
    "c2": ("Fan 3 replacement: power off the appliance, open the chassis and swap the fan module.", "d1"),
    "c3": ("Backup encryption keys rotate every 90 days. Rotation needs the security officer role.", "d2"),
}
SELECTIONS = [
    ChunkSelection("proximity", ("c1", "c2")),
    ChunkSelection("intra_cluster", ("c2", "c1"), (0,)),
    ChunkSelection("inter_cluster", ("c1", "c3"), (0, 1)),
    ChunkSelection("proximity", ("c3",)),
]


def fake_quality(teacher):
    def judge(stage, question, evidence):
        return ask_yes_probability(teacher, stage, question[:60], quality_messages(question, evidence), "q")

    return judge


def test_selection_questions_cite_their_chunks_carry_answers_and_bill_each_strategy(tmp_path):
    teacher = make_teacher(tmp_path)
    stats = EmbGenStats()
    frame, answers = generate_selection_questions(
        teacher, SELECTIONS, PASSAGES, lambda s: [("fan 3", "chassis fan")], fake_quality(teacher), 0.0, stats
    )
    assert frame["strategy"].tolist() == ["proximity", "intra_cluster", "inter_cluster", "proximity"]
    assert frame["hops"].tolist() == [2, 2, 2, 1]  # the fake teacher cites every passage it was given
    assert [list(p) for p in frame["positive_chunk_ids"]] == [list(s.chunk_ids) for s in SELECTIONS]
    assert list(frame.loc[2, "doc_ids"]) == ["d1", "d2"] and frame["validator_score"].between(0, 1).all()
    assert answers[0] == "Alert H-052 means chassis fan 3 runs below its minimum speed."
    stages = {u.stage for u in teacher.store.usage("run-1")}
    assert stages == {"embgen_proximity", "embgen_intra_cluster", "embgen_inter_cluster"}


def test_low_quality_questions_are_dropped(tmp_path):
    teacher = make_teacher(tmp_path)
    stats = EmbGenStats()
    frame, _ = generate_selection_questions(
        teacher, SELECTIONS, PASSAGES, lambda s: [], fake_quality(teacher), 0.999, stats
    )
    assert frame.empty and stats.below_quality == len(SELECTIONS)


@pytest.mark.parametrize("budget", [0, 300, 700, 1500])
def test_the_embgen_budget_is_never_exceeded(tmp_path, budget):
    teacher = make_teacher(tmp_path, token_budget=budget * 10)  # EmbGen's questions get a tenth of a run's budget
    stats = EmbGenStats()

    def spent() -> int:
        return sum(u.prompt_tokens + u.completion_tokens for u in teacher.store.usage("run-1"))

    frame, _ = generate_selection_questions(
        teacher, SELECTIONS, PASSAGES, lambda s: [], fake_quality(teacher), 0.0, stats
    )
    assert spent() <= budget
    assert (len(frame) < len(SELECTIONS)) == bool(stats.budget_message)  # stopped early only for the budget
    if budget == 0:
        assert frame.empty and spent() == 0


def test_deduplication_drops_paraphrases_and_keeps_distinct_questions(base_model):
    questions = [
        "How do I rotate the backup encryption key?",
        "How can I rotate the backup encryption key?",
        "What does alert H-052 about chassis fan 3 mean?",
        "How do I rotate the encryption key of the backups?",
    ]
    keep = near_duplicate_mask(encode(base_model, questions), 0.9)
    assert keep.tolist() == [True, False, True, False]


def test_the_embgen_stages_materialize_every_strategy_with_answers_and_feed_synthetic_queries(data_dir, tmp_path):
    from dagster import materialize

    from embpipe.definitions import all_assets, default_resources
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    resources = {
        **default_resources(),
        "teacher": TeacherResource(model="fake/teacher", token_budget=300_000),  # EmbGen's share: 30,000
        "methods": MethodsResource(lmar=False, embgen=True),
    }
    selection = [
        "documents", "rejected_documents", "chunks", "chunk_embeddings", "labeled_triplets", "triplet_tuned_model",
        "chunk_clusters", "cluster_profiles", "cluster_queries", "entity_descriptions", "entity_clusters",
        "embgen_queries", "synthetic_queries",
    ]  # fmt: skip
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
            "synthetic_queries": {"config": {"max_chunks": 0}},
            "entity_descriptions": {"config": {"max_chunks": 30}},
            "entity_clusters": {"config": {"min_similarity": 0.5}},
            "embgen_queries": {"config": {"min_quality": 0.0}},
        }
    }
    result = materialize(all_assets, selection=selection, resources=resources, run_config=run_config)
    assert result.success
    assets = data_dir / "assets"
    entities = pd.read_parquet(assets / "entity_descriptions.parquet")
    chunks = pd.read_parquet(assets / "chunks.parquet").set_index("chunk_id")
    assert len(entities) and entities["entity_id"].is_unique
    assert all(chunks.loc[list(ids), "doc_id"].eq(doc).all() for doc, ids in entities[["doc_id", "chunk_ids"]].values)
    embgen = pd.read_parquet(assets / "embgen_queries.parquet")
    assert set(embgen["strategy"]) == {"proximity", "intra_cluster", "inter_cluster"}
    assert embgen["answer"].str.len().gt(0).all() and set(embgen["hops"]) <= {1, 2, 3} and embgen["hops"].max() >= 2
    for positives, docs in embgen[["positive_chunk_ids", "doc_ids"]].values:  # lineage to documents
        assert set(chunks.loc[list(positives), "doc_id"]) == set(docs)
    queries = pd.read_parquet(assets / "synthetic_queries.parquet")
    assert set(queries["query_id"]) <= set(embgen["query_id"]) and len(queries)  # no single-chunk questions asked
    [materialization] = result.asset_materializations_for_node("embgen_queries")
    spent = materialization.metadata["tokens_by_strategy"].value
    assert set(spent) == {"proximity", "intra_cluster", "inter_cluster"} and sum(spent.values()) <= 30_000

    from embpipe.cli import main

    assert main(["sft", "--output", str(tmp_path / "sft.jsonl")]) == 0  # EmbGen's chat-format export
    records = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert [r["messages"][1]["content"] for r in records] == embgen["text"].tolist()
    assert [r["messages"][2]["content"] for r in records] == embgen["answer"].tolist()
    assert {r["messages"][2]["role"] for r in records} == {"assistant"}


def test_a_cluster_selections_prompt_names_its_clusters_entities_before_its_chunks():
    from embpipe.core.embgen.plan import prompt_entities

    members = {0: [("fan 3", "chassis fan"), ("H-052", "fan alert")], 1: [("SMTP", "mail relay")]}
    named = {"c1": [("fan 3", "chassis fan"), ("PSU", "power supply")]}
    selection = ChunkSelection("intra_cluster", ("c1", "c2"), (0,))
    assert prompt_entities(selection, members, named) == [
        ("fan 3", "chassis fan"),
        ("H-052", "fan alert"),
        ("PSU", "power supply"),
    ]
    prompt = specialised_system_prompt(prompt_entities(selection, members, named))
    assert "- H-052: fan alert" in prompt and "SMTP" not in prompt
