"""One failure policy at the litellm boundary, tested against a real HTTP server that answers with faults.

Transient faults (timeouts, 429, 5xx, connection refused, replies that are not a completion) are retried by
us only, with the OpenAI SDK's own retries off, so an item costs exactly ``max_retries + 1`` requests; a
refused request (400: context length, content filter) is recorded for its item after one request; an
authentication error stops the stage. Every count below is of HTTP requests that reached the server.
"""

from __future__ import annotations

import socket

import pytest

from embpipe.llm.validation import bounded_number
from embpipe_tests.conftest import make_teacher
from embpipe_tests.fault_server import FaultServer

SCORE_SCHEMA = {"type": "object", "properties": {"score": {"type": "number"}}, "required": ["score"]}
TRANSIENT = ["status-429", "status-500", "status-502", "status-503", "html", "empty-choices", "truncated"]
REFUSED = ["status-400", "context-length", "content-filter"]


@pytest.fixture
def server():
    with FaultServer() as running:
        yield running


def teacher(tmp_path, api_base: str, model: str, retries: int = 2, timeout_s: float = 30.0):
    return make_teacher(
        tmp_path, f"openai/{model}", api_base=api_base, api_key="test-key", max_retries=retries, timeout_s=timeout_s
    )


def ask_score(t):
    messages = [{"role": "user", "content": "Score it."}]
    return t.generate_json("judge", "item-1", messages, lambda r: bounded_number(r, "score", 0, 1), schema=SCORE_SCHEMA)


@pytest.mark.parametrize("fault", TRANSIENT)
def test_a_transient_fault_is_retried_by_us_only_then_recorded(tmp_path, server, fault):
    t = teacher(tmp_path, server.url, fault, retries=2)
    assert ask_score(t) is None
    [(stage, item, reason)] = t.store.failures("run-1")
    assert (stage, item) == ("judge", "item-1") and "after 2 retries" in reason
    assert server.requests[fault] == 3  # not 3 × the SDK's own retries


@pytest.mark.parametrize("fault", TRANSIENT)
def test_a_transient_fault_that_clears_costs_one_retry(tmp_path, server, fault):
    t = teacher(tmp_path, server.url, f"{fault}-once", retries=2)
    assert ask_score(t) == 0.5
    assert t.store.failures("run-1") == [] and server.requests[f"{fault}-once"] == 2


@pytest.mark.parametrize("fault", REFUSED)
def test_a_refused_request_fails_its_item_after_one_request_and_the_next_item_goes_on(tmp_path, server, fault):
    t = teacher(tmp_path, server.url, fault, retries=3)
    assert ask_score(t) is None
    [(_, _, reason)] = t.store.failures("run-1")
    assert "refused" in reason and server.requests[fault] == 1
    assert ask_score(teacher(tmp_path, server.url, "ok")) == 0.5


def test_a_hanging_endpoint_costs_the_timeout_per_attempt(tmp_path, server):
    t = teacher(tmp_path, server.url, "hang", retries=1, timeout_s=0.5)
    assert ask_score(t) is None
    [(_, _, reason)] = t.store.failures("run-1")
    assert "Timeout" in reason and server.requests["hang"] == 2


