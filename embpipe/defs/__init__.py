"""Dagster definitions, one thin module per pipeline stage.

These modules do not use ``from __future__ import annotations``: Dagster reads the real annotations of
asset parameters (context, config, resources).
"""

import warnings

from dagster import BetaWarning

# Data versions on outputs and dagster-pandas types are marked beta; the warnings would repeat every run.
warnings.filterwarnings("ignore", category=BetaWarning)
