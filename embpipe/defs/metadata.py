"""Metadata helpers shared by the assets: previews, counts, config fingerprints, content versions."""

import hashlib
import json

import pandas as pd
from dagster import Config, MetadataValue

CONFIG_FINGERPRINT = "config_fingerprint"


def preview(frame: pd.DataFrame, columns: list[str] | None = None, rows: int = 5, width: int = 80) -> MetadataValue:
    """A Markdown preview of the first rows, long cells cut to ``width`` characters."""
    shown = frame[columns] if columns else frame
    shown = shown.head(rows).map(lambda v: (str(v)[:width] + "…") if len(str(v)) > width else str(v))
    return MetadataValue.md(shown.to_markdown(index=False) if len(shown) else "(empty)")


def config_fingerprint(config: Config) -> str:
    """A short hash of a stage's resolved config (recorded so the runner can see config changes)."""
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def frame_version(frame: pd.DataFrame) -> str:
    """A content hash of a table, used as its Dagster data version."""
    hashed = pd.util.hash_pandas_object(frame.astype(str), index=False)
    return hashlib.sha256(hashed.values.tobytes()).hexdigest()[:24]