def test_a_refused_connection_is_recorded(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    t = teacher(tmp_path, f"http://127.0.0.1:{port}/v1", "ok", retries=1)
    assert ask_score(t) is None
    [(_, _, reason)] = t.store.failures("run-1")
    assert "Connection error" in reason and "after 1 retries" in reason


def test_a_wrong_api_key_stops_the_stage(tmp_path, server):
    import litellm

    with pytest.raises(litellm.AuthenticationError):
        ask_score(teacher(tmp_path, server.url, "status-401"))
    assert server.requests["status-401"] == 1


QUESTIONS = {
    "questions": [
        "What should an operator do when alert H-052 appears?",
        "Which part is replaced when the chassis fan is slow?",
        "How do you confirm that a fan alert has cleared?",
    ]
}


def test_a_fixed_outage_is_retried_by_the_next_run_paying_only_for_the_failed_chunks(tmp_path, data_dir, server):
    import json

    from dagster import AssetKey, DagsterInstance

    from embpipe.definitions import all_assets, all_checks, default_resources
    from embpipe.orchestration.runner import run_stale
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    server.ok_content = json.dumps(QUESTIONS)
    server.outage_after = 2  # two chunks get their questions, then the endpoint answers 503
    teacher = TeacherResource(model="openai/ok", api_base=server.url, api_key="test-key", max_retries=0,
                              store_path=str(tmp_path / "t.sqlite"))  # fmt: skip
    resources = {**default_resources(), "teacher": teacher, "methods": MethodsResource(lmar=False)}
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
            "synthetic_queries": {"config": {"max_chunks": 4}},
        }
    }
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))

    def run():
        return run_stale(all_assets, all_checks, resources, run_config, instance,
                         targets={AssetKey("query_splits")}, raise_on_error=False)  # fmt: skip

    failed = run()
    assert failed.failed and "query_splits" not in failed.rebuilt  # nothing below the failed check was built
    assert any(e.startswith("check question_failure_rate on synthetic_queries failed") for e in failed.errors)
    assert server.requests["ok"] == 4

    server.outage_after = None  # the endpoint is fixed; no --force
    fixed = run()
    assert not fixed.failed and fixed.rebuilt[-2:] == ["synthetic_queries", "query_splits"]
    assert server.requests["ok"] == 4 + 2  # only the two failed chunks were asked again
    assert run().rebuilt == ["documents", "rejected_documents"]  # the folder is always re-read, nothing else
    assert server.requests["ok"] == 6


def test_items_a_teacher_stage_could_not_ask_are_owed_to_the_next_run(tmp_path, data_dir):
    """LMAR's triplet stage with a teacher whose connection fails the first time each prompt arrives: the
    stage is stored with its items owed (a warning check, the run succeeds), the next run asks exactly those
    again without --force, and a third run has nothing owed."""
    import sqlite3

    from dagster import AssetKey, DagsterInstance

    from embpipe.definitions import all_assets, all_checks, default_resources
    from embpipe.orchestration.runner import run_stale
    from embpipe.resources.teacher import TeacherResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    store = tmp_path / "t.sqlite"
    teacher = TeacherResource(model="fake/connection-error-once", max_retries=0, store_path=str(store))
    resources = {**default_resources(), "teacher": teacher}
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
            "labeled_triplets": {"config": {"anchors": 6}},
        }
    }
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))

    def run():
        return run_stale(all_assets, all_checks, resources, run_config, instance,
                         targets={AssetKey("labeled_triplets")}, raise_on_error=False)  # fmt: skip

    def paid_calls() -> int:
        with sqlite3.connect(store) as db:
            return db.execute("SELECT COUNT(*) FROM calls WHERE cached = 0").fetchone()[0]

    first = run()
    assert not first.failed and first.owed == ["labeled_triplets"]
    with sqlite3.connect(store) as db:
        owed = db.execute("SELECT COUNT(*) FROM failures WHERE owed = 1").fetchone()[0]
    assert owed >= 1 and paid_calls() == 0  # every first request failed: nothing was answered or paid

    reruns = []
    while not reruns or (reruns[-1].owed and len(reruns) < 4):  # a flaky prompt met for the first time fails once
        reruns.append(run())
        assert not reruns[-1].failed and "labeled_triplets" in reruns[-1].rebuilt  # no --force needed
    assert reruns[-1].owed == [] and paid_calls() >= owed
    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert paid_calls() == stored  # every answer was paid for once: nothing answered before was asked again

    settled = run()
    assert settled.rebuilt == ["documents", "rejected_documents"] and paid_calls() == stored
