"""Running the asset graph outside the web UI: the Dagster instance under data/, and stale-only runs."""
