"""One token budget per run: per-stage shares, every pass of `embpipe run` counted together, exact resumes."""

import pandas as pd
import pytest

from embpipe.core.synthesis.questions import generate_single_chunk_questions
from embpipe.llm.budget import (
    BUDGET_SCOPE_TAG,
    METHOD_STAGES,
    QUESTION_STAGE,
    STAGE_SHARES,
    RunBudget,
    TokenBudgetExhausted,
    overrun,
)
from embpipe_tests.conftest import make_teacher

CHUNKS = pd.DataFrame(
    {
        "chunk_id": [f"c{i}" for i in range(12)],
        "doc_id": [f"d{i}" for i in range(12)],
        "title": "T",
        "text": [f"Passage {i} says error E{i}00 appears after an update. Firmware {i}.1 fixes it." for i in range(12)],
    }
)


def test_the_shares_split_the_whole_budget_and_switched_off_methods_feed_the_question_stage():
    assert sum(STAGE_SHARES.values()) == pytest.approx(1.0)
    everything_on = RunBudget(100_000, "s")
    assert sum(everything_on.allowance(s) for s in STAGE_SHARES) <= 100_000
    idle = frozenset(METHOD_STAGES["lmar"] + METHOD_STAGES["embgen"])
    only_questions = RunBudget(100_000, "s", idle)
    assert only_questions.allowance(QUESTION_STAGE) + only_questions.allowance("mining_rounds") == 100_000
    assert RunBudget(None, "s").allowance(QUESTION_STAGE) is None
    assert overrun(everything_on, "embgen_proximity", 1, 0, everything_on.allowance("embgen_queries")) is not None
    assert overrun(everything_on, "labeled_triplets", 100, 0, 0) is None


def test_one_stage_cannot_take_the_share_of_the_next(tmp_path):
    teacher = make_teacher(tmp_path, token_budget=20_000)
    long_passage = [{"role": "user", "content": "x" * 9_000}]  # ~3,000 tokens: more than a profile's share
    with pytest.raises(TokenBudgetExhausted, match="cluster_profiles's share"):
        teacher.chat("cluster_profiles", long_passage)
    assert teacher.remaining(QUESTION_STAGE) == 8_000  # untouched: the profiles could not spend it
    teacher.settle("cluster_profiles")  # the profiles finish: what they left goes to the question stage
    assert teacher.remaining(QUESTION_STAGE) == 9_000
    assert make_teacher(tmp_path, run_id="later", token_budget=20_000).remaining(QUESTION_STAGE) == 9_000


def test_a_resumed_run_stops_where_an_uninterrupted_one_would(tmp_path):
    budget = 4_000
    reference = make_teacher(tmp_path / "reference", token_budget=budget)
    expected, expected_stats = generate_single_chunk_questions(reference, CHUNKS, 2)
    assert expected_stats.budget_exhausted and 0 < expected_stats.attempted < len(CHUNKS)

    interrupted = make_teacher(tmp_path / "resumed", run_id="first", token_budget=budget)

    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_single_chunk_questions(interrupted, CHUNKS, 2, interrupt)
    resumed = make_teacher(tmp_path / "resumed", run_id="second", token_budget=budget)  # a new run, same cache
    frame, stats = generate_single_chunk_questions(resumed, CHUNKS, 2)
    pd.testing.assert_frame_equal(frame, expected)
    assert stats.attempted == expected_stats.attempted
    assert resumed.store.paid_tokens("second") == reference.store.paid_tokens("run-1") - interrupted.store.paid_tokens(
        "first"
    )


@pytest.mark.slow
def test_a_run_whose_teacher_stages_sit_in_different_passes_never_pays_past_the_cap(data_dir):
    from dagster import AssetKey, DagsterInstance

    from embpipe.definitions import all_assets, all_checks, default_resources
    from embpipe.llm.budget import budget_stage
    from embpipe.llm.teacher import Teacher, TeacherSettings
    from embpipe.orchestration.runner import run_stale
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    cap = 12_000
    teacher = TeacherResource(model="fake/teacher", token_budget=cap)
    resources = {**default_resources(), "teacher": teacher, "methods": MethodsResource(lmar=True, embgen=True)}
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
            "labeled_triplets": {"config": {"anchors": 200}},  # asks for far more than its share
            "entity_descriptions": {"config": {"max_chunks": 200}},
        }
    }
    instance = DagsterInstance.ephemeral()
    outcome = run_stale(
        all_assets, all_checks, resources, run_config, instance, targets={AssetKey("synthetic_queries")}
    )
    assert not outcome.failed and len(outcome.passes) > 1
    scopes = {instance.get_run_by_id(run_id).tags[BUDGET_SCOPE_TAG] for run_id in outcome.run_ids}
    assert len(scopes) == 1  # every pass counts against the same budget
    [scope] = scopes
    store = teacher.store()
    assert 0 < store.scope_tokens(scope) <= cap
    spent = {stage: store.scope_tokens(scope, stage) for stage in STAGE_SHARES}
    idle = resources["methods"].idle_teacher_stages()  # mining, off by default: its share went to the questions
    settings = TeacherSettings(model="fake/teacher", token_budget=cap, budget_scope=scope, idle_stages=idle)
    budget = Teacher(settings, store, "x").budget
    assert budget.carried > 0  # what the earlier stages left went to the question stage
    assert all(spent[stage] <= budget.allowance(stage) for stage in spent), spent
    assert spent["labeled_triplets"] > 0.8 * budget.allowance("labeled_triplets")  # it did hit its share
    assert spent[QUESTION_STAGE] > 0  # and the question stage still got its own
    stages = {budget_stage(u.stage) for run_id in outcome.run_ids for u in store.usage(run_id)}
    assert {"labeled_triplets", "entity_descriptions", QUESTION_STAGE} <= stages
    queries = pd.read_parquet(data_dir / "assets" / "synthetic_queries.parquet")
    assert set(queries["strategy"]) >= {"single_chunk"}


@pytest.mark.slow
def test_raising_the_budget_continues_a_stopped_stage_and_pays_only_for_the_new_calls(data_dir):
    from dagster import AssetKey, DagsterInstance

    from embpipe.definitions import all_assets, all_checks, default_resources
    from embpipe.orchestration.runner import run_stale
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    run_config = {"ops": {"read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}}}}
    instance = DagsterInstance.ephemeral()
    questions = data_dir / "assets" / "synthetic_queries.parquet"

    def run(budget: int) -> tuple[list[str], int]:
        teacher = TeacherResource(model="fake/teacher", token_budget=budget)
        resources = {**default_resources(), "teacher": teacher, "methods": MethodsResource(lmar=False)}
        outcome = run_stale(
            all_assets, all_checks, resources, run_config, instance, targets={AssetKey("synthetic_queries")}
        )
        assert not outcome.failed
        read_every_run = {"documents", "rejected_documents"}
        built = [name for summary in outcome.passes for name in summary.assets if name not in read_every_run]
        return built, sum(teacher.store().paid_tokens(run_id) for run_id in outcome.run_ids)

    built, paid_first = run(3_000)
    stopped = len(pd.read_parquet(questions))
    assert "synthetic_queries" in built and 0 < paid_first <= 3_000
    assert run(3_000) == ([], 0)  # the same budget: nothing is stale, nothing is paid
    built, paid_second = run(6_000)
    assert "synthetic_queries" in built
    assert len(pd.read_parquet(questions)) > stopped
    assert 0 < paid_second <= 6_000 - paid_first  # the first run's calls came from the cache
    assert run(5_000) == ([], 0)  # a lower budget does not rebuild
