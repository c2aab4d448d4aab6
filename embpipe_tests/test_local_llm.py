"""A real local model (SmolLM2-135M GGUF) through the same litellm provider code as the default teacher."""

from __future__ import annotations

import json

import pytest

from embpipe.core.questions import question_messages, question_schema
from embpipe.llm.model_store import model_path
from embpipe.llm.store import TeacherStore
from embpipe.llm.teacher import Teacher, TeacherSettings

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
    from embpipe.llm.providers import LOCAL_PROVIDER

    monkeypatch.setattr(LOCAL_PROVIDER.runtime, "models", {})
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
    from embpipe.llm.closer import judge_closer

    teacher = Teacher(TeacherSettings(model="local/smollm2-135m"), TeacherStore(tmp_path / "t.sqlite"), "run")
    verdict = judge_closer(
        teacher, "labeled_triplets", "1", "Alert H-052: chassis fan 3 is slow.",
        "Replace fan 3 when alert H-052 repeats.", "Rotate the backup encryption key monthly.", 0.0, comparison,
    )  # fmt: skip
    assert verdict is not None and verdict.closer in {"first", "second", "ambiguous"}
    assert 0.0 < verdict.confidence < 1.0  # probabilities read from the logits, not an agreement flag
    usage = teacher.store.usage("run")  # both orders (pairwise) or both candidates (pointwise), one token each
    assert sum(u.calls for u in usage) == 2 and all(u.completion_tokens == u.calls for u in usage)
