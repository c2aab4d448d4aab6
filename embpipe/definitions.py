"""The Dagster code location: assets, checks, resources and the job. It only wires."""

from __future__ import annotations

from dagster import Definitions, define_asset_job

from embpipe.defs.automation import documents_folder_sensor, nightly_refresh, refresh_stale
from embpipe.defs.graph import STAGE_MODULES, all_assets, all_checks
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.io_managers import ModelIOManager, ParquetIOManager
from embpipe.resources.methods import MethodsResource
from embpipe.resources.teacher import TeacherResource
from embpipe.resources.tracking import MlflowResource

__all__ = ["STAGE_MODULES", "all_assets", "all_checks", "default_resources", "defs"]

adapt_model_job = define_asset_job("adapt_model", description="Every stage, documents to retrieval report.")


def default_resources() -> dict[str, object]:
    """The resources of a local run: Parquet and model IO managers under data/, the offline teacher and base model."""
    return {
        "io_manager": ParquetIOManager(),
        "model_io_manager": ModelIOManager(),
        "teacher": TeacherResource(),
        "embedder": EmbedderResource(),
        "mlflow": MlflowResource(),
        "methods": MethodsResource(),
    }


defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[adapt_model_job, refresh_stale],
    sensors=[documents_folder_sensor],
    schedules=[nightly_refresh],
    resources=default_resources(),
)
