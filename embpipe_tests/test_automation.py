"""Operations: the documents sensor, the nightly schedule, the refresh job's incremental cost, lineage."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context

from embpipe.core.evaluation.lineage import lineage_rows, per_document_counts, rows_for_document, rows_for_query
from embpipe.core.synthesis.questions import select_chunks
from embpipe.defs.automation import documents_folder_sensor, nightly_refresh, refresh_passes, refresh_stale
from embpipe_tests.conftest import GRAPH_SAMPLE_DIR


def test_sensor_requests_a_refresh_when_files_are_added_changed_or_removed(tmp_path, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nFan 3 failed.\n")
    monkeypatch.setenv("EMBPIPE_DOCUMENTS", str(folder))
    with DagsterInstance.ephemeral() as instance:
        first = documents_folder_sensor(build_sensor_context(instance=instance))
        assert isinstance(first, RunRequest)
        cursor = first.run_key
        assert isinstance(documents_folder_sensor(build_sensor_context(instance=instance, cursor=cursor)), SkipReason)
        keys = {cursor}
        for change in (
            lambda: (folder / "b.md").write_text("# B\n\nSMTP 535.\n"),
            lambda: (folder / "a.md").write_text("# A\n\nFan 3 failed twice.\n"),
            lambda: (folder / "b.md").unlink(),
        ):
            change()
            request = documents_folder_sensor(build_sensor_context(instance=instance, cursor=cursor))
            assert isinstance(request, RunRequest) and request.run_key not in keys
            cursor = request.run_key
            keys.add(cursor)


def test_nightly_schedule_refreshes_at_two_by_default():
    assert nightly_refresh.cron_schedule == "0 2 * * *"
    assert nightly_refresh.job_name == refresh_stale.name


def chunk_table(docs: dict[str, int]) -> pd.DataFrame:
    rows = [(f"{d}-c{i}", d, 50) for d, n in docs.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["chunk_id", "doc_id", "n_tokens"])


def test_adding_a_document_changes_the_chunk_selection_only_by_its_own_chunks():
    docs = {f"d{i:02d}": 3 for i in range(30)}
    before = set(select_chunks(chunk_table(docs), 40, 20, seed=1)["chunk_id"])
    after = set(select_chunks(chunk_table({**docs, "new": 3}), 40, 20, seed=1)["chunk_id"])
    added, dropped = after - before, before - after
    assert {c.split("-")[0] for c in added} == {"new"} and len(added) == 1
    assert len(dropped) == 1  # the one chunk it displaced from the last round-robin pass


def lineage_fixture():
    documents = pd.DataFrame({"doc_id": ["d1", "d2"], "path": ["fans.md", "mail/smtp.md"]})
    chunks = pd.DataFrame({"chunk_id": ["c1", "c2", "c3"], "doc_id": ["d1", "d2", "d2"]})
    queries = pd.DataFrame(
        {
            "query_id": ["q1", "q2"],
            "text": ["fan alert?", "smtp 535?"],
            "positive_chunk_ids": [["c1"], ["c2"]],
            "strategy": ["single_chunk"] * 2,
        }
    )
    splits = pd.DataFrame({"query_id": ["q1", "q2"], "split": ["train", "test"]})
    labels = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q1"],
            "chunk_id": ["c1", "c3", "c2"],
            "role": ["positive", "positive", "negative"],
            "source": ["synthetic", "teacher", "margin"],
            "round": [0, 1, 0],
            "used": [True, True, True],
        }
    )
    return lineage_rows(queries, splits, labels, chunks, documents)


def test_lineage_answers_which_pairs_came_from_a_document_and_what_is_behind_a_query():
    lineage = lineage_fixture()
    smtp = rows_for_document(lineage, "docs/mail/smtp.md")
    assert set(zip(smtp.query_id, smtp.role, smtp.chunk_id, strict=True)) == {
        ("q1", "positive", "c3"),  # a teacher-confirmed extra positive of a fan question
        ("q1", "negative", "c2"),
        ("q2", "positive", "c2"),
    }
    behind = rows_for_query(lineage, "q1")
    assert set(behind.doc_path) == {"fans.md", "mail/smtp.md"} and set(behind.split) == {"train"}
    counts = per_document_counts(lineage)
    assert counts.loc["mail/smtp.md", "questions"] == 2 and counts.loc["mail/smtp.md", "as_negative"] == 1


LIGHT = {
    "synthetic_queries": {"config": {"max_chunks": 8}},
    "passage_pairs": {"config": {"max_pairs": 8}},
    "labeled_triplets": {"config": {"anchors": 16}},
    "cluster_profiles": {"config": {"max_clusters": 4}},
    "mining_rounds": {"config": {"rounds": 1, "student_epochs": 1, "top_k": 2}},
    "embedding_model": {"config": {"epochs": 1}},
}


def paid(teacher, output: dict) -> dict[str, int]:
    usage = [u for run_id in output["run_ids"] for u in teacher.store().usage(run_id)]
    stages: dict[str, int] = {}
    for u in usage:
        stages[u.stage] = stages.get(u.stage, 0) + u.prompt_tokens + u.completion_tokens
    return stages


@pytest.mark.slow  # the whole graph with real training
def test_refresh_job_builds_everything_then_pays_only_for_a_new_document(data_dir, tmp_path, monkeypatch):
    from embpipe.definitions import default_resources
    from embpipe.orchestration.instance import dagster_instance
    from embpipe.resources.teacher import TeacherResource

    folder = tmp_path / "docs"
    shutil.copytree(GRAPH_SAMPLE_DIR, folder)
    sample = sorted(folder.iterdir())
    extra = sample[-1]
    held_back = extra.read_text()
    extra.unlink()
    monkeypatch.setenv("EMBPIPE_DOCUMENTS", str(folder))
    resources = {**default_resources(), "teacher": TeacherResource(model="fake/teacher")}
    instance = dagster_instance()
    run_config = {"ops": {"refresh_stale_assets": {"config": {"stage_config_json": json.dumps(LIGHT)}}}}

    def refresh() -> dict:
        result = refresh_stale.execute_in_process(instance=instance, resources=resources, run_config=run_config)
        passes = refresh_passes(instance, result.run_id)
        return {
            "run_ids": [r.run_id for r in passes],
            "rebuilt": [a for p in passes for a in p.assets],
        }

    full = refresh()
    assert {"synthetic_queries", "mining_rounds", "embedding_model", "onnx_model", "training_lineage"} <= set(
        full["rebuilt"]
    )
    full_tokens = paid(resources["teacher"], full)
    assert full_tokens["synthetic_queries"] > 0 and "mining_rounds" not in full_tokens  # mining is off by default

    unchanged = refresh()
    assert sorted(unchanged["rebuilt"]) == ["documents", "rejected_documents"]
    assert paid(resources["teacher"], unchanged) == {}

    extra.write_text(held_back)
    incremental = refresh()
    assert "synthetic_queries" in incremental["rebuilt"]
    added = paid(resources["teacher"], incremental)
    assert 0 < sum(added.values()) < sum(full_tokens.values())
    assert added.get("synthetic_queries", 0) < full_tokens["synthetic_queries"] / 4
