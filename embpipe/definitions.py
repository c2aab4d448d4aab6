"""The Dagster code location: assets, checks, resources and the job. It only wires."""

from __future__ import annotations

from dagster import Definitions, define_asset_job, load_asset_checks_from_modules, load_assets_from_modules

from embpipe.defs import checks, deploy, embgen, evaluation, ingest, lineage, lmar, mining, synthesis, training
from embpipe.defs.operations import documents_folder_sensor, nightly_refresh, refresh_stale
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.io_managers import ModelIOManager, ParquetIOManager
from embpipe.resources.methods import MethodsResource
from embpipe.resources.teacher import TeacherResource
from embpipe.resources.tracking import MlflowResource

STAGE_MODULES = [ingest, synthesis, lmar, embgen, mining, training, evaluation, lineage, deploy]

all_assets = load_assets_from_modules(STAGE_MODULES)
all_checks = load_asset_checks_from_modules([checks])

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
