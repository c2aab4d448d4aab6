"""Command-line mistakes end in one clear line and a non-zero exit, before anything runs."""

from __future__ import annotations

import pytest

from embpipe.cli import main, parser


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--epochs", "0"], "--epochs: must be at least 1, got 0"),
        (["run", "--max-chunks", "-1"], "--max-chunks: must be at least 1, got -1"),
        (["run", "--token-budget", "0"], "--token-budget: must be at least 1, got 0"),
        (["run", "--teacher-timeout", "0"], "--teacher-timeout: must be above 0, got 0"),
        (["run", "--teacher-parallel", "0"], "--teacher-parallel: must be at least 1, got 0"),
        (["run", "--epochs", "two"], "--epochs: expected a whole number, got 'two'"),
        (["run", "--set", "passage_pairs=3"], "--set: expected stage.setting=value, got 'passage_pairs=3'"),
    ],
)
def test_out_of_range_run_options_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_valid_run_options_reach_the_stage_config():
    from embpipe.cli_run import run_config_from

    args = parser().parse_args(["run", "--epochs", "2", "--max-chunks", "8", "--teacher-timeout", "30"])
    ops = run_config_from(args)["ops"]
    assert ops["embedding_model"]["config"]["epochs"] == 2 and ops["synthetic_queries"]["config"]["max_chunks"] == 8
    assert args.teacher_timeout == 30.0


def test_teacher_parallel_sets_the_local_teacher_s_parallel_sequences_and_its_calls_in_flight():
    from embpipe.cli_run import resources_from

    teacher = resources_from(parser().parse_args(["run", "--teacher-parallel", "2"]))["teacher"]
    assert teacher.local_parallel == 2 and teacher.client().concurrency == 2
    default = resources_from(parser().parse_args(["run"]))["teacher"]
    assert default.local_parallel == 8 and default.client().concurrency == 8 and default.client().decodes_together


def test_set_reaches_any_stage_setting_and_a_wrong_name_lists_the_right_ones(capsys):
    from embpipe.cli_run import run_config_from

    args = parser().parse_args(["run", "--set", "passage_pairs.max_pairs=8", "--set", "chunks.strategy=sentences"])
    ops = run_config_from(args)["ops"]
    assert ops["passage_pairs"]["config"] == {"max_pairs": 8} and ops["chunks"]["config"] == {"strategy": "sentences"}

    assert main(["run", "--set", "passage_pairs.max_pair=8"]) == 2
    assert "passage_pairs has no setting 'max_pair'; its settings: max_pairs" in capsys.readouterr().err
    assert main(["run", "--set", "pairs.max_pairs=8"]) == 2
    assert "no stage 'pairs' with settings; stages: " in capsys.readouterr().err


def test_serving_a_missing_model_folder_names_it(capsys, tmp_path):
    missing = tmp_path / "no-such-model"
    assert main(["serve", "--model", str(missing)]) == 2
    assert f"{missing} does not exist" in capsys.readouterr().err


def test_a_user_error_is_one_line_and_debug_shows_the_traceback(capsys, tmp_path):
    missing = tmp_path / "no-such-benchmark"
    assert main(["eval", "--beir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{missing}/corpus.jsonl is missing" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="corpus.jsonl is missing"):
        main(["eval", "--beir", str(missing), "--debug"])


def run_cli(data_dir, *argv: str):
    import os
    import subprocess
    import sys

    from embpipe_tests.conftest import REPO

    env = {**os.environ, "EMBPIPE_DATA_DIR": str(data_dir)}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "embpipe.cli", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_failed_run_names_the_cause_without_a_stack_trace(tmp_path):
    argv = ["run", "--documents", str(tmp_path / "missing"), "--select", "documents", "--teacher", "fake/teacher"]
    quiet = run_cli(tmp_path / "data", *argv)
    output = quiet.stdout + quiet.stderr
    assert quiet.returncode == 1
    assert "stopped: read_documents: ValueError: Documents folder" in output and "does not exist" in output
    assert "Stack Trace" not in output and "Traceback" not in output and "Model:" not in output
    loud = run_cli(tmp_path / "data", *argv, "--debug")
    assert loud.returncode == 1 and "Stack Trace" in loud.stdout + loud.stderr
