"""Experiment tracking: one MLflow run per training or evaluation asset, in a SQLite store under data/."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from embpipe.paths import data_dir


class MlflowResource(ConfigurableResource):
    """Where MLflow runs go (``sqlite:///data/mlflow/mlflow.db`` by default; any tracking URI works)."""

    tracking_uri: str = Field(
        default_factory=lambda: f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}", description="MLflow tracking URI."
    )
    artifact_dir: str = Field(
        default_factory=lambda: str(data_dir() / "mlflow" / "artifacts"),
        description="Artifact root of experiments this resource creates.",
    )
    experiment: str = Field(default="embpipe", description="MLflow experiment name.")

    def _experiment_id(self) -> str:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        found = mlflow.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        Path(self.artifact_dir).mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(self.experiment, artifact_location=Path(self.artifact_dir).resolve().as_uri())

    @contextlib.contextmanager
    def start_run(self, run_name: str, tags: dict[str, str] | None = None) -> Iterator[object]:
        """An active MLflow run, ended (FINISHED or FAILED) when the block exits."""
        import mlflow

        experiment_id = self._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield run
