"""The teacher through litellm with the fake provider: cache, ledger, budget, validation and retries."""

from __future__ import annotations

import pandas as pd
import pytest

from embpipe.core.synthesis.question_prompts import (
    PROMPT_VERSIONS,
    QUESTION_STYLES,
    parse_questions,
    question_messages,
    question_schema,
)
from embpipe.core.synthesis.questions import generate_single_chunk_questions
from embpipe.llm.budget import TokenBudgetExhausted
from embpipe.llm.teacher import Teacher, TeacherOutputError
from embpipe_tests.conftest import make_teacher

PASSAGE = "Replication stalls with error E217 behind a WAN optimiser. Upgrade both appliances to firmware 5.2.4."


def ask(teacher: Teacher, passage: str = PASSAGE):
    return teacher.generate_json(
        "questions",
        "chunk-1",
        question_messages("KV-0101", passage, 2),
        lambda reply: parse_questions(reply, 2, passage),
        schema=question_schema(2),
        max_tokens=100,
    )


def test_questions_come_through_litellm_and_validate(tmp_path):
    questions = ask(make_teacher(tmp_path))
    assert questions == [
        "What about replication stalls error e217 behind wan optimiser?",
        "What about upgrade both appliances firmware 5 2 4?",
    ]


def test_second_identical_call_is_served_from_cache_and_costs_nothing(tmp_path):
    first = make_teacher(tmp_path, run_id="run-1")
    ask(first)
    paid_first = first.store.paid_tokens("run-1")
    second = make_teacher(tmp_path, run_id="run-2")
    assert ask(second) == ask(first)
    assert paid_first > 0
    assert second.store.paid_tokens("run-2") == 0
    usage = second.store.usage("run-2")[0]
    assert usage.calls == usage.cached_calls == 1


def test_cache_key_includes_model_and_prompt(tmp_path):
    ask(make_teacher(tmp_path, run_id="a"))
    other_model = make_teacher(tmp_path, model="fake/other", run_id="b")
    ask(other_model)
    ask(other_model, PASSAGE + " Extra sentence here.")
    assert other_model.store.usage("b")[0].cached_calls == 0


@pytest.mark.parametrize("model", ["fake/invalid-json", "fake/wrong-shape"])
def test_unusable_output_is_retried_then_recorded(tmp_path, model):
    teacher = make_teacher(tmp_path, model=model, max_retries=2)
    assert ask(teacher) is None
    assert teacher.store.usage("run-1")[0].calls == 3  # first try + 2 retries, each a distinct request
    [(stage, item, reason)] = teacher.store.failures("run-1")
    assert (stage, item) == ("questions", "chunk-1") and reason


def test_budget_stops_before_it_is_exceeded(tmp_path):
    chunks = pd.DataFrame(
        {
            "chunk_id": [f"c{i}" for i in range(10)],
            "doc_id": [f"d{i}" for i in range(10)],
            "title": "T",
            "text": [f"Passage {i} says error E{i}00 appears often. Firmware {i}.1 fixes it." for i in range(10)],
        }
    )
    budget = 2_500  # the question stage may use 40% of it
    teacher = make_teacher(tmp_path, token_budget=budget)
    frame, stats = generate_single_chunk_questions(teacher, chunks, 2)
    assert stats.budget_exhausted and "token budget" in stats.budget_message
    assert 0 < stats.attempted < 10
    assert teacher.store.paid_tokens("run-1") <= budget
    assert len(frame) == 2 * stats.attempted


def test_budget_exception_names_the_setting(tmp_path):
    teacher = make_teacher(tmp_path, token_budget=10)
    with pytest.raises(TokenBudgetExhausted, match="--token-budget"):
        teacher.chat("s", [{"role": "user", "content": "hello"}])


def test_parse_questions_rejects_junk():
    with pytest.raises(TeacherOutputError):
        parse_questions({"questions": ["short?", "no question mark here at all"]}, 2)
    assert parse_questions({"questions": ["How to fix E217?", "how to fix e217?", 5]}, 3) == ["How to fix E217?"]


def test_a_user_style_search_need_not_be_a_question_but_must_stand_alone():
    reply = {"questions": ["replication stalls after the upgrade", "e217 on the vault?", "the passage says E217"]}
    assert parse_questions(reply, 3, style="user") == ["replication stalls after the upgrade", "e217 on the vault?"]
    assert parse_questions(reply, 3, style="terms") == ["e217 on the vault?"]


def test_a_question_about_this_issue_or_this_option_leans_on_context_the_searcher_lacks():
    reply = {
        "questions": [
            "What is the solution to this error?",
            "How can customers evaluate the impact of this vulnerability?",
            "What are the steps to disable this option in the ICC configuration manager?",
            "How do I fix error E217 when replication stalls?",
            "Which settings does the KV-400 upgrade precheck test?",
        ]
    }
    assert parse_questions(reply, 5) == reply["questions"][3:]


