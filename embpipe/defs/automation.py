"""Operations: a job that refreshes every stale asset, the documents sensor and the nightly schedule.

Dagster's staleness is one level deep (a child of a stale asset looks fresh until the stale one is rebuilt),
so a plain "materialize the stale assets" request would refresh one layer per tick. ``refresh_stale`` instead
runs the stale-only runner inside one run: pass after pass until nothing is missing, stale or re-configured.
Because the teacher's responses are cached by content and chunk selection and splits are stable under added
documents, a refresh after a new document pays teacher calls only for what depends on it.

Settings (environment, read when the code location loads):
- ``EMBPIPE_DOCUMENTS``: the folder the sensor watches and the pipeline reads (default ``data/sample``).
- ``EMBPIPE_RETRAIN_CRON``: when the nightly refresh runs (default ``0 2 * * *``, 02:00).
- ``EMBPIPE_RETRAIN_TIMEZONE``: the schedule's time zone (default ``UTC``).
- ``EMBPIPE_AUTOMATION``: ``running`` (default) or ``stopped``: whether the sensor and schedule start on.
"""

import json
import os

from dagster import (
    Config,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    OpExecutionContext,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    job,
    op,
    sensor,
)
from pydantic import Field

from embpipe.core.ingest.documents import folder_fingerprint
from embpipe.orchestration.runner import PassSummary
from embpipe.paths import default_documents_folder

RETRAIN_CRON = os.environ.get("EMBPIPE_RETRAIN_CRON", "0 2 * * *")
RETRAIN_TIMEZONE = os.environ.get("EMBPIPE_RETRAIN_TIMEZONE", "UTC")
AUTOMATION_RUNNING = os.environ.get("EMBPIPE_AUTOMATION", "running").lower() != "stopped"
SENSOR_INTERVAL_S = 60
REFRESH_TAG = "embpipe/refresh_run"  # on every materialization run a refresh starts: its refresh run's id


PIPELINE_RESOURCES = frozenset({"io_manager", "model_io_manager", "teacher", "embedder", "mlflow", "methods"})


class RefreshConfig(Config):
    """Stage settings for the refresh (the same ``ops`` mapping as a job's run config; empty = defaults)."""

    stage_config_json: str = Field(
        default="{}", description='JSON like {"embedding_model": {"config": {"epochs": 2}}}; empty = stage defaults.'
    )


@op(
    description="Materialize every missing, stale or re-configured asset, pass after pass, until fresh.",
    required_resource_keys=set(PIPELINE_RESOURCES),
)
def refresh_stale_assets(context: OpExecutionContext, config: RefreshConfig) -> None:
    from embpipe.defs.graph import all_assets, all_checks
    from embpipe.orchestration.runner import run_stale

    def on_pass(number: int, names: list[str]) -> None:
        context.log.info(f"pass {number}: materializing {', '.join(names)}")

    resources = {key: getattr(context.resources, key) for key in PIPELINE_RESOURCES}
    run_config = {"ops": json.loads(config.stage_config_json or "{}")}
    outcome = run_stale(
        all_assets,
        all_checks,
        resources,
        run_config,
        context.instance,
        on_pass=on_pass,
        tags={REFRESH_TAG: context.run_id},
    )
    context.log.info(f"refreshed: {', '.join(outcome.rebuilt) or 'nothing was stale'}")
    if outcome.held_back:
        context.log.warning(f"held back by failed blocking checks (asset: check): {outcome.held_back}")


def refresh_passes(instance, refresh_run_id: str) -> list[PassSummary]:
    """The materialization runs a refresh started (oldest first): their ids, and the assets each built."""
    from dagster import DagsterEventType, RunsFilter

    records = instance.get_run_records(filters=RunsFilter(tags={REFRESH_TAG: refresh_run_id}))
    passes = []
    for record in sorted(records, key=lambda r: r.create_timestamp):
        events = instance.all_logs(record.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        assets = sorted({e.dagster_event.asset_key.to_user_string() for e in events})
        passes.append(PassSummary(record.dagster_run.run_id, assets))
    return passes


@job(description="Bring every asset up to date with the documents folder (stale-only, all layers).")
def refresh_stale():
    refresh_stale_assets()


@sensor(
    job=refresh_stale,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING if AUTOMATION_RUNNING else DefaultSensorStatus.STOPPED,
    description="Starts a refresh when a file in the documents folder is added, changed or removed.",
)
def documents_folder_sensor(context: SensorEvaluationContext):
    folder = default_documents_folder()
    fingerprint = folder_fingerprint(folder)
    if fingerprint == context.cursor:
        return SkipReason(f"no change in {folder}")
    previous = context.cursor
    context.update_cursor(fingerprint)
    reason = "first look at the folder" if previous is None else "documents added, changed or removed"
    return RunRequest(run_key=fingerprint, tags={"embpipe/reason": reason, "embpipe/folder": folder})


nightly_refresh = ScheduleDefinition(
    name="nightly_refresh",
    job=refresh_stale,
    cron_schedule=RETRAIN_CRON,
    execution_timezone=RETRAIN_TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING if AUTOMATION_RUNNING else DefaultScheduleStatus.STOPPED,
    description="Nightly retraining: refresh whatever new documents made stale.",
)
