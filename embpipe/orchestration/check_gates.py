"""What a run's checks and failed steps mean for the next run: assets owed a rebuild, messages for the user.

A check marked ``REBUILD_WHEN_FAILED`` in its metadata makes its asset stale while its latest evaluation
failed (the stage's failed items are owed); ``failed_check_messages`` and ``step_errors`` turn a failed run
into one line per cause.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetKey, DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

REBUILD_WHEN_FAILED = "embpipe/rebuild_when_failed"  # check metadata: a failed evaluation makes its asset stale


def rebuild_after_failed_checks(instance: DagsterInstance, checks: Sequence) -> set[AssetKey]:
    """Assets whose latest evaluation of a check marked ``REBUILD_WHEN_FAILED`` failed: their failed items are
    owed, so the next run rebuilds them (what succeeded comes back from the teacher cache for free)."""
    owed = set()
    for spec in (s for c in checks for s in c.check_specs if (s.metadata or {}).get(REBUILD_WHEN_FAILED)):
        record = instance.get_latest_asset_check_evaluation_record(spec.key)
        if record is not None and record.status == AssetCheckExecutionRecordStatus.FAILED:
            owed.add(spec.asset_key)
    return owed


def failed_check_messages(result) -> list[str]:
    """``check on asset failed: metadata…`` for each check that failed in ``result``, with its ``fix`` if any."""
    messages = []
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            continue
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        fix = metadata.pop("fix", None)
        details = ", ".join(f"{k} {v}" for k, v in metadata.items())
        line = f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed ({details})"
        messages.append(line + (f"; {fix}" if fix else ""))
    return messages


def step_errors(result) -> list[str]:
    """``step: message`` of each failed step, with the innermost cause (the user's error, not Dagster's wrapper)."""
    errors = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            errors.append(f"{event.step_key}: {error.message.strip()}")
    return errors
