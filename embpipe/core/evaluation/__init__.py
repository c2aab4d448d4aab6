"""Evaluation: BEIR folders, BM25, dense retrieval, ranx metrics, significance, the report, lineage."""
