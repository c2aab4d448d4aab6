"""Experiment tracking: one MLflow run per training or evaluation asset, in a SQLite store under data/."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from embpipe.locks import file_lock
from embpipe.paths import data_dir


class MlflowResource(ConfigurableResource):
    """Where MLflow runs go (``sqlite:///data/mlflow/mlflow.db`` by default; any tracking URI works)."""

    tracking_uri: str = Field(default="", description="MLflow tracking URI; empty = sqlite under <data dir>/mlflow.")
    artifact_dir: str = Field(default="", description="Artifact root of new experiments; empty = <data dir>/mlflow.")
    experiment: str = Field(default="embpipe", description="MLflow experiment name.")

    def uri(self) -> str:
        """The tracking URI in use."""
        return self.tracking_uri or f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}"

    def _experiment_id(self) -> str:
        import mlflow

        uri = self.uri()
        mlflow.set_tracking_uri(uri)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        with file_lock(data_dir() / "mlflow" / ".experiment.lock"):  # concurrent first runs create it once
            found = mlflow.get_experiment_by_name(self.experiment)
            if found is not None:
                return found.experiment_id
            artifacts = Path(self.artifact_dir or data_dir() / "mlflow" / "artifacts").resolve()
            artifacts.mkdir(parents=True, exist_ok=True)
            return mlflow.create_experiment(self.experiment, artifact_location=artifacts.as_uri())

    @contextlib.contextmanager
    def start_run(
        self,
        run_name: str,
        tags: dict[str, str] | None = None,
        params: dict | None = None,
        metrics: dict[str, float] | None = None,
    ) -> Iterator[object]:
        """An active MLflow run with ``params`` and ``metrics`` logged, ended (FINISHED or FAILED) when the block
        exits."""
        import mlflow

        experiment_id = self._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            if params:
                mlflow.log_params(params)
            if metrics:
                mlflow.log_metrics(metrics)
            yield run
