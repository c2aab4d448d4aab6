"""embpipe: turn a folder of domain documents into a domain-adapted text-embedding model.

An LLM teacher synthesises the supervision; Dagster orchestrates the stages as software-defined assets.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# Offline-safe defaults, set before any of these libraries is imported; a user's own setting wins.
OFFLINE_DEFAULTS = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_WAIT_POLICY": "PASSIVE",
}
for _name, _value in OFFLINE_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
