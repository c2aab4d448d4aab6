"""Where embpipe keeps what it writes: one place for every default location.

Everything a run produces lives under the project's ``data/`` folder (gitignored), except downloaded model
weights, which live in a per-user cache so that every checkout shares them.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_NAME = "data"


def data_dir() -> Path:
    """The folder runs write into: ``$EMBPIPE_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("EMBPIPE_DATA_DIR", DATA_DIR_NAME)).resolve()


def model_cache_dir() -> Path:
    """Per-user cache for teacher weights: ``$EMBPIPE_MODEL_CACHE`` or ``~/.cache/embpipe/models``."""
    default = Path.home() / ".cache" / "embpipe" / "models"
    return Path(os.environ.get("EMBPIPE_MODEL_CACHE", default)).expanduser().resolve()


def default_documents_folder() -> str:
    """The documents folder when none is configured: ``$EMBPIPE_DOCUMENTS`` or ``data/sample``."""
    return os.environ.get("EMBPIPE_DOCUMENTS", "data/sample")
