"""The whole graph on data/sample with the fake teacher, through the stale-only runner.

A real Dagster instance, real Parquet files, a real MLflow store and real training; only the teacher is
the deterministic fake provider (routed through litellm like any model).
"""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import AssetKey, DagsterEventType

from embpipe.core.embedding import packaged_base_model
from embpipe.definitions import all_assets, all_checks, default_resources
from embpipe.orchestration.instance import dagster_instance
from embpipe.orchestration.runner import run_stale
from embpipe.resources.teacher import TeacherResource
from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

RUN_CONFIG = {
    "ops": {
        "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
        "synthetic_queries": {"config": {"max_chunks": 16}},
        "passage_pairs": {"config": {"max_pairs": 8}},
        "labeled_triplets": {"config": {"anchors": 16}},
        "cluster_profiles": {"config": {"max_clusters": 4}},
        "mining_rounds": {"config": {"rounds": 1, "student_epochs": 1, "top_k": 3}},
        "embedding_model": {"config": {"epochs": 1}},
    }
}


def paid_tokens(resources, outcome) -> int:
    store = resources["teacher"].store()
    return sum(u.prompt_tokens + u.completion_tokens for r in outcome.run_ids for u in store.usage(r))


@pytest.fixture
def pipeline(data_dir):
    resources = {**default_resources(), "teacher": TeacherResource(model="fake/teacher")}
    instance = dagster_instance()
    assert instance.root_directory == str(data_dir / "dagster")
    return resources, instance


@pytest.mark.slow  # the whole graph with real training
def test_full_run_then_rerun_pays_nothing(pipeline, data_dir):
    resources, instance = pipeline
    first = run_stale(all_assets, all_checks, resources, RUN_CONFIG, instance)
    assert set(first.rebuilt) >= {"documents", "chunks", "synthetic_queries", "embedding_model", "retrieval_report"}
    assert paid_tokens(resources, first) > 0

    report = pd.read_parquet(data_dir / "assets" / "retrieval_report.parquet")
    assert set(report["model"]) == {"bm25", "base", "tuned"}
    assert set(report["target"]) == {"synthetic-test"}
    assert (data_dir / "models" / "embedding_model" / "config.json").is_file()
    queries = pd.read_parquet(data_dir / "assets" / "synthetic_queries.parquet")
    chunks = pd.read_parquet(data_dir / "assets" / "chunks.parquet")
    assert set(c for ids in queries["positive_chunk_ids"] for c in ids) <= set(chunks["chunk_id"])
    assert set(queries["strategy"]) == {"single_chunk", "cluster"}  # LMAR's cluster questions are trained on
    cluster_rows = queries[queries.strategy == "cluster"]
    assert cluster_rows["validator_score"].between(0.5, 1.0).all()
    triplets = pd.read_parquet(data_dir / "assets" / "labeled_triplets.parquet")
    assert len(triplets) and triplets["confidence"].between(0, 1).all()
    clusters = pd.read_parquet(data_dir / "assets" / "chunk_clusters.parquet")
    assert set(clusters["chunk_id"]) == set(chunks["chunk_id"])

    evaluations = [
        e.dagster_event.event_specific_data
        for r in first.run_ids
        for e in instance.all_logs(r, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    checks = {e.check_name: e.passed for e in evaluations}
    assert set(checks) == {
        "chunks_not_empty",
        "queries_trace_to_documents",
        "question_failure_rate",
        "splits_do_not_leak",
        "positives_never_negatives",
        "model_not_worse_than_base",
        "no_owed_teacher_items",  # one per teacher stage
    }
    assert all(checks.values()), checks
    labels = pd.read_parquet(data_dir / "assets" / "mining_rounds.parquet")
    assert set(labels["source"]) == {"synthetic", "margin"}  # mining is off by default: no teacher judgement
    assert (labels.loc[labels.used, "doc_id"] != "").all()

    model_mtime = (data_dir / "models" / "embedding_model").stat().st_mtime_ns
    second = run_stale(all_assets, all_checks, resources, RUN_CONFIG, instance)
    assert sorted(second.rebuilt) == ["documents", "rejected_documents"]
    assert paid_tokens(resources, second) == 0
    assert (data_dir / "models" / "embedding_model").stat().st_mtime_ns == model_mtime

    changed = {"ops": {**RUN_CONFIG["ops"], "retrieval_report": {"config": {"top_k": 50}}}}
    third = run_stale(all_assets, all_checks, resources, changed, instance)
    assert sorted(third.rebuilt) == ["documents", "rejected_documents", "retrieval_report"]
    event = instance.get_latest_materialization_event(AssetKey("synthetic_queries"))
    assert event.asset_materialization.metadata["queries"].value == len(queries)

    guide = packaged_base_model()  # any sentence-transformers model can guide; the base stands in for one
    guided = {"epochs": 1, "guide_model": guide, "guide_distill_epochs": 1, "distill_weight": 1.0}
    guided_config = {"ops": {**changed["ops"], "embedding_model": {"config": guided}}}
    fourth = run_stale(all_assets, all_checks, resources, guided_config, instance)
    assert "embedding_model" in fourth.rebuilt and "synthetic_queries" not in fourth.rebuilt
    assert paid_tokens(resources, fourth) == 0  # the guide is an embedder: no teacher call
    trained = instance.get_latest_materialization_event(AssetKey("embedding_model")).asset_materialization.metadata
    assert 0.0 <= trained["guide_agrees_with_labels"].value <= 1.0
    distillation = trained["guide_distillation"].value  # distilled from the guide's embeddings, then trained
    assert distillation["texts"] > len(chunks) and len(distillation["epoch_losses"]) == 1
    assert not (data_dir / "checkpoints" / "embedding_model").exists() or not any(
        (data_dir / "checkpoints" / "embedding_model").iterdir()
    )  # the distillation's work folder goes with the training's checkpoints
