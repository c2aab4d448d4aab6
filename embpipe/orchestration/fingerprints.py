"""What each stage records so the runner sees a changed setting: its resolved config's fingerprint and, for a teacher
stage, whether the token budget stopped it and under which budget."""

import hashlib
import json

from dagster import Config

CONFIG_FINGERPRINT = "config_fingerprint"
BUDGET_STOP = "budget_stop"  # "none" when the stage ran to the end, else why the budget stopped it
TOKEN_BUDGET = "token_budget"  # the run's token budget the stage ran under (0: no cap)


def config_fingerprint(config: Config) -> str:
    """A short hash of a stage's resolved config (recorded so the runner can see config changes)."""
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
