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
