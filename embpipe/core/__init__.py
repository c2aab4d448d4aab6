"""Dagster-free logic of every stage: plain typed functions that tests call directly."""
