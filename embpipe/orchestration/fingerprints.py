"""Config fingerprints: what each stage records of its resolved config, so the runner sees a changed setting."""

import hashlib
import json

from dagster import Config

CONFIG_FINGERPRINT = "config_fingerprint"


def config_fingerprint(config: Config) -> str:
    """A short hash of a stage's resolved config (recorded so the runner can see config changes)."""
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
