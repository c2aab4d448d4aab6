"""Asset checks that guard the contracts between stages."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetIn, AssetKey, asset_check

from embpipe.core.questions import flatten_ids
from embpipe.core.splits import leaking_queries


@asset_check(asset="chunks", description="There are chunks, and none is empty.")
def chunks_not_empty(chunks: pd.DataFrame) -> AssetCheckResult:
    empty = int((chunks["text"].str.strip() == "").sum()) if len(chunks) else 0
    return AssetCheckResult(passed=len(chunks) > 0 and empty == 0, metadata={"chunks": len(chunks), "empty": empty})


def untraceable_queries(queries: pd.DataFrame, chunks: pd.DataFrame) -> list[str]:
    """Queries with no positive, or a positive chunk that is missing or not from the query's documents."""
    chunk_docs = dict(zip(chunks["chunk_id"], chunks["doc_id"], strict=True))
    broken = []
    for query_id, positives, docs in zip(
        queries["query_id"], queries["positive_chunk_ids"], queries["doc_ids"], strict=True
    ):
        positives, docs = flatten_ids(positives), set(flatten_ids(docs))
        if not positives or any(chunk_docs.get(c) not in docs for c in positives):
            broken.append(str(query_id))
    return broken


@asset_check(
    asset="synthetic_queries",
    additional_ins={"chunks": AssetIn("chunks")},
    description="Every question traces to existing chunks of its recorded documents.",
)
def queries_trace_to_documents(synthetic_queries: pd.DataFrame, chunks: pd.DataFrame) -> AssetCheckResult:
    broken = untraceable_queries(synthetic_queries, chunks)
    return AssetCheckResult(passed=not broken, metadata={"untraceable": len(broken), "examples": ", ".join(broken[:5])})


@asset_check(asset="synthetic_queries", description="At most max_failure_rate of chunks gave unusable teacher output.")
def question_failure_rate(context) -> AssetCheckResult:
    event = context.instance.get_latest_materialization_event(AssetKey("synthetic_queries"))
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    rate = float(metadata["failure_rate"].value) if "failure_rate" in metadata else 0.0
    limit = float(metadata["max_failure_rate"].value) if "max_failure_rate" in metadata else 1.0
    return AssetCheckResult(
        passed=rate <= limit,
        severity=AssetCheckSeverity.ERROR,
        metadata={"failure_rate": rate, "max_failure_rate": limit},
    )


@asset_check(
    asset="query_splits",
    additional_ins={"synthetic_queries": AssetIn("synthetic_queries")},
    description="No validation or test query shares a document with a training query.",
)
def splits_do_not_leak(query_splits: pd.DataFrame, synthetic_queries: pd.DataFrame) -> AssetCheckResult:
    query_docs = {
        q: flatten_ids(d) for q, d in zip(synthetic_queries["query_id"], synthetic_queries["doc_ids"], strict=True)
    }
    leaks = leaking_queries(query_docs, dict(zip(query_splits["query_id"], query_splits["split"], strict=True)))
    return AssetCheckResult(passed=not leaks, metadata={"leaking_queries": len(leaks)})
