"""Dagster resources: IO managers, the teacher, the embedder and experiment tracking."""
