"""Lineage: the table linking every question and training pair to its chunks and documents."""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from embpipe.core.evaluation.lineage import lineage_rows, per_document_counts
from embpipe.core.tables import Role, Split
from embpipe.defs.metadata import table_output
from embpipe.defs.types import LineageFrame

SHOWN_DOCUMENTS = 50


@asset(dagster_type=LineageFrame, code_version="2", group_name="lineage")
def training_lineage(
    context: AssetExecutionContext,
    documents: pd.DataFrame,
    chunks: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
    mining_rounds: pd.DataFrame,
    passage_pairs: pd.DataFrame,
):
    """query → chunk → document for every question, training label and teacher-free pair (``embpipe lineage``)."""
    frame = lineage_rows(synthetic_queries, query_splits, mining_rounds, chunks, documents, passage_pairs)
    counts = per_document_counts(frame)
    context.log.info(f"lineage: {len(frame)} rows over {frame['doc_path'].nunique()} documents")
    return table_output(
        frame,
        None,
        {
            "rows": len(frame),
            "documents_with_questions": int((counts["questions"] > 0).sum()),
            "documents_without_questions": int(len(documents) - (counts["questions"] > 0).sum()),
            "training_pairs": int(((frame["split"] == Split.TRAIN) & (frame["role"] == Role.POSITIVE)).sum()),
            "per_document": MetadataValue.md(counts.head(SHOWN_DOCUMENTS).to_markdown()),
        },
        ["query_id", "role", "source", "chunk_id", "doc_path"],
    )
