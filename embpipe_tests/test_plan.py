"""``embpipe plan``: per-stage calls and tokens from the budget's own estimate, before any teacher call."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from embpipe.cli import main
from embpipe.cli_plan import (
    DISTIL_SECONDS_PER_TEXT_EPOCH,
    GUIDE_SECONDS_PER_TEXT,
    PLAN_TAG,
    plan_settings,
    plan_versus_spent,
)
from embpipe.core.plan import StageSettings, plan_calls, plan_run, question_calls
from embpipe.core.synthesis.question_prompts import SYSTEM_PROMPTS
from embpipe.core.synthesis.questions import generate_single_chunk_questions, select_chunks
from embpipe.llm.budget import STAGE_SHARES, RunBudget
from embpipe.llm.teacher_store import UsageRow
from embpipe_tests.conftest import make_teacher
from embpipe_tests.test_teacher_concurrency import sample_chunks


def settings(**changes) -> StageSettings:
    """The default stage configs' settings, with ``changes``."""
    return dataclasses.replace(plan_settings({"ops": {}}, frozenset()), **changes)


def chunk_table(count: int) -> pd.DataFrame:
    chunks = sample_chunks(count)
    return chunks.assign(n_tokens=chunks["text"].str.split().str.len(), position=0)


def test_the_question_plan_makes_the_calls_a_run_makes_and_bounds_their_tokens(tmp_path):
    chunks = chunk_table(20)
    plan = plan_calls("synthetic_queries", question_calls(chunks, settings(max_chunks=12, questions_per_chunk=2)), None)
    teacher = make_teacher(tmp_path)
    _, stats = generate_single_chunk_questions(teacher, select_chunks(chunks, 12, 20, 42), 2)
    counted = sum(u.prompt_tokens + u.completion_tokens for u in teacher.store.usage("run-1"))
    assert plan.calls == stats.attempted == 12 and not plan.capped
    assert 0 < counted <= plan.tokens  # the estimate the budget checks is an upper bound of what is counted


def test_a_stage_plan_stops_where_its_budget_share_would_be_passed():
    chunks = chunk_table(40)
    budget = RunBudget(total=20_000, scope="plan")
    plans = {p.stage: p for p in plan_run(chunks, settings(max_chunks=40), budget)}
    assert set(plans) == {"labeled_triplets", "cluster_profiles", "cluster_queries", "entity_descriptions",
                          "embgen_queries", "synthetic_queries", "mining_rounds"}  # fmt: skip
    for stage, plan in plans.items():
        if stage != "synthetic_queries":
            assert plan.tokens <= budget.allowance(stage) and plan.prompt_tokens + plan.completion_tokens <= plan.tokens
    left = sum(
        budget.allowance(p.stage) - p.tokens
        for p in plans.values()
        if p.stage not in {"synthetic_queries", "mining_rounds"}
    )
    assert plans["synthetic_queries"].tokens == budget.allowance("synthetic_queries") + left  # with what they left
    assert sum(p.tokens for p in plans.values()) <= budget.total
    assert plans["synthetic_queries"].capped and 0 < plans["synthetic_queries"].calls < 40
    idle = frozenset({"entity_descriptions", "embgen_queries"})
    assert not {p.stage for p in plan_run(chunks, settings(idle_stages=idle), budget)} & idle


def test_without_mining_the_plan_asks_no_judgement_and_gives_mining_s_share_to_the_questions():
    from embpipe.resources.methods import MethodsResource

    chunks = chunk_table(200)
    plans = {}
    for mining in (True, False):
        idle = MethodsResource(lmar=False, mining=mining).idle_teacher_stages()
        budget = RunBudget(total=20_000, scope="plan", idle_stages=idle)
        plans[mining] = {p.stage: p for p in plan_run(chunks, settings(max_chunks=200, idle_stages=idle), budget)}
    assert "mining_rounds" in plans[True] and plans[True]["mining_rounds"].calls > 0
    assert set(plans[False]) == {"synthetic_queries"}
    with_mining, without = plans[True]["synthetic_queries"], plans[False]["synthetic_queries"]
    assert without.tokens - with_mining.tokens == 20_000 * STAGE_SHARES["mining_rounds"]
    assert without.calls > with_mining.calls


def test_embpipe_plan_prints_every_teacher_stage_and_calls_nothing(data_dir, capsys):
    mining_on = ["--mining", "--set", "mining_rounds.rounds=1"]  # off by default
    assert main(["plan", "--teacher", "fake/teacher", "--token-budget", "30000", *mining_on]) == 0
    out = capsys.readouterr().out
    for stage in ("labeled_triplets", "cluster_profiles", "cluster_queries", "synthetic_queries", "mining_rounds"):
        assert stage in out
    assert "entity_descriptions" not in out  # EmbGen is off by default
    assert "48 documents" in out and "total" in out
    assert not (data_dir / "teacher").exists() or not make_teacher(data_dir / "teacher").store.usage()


def test_the_plan_of_a_guided_run_counts_the_guide_s_texts_and_minutes(data_dir, capsys):
    assert main(["plan", "--teacher", "fake/teacher", "--token-budget", "30000"]) == 0
    assert "Guide" not in capsys.readouterr().out
    guided = [
        "--set",
        "embedding_model.guide_model=embeddinggemma-300m",
        "--set",
        "embedding_model.guide_distill_epochs=4",
    ]
    assert main(["plan", "--teacher", "fake/teacher", "--token-budget", "30000", *guided]) == 0
    guide_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Guide"))
    texts = int(guide_line.split("embeds up to ")[1].split()[0])
    minutes = float(guide_line.split("about ")[1].split()[0])
    assert "embeddinggemma-300m" in guide_line and "over 4 epoch(s)" in guide_line and texts > 48
    assert minutes == pytest.approx(texts * (GUIDE_SECONDS_PER_TEXT + 4 * DISTIL_SECONDS_PER_TEXT_EPOCH) / 60, abs=0.05)


def test_a_run_prints_its_plan_beside_what_it_counted():
    tags = {
        PLAN_TAG: '{"synthetic_queries": {"calls": 4, "tokens": 900}, "mining_rounds": {"calls": 8, "tokens": 400}}'
    }
    usage = [
        UsageRow("synthetic_queries", "m", 3, 1, 500, 100, 0.0, 150),
        UsageRow("embgen_proximity", "m", 1, 0, 9, 1, 0.0),
    ]
    lines = plan_versus_spent(tags, usage)
    assert lines[1].split() == ["synthetic_queries", "4", "3", "900", "750"]
    assert lines[2].split() == ["mining_rounds", "8", "0", "400", "0"]
    assert plan_versus_spent({}, usage) == []


def test_the_question_plan_asks_in_the_style_the_run_config_sets():
    run_config = {"ops": {"synthetic_queries": {"config": {"question_style": "user"}}}}
    calls = question_calls(chunk_table(6), plan_settings(run_config, frozenset()))
    assert calls and all(messages[0]["content"] == SYSTEM_PROMPTS["user"] for messages, _ in calls)
