"""The asset graph: every stage module's assets and the asset checks, in one place.

``definitions.py`` wires them with resources, jobs and automation; the refresh op runs them; neither imports
the other.
"""

from dagster import load_asset_checks_from_modules, load_assets_from_modules

from embpipe.defs import checks, deploy, embgen, evaluation, ingest, lineage, lmar, mining, synthesis, training

STAGE_MODULES = [ingest, synthesis, lmar, embgen, mining, training, evaluation, lineage, deploy]

all_assets = load_assets_from_modules(STAGE_MODULES)
all_checks = load_asset_checks_from_modules([checks])
