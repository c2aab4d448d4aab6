"""Asset checks that guard the contracts between stages."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetIn, AssetKey, asset_check

from embpipe.core.synthesis.questions import flatten_ids
from embpipe.core.synthesis.splits import leaking_queries
from embpipe.core.tables import EMBGEN_STRATEGIES
from embpipe.orchestration.check_gates import REBUILD_WHEN_FAILED
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.teacher import TeacherResource


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


@asset_check(
    asset="synthetic_queries",
    blocking=True,
    metadata={REBUILD_WHEN_FAILED: True},
    description=(
        "At most max_failure_rate of chunks gave no usable teacher output. Blocking: when more failed, nothing "
        "below is built, and the next run asks the failed chunks again (the others come from the cache)."
    ),
)
def question_failure_rate(context) -> AssetCheckResult:
    event = context.instance.get_latest_materialization_event(AssetKey("synthetic_queries"))
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    rate = float(metadata["failure_rate"].value) if "failure_rate" in metadata else 0.0
    limit = float(metadata["max_failure_rate"].value) if "max_failure_rate" in metadata else 1.0
    return AssetCheckResult(
        passed=rate <= limit,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "failure_rate": rate,
            "max_failure_rate": limit,
            "fix": "see the failures in synthetic_queries' metadata, fix the teacher, then rerun `embpipe run`: "
            "only the failed chunks are asked again",
        },
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


@asset_check(
    asset="mining_rounds",
    additional_ins={"synthetic_queries": AssetIn("synthetic_queries")},
    description="No chunk is both a positive and a negative of the same query.",
)
def positives_never_negatives(mining_rounds: pd.DataFrame, synthetic_queries: pd.DataFrame) -> AssetCheckResult:
    used = mining_rounds[mining_rounds["used"]]
    labelled = used[used.role == "positive"]
    positives = set(zip(labelled["query_id"], labelled["chunk_id"], strict=True))
    for query_id, chunk_ids in zip(synthetic_queries["query_id"], synthetic_queries["positive_chunk_ids"], strict=True):
        positives |= {(str(query_id), c) for c in flatten_ids(chunk_ids)}
    negatives = used[used.role == "negative"]
    clashes = [(q, c) for q, c in zip(negatives["query_id"], negatives["chunk_id"], strict=True) if (q, c) in positives]
    return AssetCheckResult(passed=not clashes, metadata={"clashes": len(clashes)})


@asset_check(
    asset="embedding_model",
    blocking=True,
    additional_ins={name: AssetIn(name) for name in ("chunks", "synthetic_queries", "query_splits")},
    description="The tuned model is not clearly worse than the base model on validation (a fresh corpus sample): "
    "it blocks the report and exports when the tuned model scores lower and a paired test says the drop is real.",
)
def model_not_worse_than_base(
    embedding_model,
    chunks: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
    embedder: EmbedderResource,
) -> AssetCheckResult:
    from embpipe.core.training.base_comparison import comparison_with_base
    from embpipe.core.training.validation import (
        VALIDATION_SEED,
        chunk_documents,
        validation_scorer,
        validation_target,
    )

    validation = validation_target(synthetic_queries, query_splits, chunks, seed=VALIDATION_SEED + 1)
    scorer = validation_scorer(validation, chunk_documents(chunks), embedder.batch_size)
    worse, figures = comparison_with_base(scorer.per_query(embedder.load()), scorer.per_query(embedding_model))
    return AssetCheckResult(
        passed=not worse,
        severity=AssetCheckSeverity.ERROR,
        metadata={**figures, "validation_queries": len(validation.queries)},
    )


# Each teacher stage (asset) and the ledger stages its teacher calls are recorded under.
TEACHER_STAGES = {
    "labeled_triplets": ("labeled_triplets",),
    "cluster_profiles": ("cluster_profiles",),
    "cluster_queries": ("cluster_queries",),
    "entity_descriptions": ("entity_descriptions",),
    "embgen_queries": tuple(f"embgen_{strategy}" for strategy in EMBGEN_STRATEGIES),
    "mining_rounds": ("mining_rounds",),
}


def owed_items_check(asset: str, ledger_stages: tuple[str, ...]):
    """The check that fails while items of ``asset``'s last materialization are owed (the teacher was
    unavailable for them), so that the next ``embpipe run`` rebuilds it and asks those items again."""

    @asset_check(
        asset=asset,
        name="no_owed_teacher_items",
        metadata={REBUILD_WHEN_FAILED: True},
        description="No item failed because the teacher was unavailable (timeouts, 429s, 5xx, no connection). "
        "When some did, the next run rebuilds this stage: those items are asked again, the rest come from the cache.",
    )
    def no_owed_teacher_items(context, teacher: TeacherResource) -> AssetCheckResult:
        event = context.instance.get_latest_materialization_event(AssetKey(asset))
        owed = teacher.store().owed_items(event.run_id, ledger_stages) if event is not None else 0
        return AssetCheckResult(
            passed=owed == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "owed_items": owed,
                "fix": f"the next `embpipe run` asks these {owed} items again once the teacher answers",
            },
        )

    return no_owed_teacher_items


OWED_ITEM_CHECKS = [owed_items_check(asset, stages) for asset, stages in TEACHER_STAGES.items()]
