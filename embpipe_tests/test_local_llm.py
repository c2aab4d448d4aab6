"""A real local model (SmolLM2-135M GGUF) through the same local teacher server and litellm path as the default
teacher: schema-constrained JSON, next-token judgements, determinism, and a server killed mid-stage."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pandas as pd
import pytest

from embpipe.core.synthesis.question_prompts import question_messages, question_schema
from embpipe.llm.model_weights import model_path
from embpipe.llm.teacher import Teacher, TeacherSettings
from embpipe.llm.teacher_store import TeacherStore

pytestmark = [
    pytest.mark.local_llm,
    pytest.mark.skipif(not model_path("smollm2-135m").is_file(), reason="run scripts/install.sh to fetch SmolLM2"),
]


def test_local_model_answers_schema_constrained_json_and_is_cached(tmp_path):
    teacher = Teacher(TeacherSettings(model="local/smollm2-135m"), TeacherStore(tmp_path / "t.sqlite"), "run")
    messages = question_messages("KV-0113", "Hardware alert H-052 means chassis fan 3 is below minimum speed.", 2)
    reply = teacher.chat("questions", messages, json_schema=question_schema(2), max_tokens=96)
    decoded = json.loads(reply.text)
    assert isinstance(decoded["questions"], list) and all(isinstance(q, str) for q in decoded["questions"])
    assert not reply.cached and reply.prompt_tokens > 20 and reply.completion_tokens > 0
    again = teacher.chat("questions", messages, json_schema=question_schema(2), max_tokens=96)
    assert again.cached and again.text == reply.text
    assert teacher.store.paid_tokens("run") == reply.prompt_tokens + reply.completion_tokens


def test_local_model_is_deterministic_at_temperature_zero(tmp_path):
    answers = []
    for name in ("a", "b"):  # separate caches, so both calls really run the model
        teacher = Teacher(TeacherSettings(model="local/smollm2-135m"), TeacherStore(tmp_path / f"{name}.sqlite"), name)
        answers.append(teacher.chat("s", [{"role": "user", "content": "Name one colour."}], max_tokens=12).text)
    assert answers[0] == answers[1] and answers[0]


def test_missing_local_model_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBPIPE_MODEL_CACHE", str(tmp_path))
    teacher = Teacher(
        TeacherSettings(model="local/smollm2-135m", max_retries=0), TeacherStore(tmp_path / "t.sqlite"), "r"
    )
    with pytest.raises(Exception, match="scripts/install.sh"):
        teacher.chat("s", [{"role": "user", "content": "hi"}])


def test_local_model_judges_with_next_token_probabilities(tmp_path):
    from embpipe.llm.judge import judge_relevance

    teacher = Teacher(TeacherSettings(model="local/smollm2-135m"), TeacherStore(tmp_path / "t.sqlite"), "run")
    score = judge_relevance(teacher, "judge", "1", "What does alert H-052 mean?", "Alert H-052: chassis fan 3 is slow.")
    assert score is not None and 0.0 < score < 1.0  # a probability read from the logits, not a 0/1 word
    ((usage),) = teacher.store.usage("run")
    assert usage.completion_tokens == 1 and usage.prompt_tokens > 20


@pytest.mark.parametrize("comparison", ["pairwise", "pointwise"])
def test_local_model_labels_a_triplet_from_next_token_probabilities(tmp_path, comparison):
    from embpipe.llm.closer_passage import judge_closer

    teacher = Teacher(TeacherSettings(model="local/smollm2-135m"), TeacherStore(tmp_path / "t.sqlite"), "run")
    verdict = judge_closer(
        teacher, "labeled_triplets", "1", "Alert H-052: chassis fan 3 is slow.",
        "Replace fan 3 when alert H-052 repeats.", "Rotate the backup encryption key monthly.", 0.0, comparison,
    )  # fmt: skip
    assert verdict is not None and verdict.closer in {"first", "second", "ambiguous"}
    assert 0.0 < verdict.confidence < 1.0  # probabilities read from the logits, not an agreement flag
    usage = teacher.store.usage("run")  # both orders (pairwise) or both candidates (pointwise), one token each
    assert sum(u.calls for u in usage) == 2 and all(u.completion_tokens == u.calls for u in usage)


def test_a_killed_local_teacher_fails_one_item_clearly_and_a_rerun_pays_only_for_it(tmp_path):
    from embpipe.core.synthesis.questions import generate_single_chunk_questions

    passages = [
        "Alert H-052 means chassis fan 3 turns too slowly; replace the fan module.",
        "Backup job BK-7 fails with error 0x51 when the catalog volume is full.",
        "Rotate the TLS certificate of the admin console every 90 days.",
        "Firmware 4.2 adds support for dual power supplies on the X200 chassis.",
    ]
    chunks = pd.DataFrame(
        {"chunk_id": [f"c{i}" for i in range(4)], "doc_id": [f"d{i}" for i in range(4)],
         "title": ["Notes"] * 4, "text": passages}
    )  # fmt: skip
    settings = TeacherSettings(  # one call at a time, so the kill falls between the second and third
        model="local/smollm2-135m", max_retries=0, local_idle_timeout_s=120, local_parallel=1
    )
    store = TeacherStore(tmp_path / "t.sqlite")
    first = Teacher(settings, store, "run-1")
    endpoint = first.local_endpoint()
    endpoint.stop()  # a server of this test's own (one another process started reports no exit status)

    def kill_the_server_after_two(done: int, total: int) -> None:
        if done == 2:
            state = json.loads(endpoint.state_path.read_text())
            os.kill(state["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while endpoint.alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    _, stats = generate_single_chunk_questions(first, chunks, 2, progress=kill_the_server_after_two)
    assert stats.attempted == 4  # the stage went on past the crash
    crashes = [(item, reason) for _, item, reason in store.failures("run-1") if "local teacher process" in reason]
    assert [item for item, _ in crashes] == ["c2"]
    assert "SIGKILL" in crashes[0][1] and "scripts/install.sh" in crashes[0][1]
    assert endpoint.alive() and endpoint.crashes == 1  # a fresh server answered the fourth chunk
    paid_first = sum(u.calls - u.cached_calls for u in store.usage("run-1"))
    assert paid_first == 3

    _, again = generate_single_chunk_questions(Teacher(settings, store, "run-2"), chunks, 2)
    assert again.attempted == 4
    [usage] = store.usage("run-2")
    assert (usage.calls, usage.calls - usage.cached_calls) == (4, 1)  # only the crashed item is paid again


def test_an_idle_local_teacher_exits_by_itself_and_the_next_call_starts_one(tmp_path):
    from embpipe.llm.local_endpoint import LocalEndpoint

    endpoint = LocalEndpoint("smollm2-135m", threads=1, idle_timeout_s=1.0)
    endpoint.ensure()
    state = json.loads(endpoint.state_path.read_text())
    deadline = time.monotonic() + 30
    while endpoint.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not endpoint.alive() and not endpoint.state_path.exists()  # a clean exit removes its state file
    assert endpoint.ensure() and json.loads(endpoint.state_path.read_text())["pid"] != state["pid"]
    assert endpoint.crashes == 0  # an idle exit is not a crash
    endpoint.stop()


def test_concurrent_calls_to_a_parallel_local_teacher_are_decoded_together_and_follow_their_schema(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    settings = TeacherSettings(model="local/smollm2-135m", local_parallel=3)
    teacher = Teacher(settings, TeacherStore(tmp_path / "t.sqlite"), "run")
    assert teacher.concurrency == 3 and teacher.local_endpoint().key.startswith("smollm2-135m-t2-p3-")
    passages = ["Alert H-052 means chassis fan 3 is slow.", "Error 0x51: the catalog volume is full.",
                "Rotate the admin console's TLS certificate every 90 days."]  # fmt: skip
    asks = [question_messages(f"KV-01{i}", passage, 2) for i, passage in enumerate(passages)]
    with ThreadPoolExecutor(3) as pool:
        replies = list(
            pool.map(lambda m: teacher.chat("questions", m, json_schema=question_schema(2), max_tokens=96), asks)
        )
    for reply in replies:  # the grammar shapes every reply; a tiny model may still be cut at max_tokens in a string
        assert re.match(r'\s*\{\s*"questions"\s*:\s*\[', reply.text), reply.text
        assert reply.completion_tokens > 0 and not reply.cached
    assert teacher.store.paid_tokens("run") == sum(r.prompt_tokens + r.completion_tokens for r in replies)