def test_each_question_style_has_its_own_prompt_and_cache_key():
    terms, user = (question_messages("KV-0101", "E217 means ...", 3, style) for style in ("terms", "user"))
    assert terms[1] == user[1] and terms[0] != user[0]  # the same passage, another system prompt
    assert "symptom" in user[0]["content"] and len(set(PROMPT_VERSIONS.values())) == len(PROMPT_VERSIONS)
    assert set(PROMPT_VERSIONS) == set(QUESTION_STYLES)  # every style the config accepts has its prompt


def test_missing_local_model_fails_at_setup_with_the_fix(tmp_path, monkeypatch):
    from embpipe.resources.teacher import TeacherResource

    monkeypatch.setenv("EMBPIPE_MODEL_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="scripts/install.sh"):
        TeacherResource(model="local/qwen2.5-coder-1.5b", store_path=str(tmp_path / "t.sqlite")).client()


def test_an_oversized_prompt_is_cut_to_the_context_window_and_the_cut_recorded(tmp_path):
    from embpipe.llm.budget import estimate_tokens
    from embpipe.llm.prompt_fit import CUT_MARK, fit_to_context

    teacher = make_teacher(tmp_path, context_tokens=1024)
    passage = "The appliance raises alert H-052 when fan 3 slows down. " * 2_000  # about 37,000 tokens
    messages = [{"role": "user", "content": f"PASSAGE: {passage}\nWrite one question. Reply with JSON only."}]
    reply = teacher.chat("synthetic_queries", messages, max_tokens=128)
    count, characters = teacher.store.cuts("run-1", "synthetic_queries")
    assert count == 1 and characters > 100_000
    assert 0 < reply.prompt_tokens <= 1024 - 128
    fitted = fit_to_context(messages, 1024, 128).messages[0]["content"]
    assert fitted.startswith("PASSAGE: The appliance") and fitted.endswith("Reply with JSON only.")
    assert fitted.count(CUT_MARK) == 1 and estimate_tokens([{"content": fitted}]) <= 1024 - 128
    small = [{"role": "user", "content": "short"}]
    assert teacher.chat("synthetic_queries", small, max_tokens=128).prompt_tokens > 0
    assert teacher.store.cuts("run-1", "synthetic_queries")[0] == 1  # a prompt that fits is sent as it is


def test_the_context_window_comes_from_the_setting_the_local_model_or_litellm(tmp_path):
    assert make_teacher(tmp_path, context_tokens=777).context_tokens() == 777
    assert make_teacher(tmp_path, model="local/qwen2.5-coder-1.5b").context_tokens() == 4096
    assert make_teacher(tmp_path, model="openai/gpt-4o-mini").context_tokens() >= 100_000
    assert make_teacher(tmp_path, model="fake/teacher").context_tokens() is None


def test_a_post_is_its_title_then_its_body_and_may_quote_its_own_error():
    reply = {
        "posts": [
            {
                "title": "Why does replication stall after the upgrade?",
                "body": "We run KV 5.1. I see E217; this error repeats.",
            },
            {"title": "How do I fix this issue?", "body": "We run KV 5.1 and replication stalls every night."},
            {"title": "Replication stalls on KV 5.1", "body": "The technote says to upgrade, but which firmware?"},
            {"title": "short", "body": "x"},
            "Why does replication stall?",
        ]
    }
    assert parse_questions(reply, 5, style="post") == [
        "Why does replication stall after the upgrade? We run KV 5.1. I see E217; this error repeats."
    ]
    with pytest.raises(TeacherOutputError, match="'posts'"):
        parse_questions({"questions": ["Why does replication stall?"]}, 2, style="post")


def test_a_post_reply_has_a_title_and_a_body_in_its_schema_and_more_room():
    from embpipe.core.synthesis.question_prompts import reply_tokens

    item = question_schema(3, "post")["properties"]["posts"]["items"]
    assert item["required"] == ["title", "body"] and question_schema(3, "post")["required"] == ["posts"]
    assert reply_tokens(3, "post") > reply_tokens(3, "terms") == 64 * 3 + 32
    assert "posts by users" in question_messages("KV-0101", PASSAGE, 3, "post")[1]["content"]


def test_the_question_stage_writes_posts_through_the_teacher_in_the_post_style(tmp_path):
    chunks = pd.DataFrame(
        {"chunk_id": ["c1"], "doc_id": ["d1"], "title": "KV-0101", "text": [PASSAGE]},
    )
    frame, stats = generate_single_chunk_questions(make_teacher(tmp_path), chunks, 2, style="post")
    assert stats.failed == 0 and len(frame) == 2
    assert all(text.split("?", 1)[1].startswith(" We run Replication stalls") for text in frame["text"])
    assert frame["positive_chunk_ids"].map(list).tolist() == [["c1"], ["c1"]]


def test_a_question_that_pastes_the_prompts_worked_example_is_refused_unless_its_passage_says_it_too():
    post = {"title": "Why are logins refused at noon?", "body": "We run KV 5.1 and the log shows error 53300."}
    with pytest.raises(TeacherOutputError):
        parse_questions({"posts": [post]}, 1, PASSAGE, style="post")
    assert parse_questions({"posts": [post]}, 1, "KV 5.1 refuses logins with error 53300.", style="post")
    with pytest.raises(TeacherOutputError):
        parse_questions({"questions": ["How do I raise max_connections on the KV-400?"]}, 1, PASSAGE)
