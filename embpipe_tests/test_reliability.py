"""Nothing lost under faults: a killed run resumes without paying twice, concurrent runs stay consistent,
secrets never reach disk, and hostile files never stop ingest."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from embpipe.core.ingest.documents import read_folder
from embpipe_tests.conftest import GRAPH_SAMPLE_DIR, REPO

pytestmark = pytest.mark.slow

# the question stage and what it needs, LMAR off: a teacher stage to interrupt, without training on the way
QUESTIONS = ["run", "--select", "synthetic_queries", "--no-lmar", "--documents", str(GRAPH_SAMPLE_DIR)]
QUESTIONS += ["--max-chunks", "24"]


def embpipe(data_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    env = dict(env or {**os.environ, "EMBPIPE_DATA_DIR": str(data_dir)})
    env.pop("DAGSTER_HOME", None)
    return subprocess.Popen(
        [sys.executable, "-m", "embpipe.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def paid_calls(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "teacher" / "teacher.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM calls WHERE cached = 0").fetchone()[0]


def calls_so_far(data_dir: Path) -> int:
    """Paid calls while the run may still be creating the store (no table yet counts as none)."""
    try:
        return paid_calls(data_dir)
    except sqlite3.OperationalError:
        return 0


def stored_responses(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "teacher" / "teacher.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def questions(data_dir: Path) -> pd.DataFrame:
    frame = pd.read_parquet(data_dir / "assets" / "synthetic_queries.parquet")
    return frame[["query_id", "text"]].sort_values("query_id").reset_index(drop=True)


def test_sigkill_mid_stage_then_rerun_pays_no_call_twice(tmp_path):
    reference = tmp_path / "reference"
    finish(embpipe(reference, *QUESTIONS, "--teacher", "fake/slow"))

    interrupted = tmp_path / "interrupted"
    process = embpipe(interrupted, *QUESTIONS, "--teacher", "fake/slow")
    store = interrupted / "teacher" / "teacher.sqlite"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (store.exists() and calls_so_far(interrupted) >= 6):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    paid_before_kill = paid_calls(interrupted)
    assert 6 <= paid_before_kill < paid_calls(reference), "the kill must land inside the teacher stage"
    assert not (interrupted / "assets" / "synthetic_queries.parquet").exists()

    finish(embpipe(interrupted, *QUESTIONS, "--teacher", "fake/slow"))
    assert paid_calls(interrupted) == stored_responses(interrupted) == paid_calls(reference)  # none paid twice
    pd.testing.assert_frame_equal(questions(interrupted), questions(reference))


def test_two_runs_at_once_leave_consistent_outputs(tmp_path):
    shared = tmp_path / "shared"
    runs = [embpipe(shared, *QUESTIONS, "--teacher", "fake/slow") for _ in range(2)]
    for run in runs:
        finish(run)
    with sqlite3.connect(shared / "teacher" / "teacher.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    alone = tmp_path / "alone"
    finish(embpipe(alone, *QUESTIONS, "--teacher", "fake/slow"))
    assert stored_responses(shared) == stored_responses(alone)
    pd.testing.assert_frame_equal(questions(shared), questions(alone))
    assert not list((shared / "assets").glob(".*.tmp"))


def test_api_key_never_reaches_disk_or_logs(tmp_path):
    secret = f"sk-embpipe-test-{uuid.uuid4().hex}"
    data_dir = tmp_path / "data"
    whole_pipeline = ["run", "--documents", str(GRAPH_SAMPLE_DIR), "--max-chunks", "16", "--epochs", "1", "--no-lmar"]
    whole_pipeline += ["--set", "passage_pairs.max_pairs=8", "--set", "mining_rounds.rounds=1"]
    process = embpipe(
        data_dir,
        *whole_pipeline,
        "--teacher",
        "fake/teacher",
        "--api-key-env",
        "EMBPIPE_TEST_KEY",
        env={**os.environ, "EMBPIPE_DATA_DIR": str(data_dir), "EMBPIPE_TEST_KEY": secret},
    )
    output = finish(process)
    assert secret not in output
    leaked = [p for p in data_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert paid_calls(data_dir) > 0  # the keyed teacher was really used
    assert (data_dir / "mlflow" / "mlflow.db").is_file() and (data_dir / "dagster").is_dir()  # all were searched


def test_huge_and_looping_inputs_are_skipped_with_reasons(tmp_path):
    with (tmp_path / "huge.txt").open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # 100 MB, sparse
    (tmp_path / "loop").mkdir()
    os.symlink(tmp_path / "loop", tmp_path / "loop" / "again")
    (tmp_path / "ok.md").write_text("# Fine\n\nA readable note.")
    result = read_folder(tmp_path)
    assert [d.path for d in result.documents] == ["ok.md"]
    assert "too large" in {r.path: r.reason for r in result.rejected}["huge.txt"]
