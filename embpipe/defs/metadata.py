"""Helpers shared by the assets: previews, config fingerprints, content versions, progress logs."""

import hashlib
import time
from collections.abc import Callable

import pandas as pd
from dagster import AssetExecutionContext, Config, DataVersion, MetadataValue, Output

from embpipe.orchestration.fingerprints import BUDGET_STOP, CONFIG_FINGERPRINT, TOKEN_BUDGET, config_fingerprint

PROGRESS_SECONDS = 30.0


def preview(frame: pd.DataFrame, columns: list[str] | None = None, rows: int = 5, width: int = 80) -> MetadataValue:
    """A Markdown preview of the first rows, long cells cut to ``width`` characters."""
    shown = frame[columns] if columns else frame
    shown = shown.head(rows).map(lambda v: (str(v)[:width] + "…") if len(str(v)) > width else str(v))
    return MetadataValue.md(shown.to_markdown(index=False) if len(shown) else "(empty)")


def frame_version(frame: pd.DataFrame) -> str:
    """A content hash of a table, used as its Dagster data version."""
    hashed = pd.util.hash_pandas_object(frame.astype(str), index=False)
    return hashlib.sha256(hashed.values.tobytes()).hexdigest()[:24]


def progress_logger(context: AssetExecutionContext, what: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that logs at most every ``PROGRESS_SECONDS`` (and at the end)."""
    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= PROGRESS_SECONDS or done == total:
            last[0] = time.monotonic()
            context.log.info(f"{what}: {done}/{total}")

    return report


def budget_metadata(context: AssetExecutionContext, message: str) -> dict:
    """A teacher stage's ``budget_stop`` ("none" when it ran to the end; a stop is logged too) and the run's
    ``token_budget`` it ran under (0: no cap), so a later run with a larger budget rebuilds a stage it stopped."""
    if message:
        context.log.warning(f"stopped by the token budget, keeping what was made: {message}")
    return {BUDGET_STOP: message or "none", TOKEN_BUDGET: context.resources.teacher.token_budget or 0}


def table_output(
    frame: pd.DataFrame, config: Config | None, metadata: dict, preview_columns: list[str] | None = None
) -> Output:
    """A table asset's output: its content hash as data version, ``metadata``, the config fingerprint (so the
    runner sees config changes) and a preview of the first rows."""
    recorded = {**metadata, "preview": preview(frame, preview_columns)}
    if config is not None:
        recorded[CONFIG_FINGERPRINT] = config_fingerprint(config)
    return Output(frame, data_version=DataVersion(frame_version(frame)), metadata=recorded)
