"""Teacher faults injected through the fake provider: retried with backoff, then recorded per item."""

from __future__ import annotations

import pandas as pd
import pytest

from embpipe.core.synthesis.question_prompts import parse_questions, question_messages, question_schema
from embpipe.core.synthesis.questions import generate_single_chunk_questions
from embpipe.llm.concurrency import Pacer
from embpipe.llm.teacher import Teacher, TeacherSettings
from embpipe.llm.teacher_store import TeacherStore
from embpipe.llm.validation import bounded_number
from embpipe_tests.conftest import make_teacher

PASSAGE = "Alert H-052 means chassis fan 3 turns too slowly. Replace the fan module while the appliance runs."
SCORE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["score"],
}
TRANSPORT = ["timeout", "rate-limit", "connection-error"]
CONTENT = ["empty", "invalid-json", "wrong-shape"]


def teacher(tmp_path, model: str, retries: int = 2) -> Teacher:
    return make_teacher(tmp_path, model, max_retries=retries)


def ask_questions(t: Teacher):
    return t.generate_json(
        "questions",
        "chunk-7",
        question_messages("KV-0113", PASSAGE, 2),
        lambda r: parse_questions(r, 2, PASSAGE),
        schema=question_schema(2),
    )


def ask_score(t: Teacher):
    return t.generate_json(
        "judge",
        "pair-3",
        [{"role": "user", "content": "Score it."}],
        lambda r: bounded_number(r, "score", 0.0, 1.0),
        schema=SCORE_SCHEMA,
    )


@pytest.mark.parametrize("fault", TRANSPORT + CONTENT)
def test_persistent_fault_is_recorded_and_does_not_raise(tmp_path, fault):
    t = teacher(tmp_path, f"fake/{fault}")
    assert ask_questions(t) is None
    [(stage, item, reason)] = t.store.failures("run-1")
    assert (stage, item) == ("questions", "chunk-7")
    expected = {"timeout": "Timeout", "rate-limit": "RateLimitError", "connection-error": "APIConnectionError"}
    assert expected.get(fault, "reply") in reason


@pytest.mark.parametrize("fault", TRANSPORT + CONTENT)
def test_fault_that_clears_is_retried_to_success(tmp_path, fault):
    t = teacher(tmp_path, f"fake/{fault}-once")
    assert ask_questions(t)
    assert t.store.failures("run-1") == []


def test_out_of_range_numbers_are_refused_then_recorded(tmp_path):
    t = teacher(tmp_path, "fake/out-of-range")
    assert ask_score(t) is None
    [(_, _, reason)] = t.store.failures("run-1")
    assert "outside [0.0, 1.0]" in reason
    assert ask_score(teacher(tmp_path, "fake/teacher")) == 0.0  # the minimal valid reply passes


def test_backoff_grows_between_transport_retries(tmp_path, monkeypatch):
    sleeps = []
    monkeypatch.setattr("embpipe.llm.completion.time.sleep", sleeps.append)
    t = Teacher(
        TeacherSettings(model="fake/timeout", max_retries=3, backoff_s=0.5),
        TeacherStore(tmp_path / "t.sqlite"),
        "run",
    )
    assert ask_questions(t) is None
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_rate_limit_backs_off_through_the_pause_every_worker_shares(tmp_path):
    now, sleeps = [0.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    t = Teacher(
        TeacherSettings(model="fake/rate-limit", max_retries=3, backoff_s=0.5),
        TeacherStore(tmp_path / "t.sqlite"),
        "run",
    )
    t.pacer = Pacer(clock=lambda: now[0], sleep=sleep)
    assert ask_questions(t) is None
    assert sleeps == [0.5, 1.0, 2.0] and t.pacer.pauses == 3


def test_stage_finishes_when_every_item_fails(tmp_path):
    chunks = pd.DataFrame(
        {
            "chunk_id": ["a", "b", "c"],
            "doc_id": ["d1", "d2", "d3"],
            "title": "T",
            "text": [PASSAGE, PASSAGE + " Also check fan 2.", PASSAGE + " Fan 4 too."],
        }
    )
    frame, stats = generate_single_chunk_questions(teacher(tmp_path, "fake/rate-limit", retries=1), chunks, 2)
    assert frame.empty and (stats.attempted, stats.failed) == (3, 3)


@pytest.mark.parametrize("value", [float("nan"), True, "0.5", None])
def test_bounded_number_rejects_non_numbers(value):
    from embpipe.llm.teacher import TeacherOutputError

    with pytest.raises(TeacherOutputError):
        bounded_number({"score": value}, "score", 0, 1)


def materialize_questions(teacher_resource, max_chunks: int):
    """Materialize documents → chunks → synthetic_queries (and their checks) on data/sample, LMAR and EmbGen off."""
    from dagster import AssetKey, materialize

    from embpipe.definitions import all_assets, all_checks, default_resources
    from embpipe.resources.methods import MethodsResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    lmar = ("labeled_triplets", "triplet_tuned_model", "chunk_clusters", "cluster_profiles", "cluster_queries")
    embgen = ("entity_descriptions", "entity_clusters", "embgen_queries")
    names = ("documents", "rejected_documents", "chunks", "chunk_embeddings", *lmar, *embgen, "synthetic_queries")
    keys = [AssetKey(k) for k in names]
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
            "synthetic_queries": {"config": {"max_chunks": max_chunks}},
        }
    }
    resources = {**default_resources(), "teacher": teacher_resource, "methods": MethodsResource(lmar=False)}
    result = materialize(
        [*all_assets, *all_checks], selection=keys, resources=resources, run_config=run_config, raise_on_error=False
    )
    [materialization] = result.asset_materializations_for_node("synthetic_queries")
    return result, materialization.metadata


def test_quality_check_fails_loudly_when_items_fail(data_dir):
    from embpipe.resources.teacher import TeacherResource

    result, metadata = materialize_questions(TeacherResource(model="fake/invalid-json", max_retries=1), 4)
    assert metadata["chunks_failed"].value == metadata["chunks_attempted"].value == 4
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["question_failure_rate"].passed is False
    assert evaluations["question_failure_rate"].metadata["failure_rate"].value == 1.0


def test_budget_exhausted_mid_stage_keeps_questions_and_says_so(data_dir):
    from embpipe.resources.teacher import TeacherResource

    teacher = TeacherResource(model="fake/teacher", token_budget=3000)
    result, metadata = materialize_questions(teacher, 40)
    assert result.success
    assert metadata["budget_exhausted"].value is True
    assert 0 < metadata["chunks_attempted"].value < 40 and metadata["queries"].value > 0
    assert 0 < teacher.store().run_tokens(result.run_id) <= 3000
