"""Shared fixtures: the sample corpus, a once-per-session base model, a throwaway data folder."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

import embpipe  # noqa: F401  (sets the offline environment defaults)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "data" / "sample"
# The whole-graph tests run on the first 20 sample technotes (kv-0101 … kv-0120): the 28 confusable ones added for
# the hand-written evaluation set only lengthen them.
GRAPH_SAMPLE_DIR = Path(tempfile.mkdtemp(prefix="embpipe-graph-sample-"))
for _document in sorted(SAMPLE_DIR.iterdir())[:20]:
    shutil.copy(_document, GRAPH_SAMPLE_DIR)
atexit.register(shutil.rmtree, GRAPH_SAMPLE_DIR, True)
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def stop_local_teachers():
    """Stop the local teacher servers the session started, so none outlives the test run."""
    yield
    from embpipe.llm.local_endpoint import stop_all

    stop_all()


@pytest.fixture(scope="session")
def base_model():
    """The packaged all-MiniLM-L6-v2, loaded once (tests must not train it in place)."""
    from embpipe.core.embedding import load_model, packaged_base_model

    return load_model(packaged_base_model(), 128, "cpu")


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh EMBPIPE_DATA_DIR so a test never touches the project's data/."""
    folder = tmp_path / "data"
    monkeypatch.setenv("EMBPIPE_DATA_DIR", str(folder))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return folder


def make_teacher(tmp_path: Path, model: str = "fake/teacher", run_id: str = "run-1", **settings):
    """A teacher with its own cache in ``tmp_path`` and no backoff delay (tests of retries set their own)."""
    from embpipe.llm.teacher import Teacher, TeacherSettings
    from embpipe.llm.teacher_store import TeacherStore

    return Teacher(
        TeacherSettings(model=model, **{"backoff_s": 0.0, **settings}), TeacherStore(tmp_path / "t.sqlite"), run_id
    )
