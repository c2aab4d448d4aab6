"""The Dagster instance lives under ``data/dagster`` (gitignored), configured by the repo's ``dagster.yaml``."""

import os
import shutil
from pathlib import Path

from embpipe.locks import file_lock
from embpipe.paths import data_dir

DAGSTER_YAML = "dagster.yaml"
FALLBACK_DAGSTER_YAML = (
    "telemetry:\n  enabled: false\n"
    "python_logs:\n  managed_python_loggers:\n    - embpipe\n  python_log_level: INFO\n"
)  # when run outside the project folder: the same settings that matter


def prepare_dagster_home(project_dir: Path | None = None) -> Path:
    """Create ``data/dagster`` with the project's ``dagster.yaml`` in it and point ``DAGSTER_HOME`` there."""
    home = data_dir() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    source = (project_dir or Path.cwd()) / DAGSTER_YAML
    target = home / DAGSTER_YAML
    if source.is_file():
        shutil.copyfile(source, target)
    elif not target.exists():
        target.write_text(FALLBACK_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def dagster_instance():
    """The persistent instance under ``data/dagster``; its storage is created under a lock, so two
    first runs started at once do not race to create the same SQLite schema."""
    from dagster import DagsterInstance

    home = prepare_dagster_home()
    with file_lock(home / ".instance.lock"):
        instance = DagsterInstance.get()
        instance.get_runs(limit=1)  # forces storage creation and migration while the lock is held
    return instance
