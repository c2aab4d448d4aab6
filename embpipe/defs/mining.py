"""Training data mining: margin-rule hard negatives, then iterative student–teacher rounds."""

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, Config, asset
from pydantic import Field

from embpipe.core.embedding import encode
from embpipe.core.evaluation.retrieval import SearchBackend, faiss_available
from embpipe.core.synthesis.questions import flatten_ids
from embpipe.core.tables import Split
from embpipe.core.training.examples import chunk_corpus, queries_in_split
from embpipe.core.training.mining import (
    Label,
    MiningOutcome,
    MiningParams,
    RoundRecord,
    earlier_judgements,
    labels_frame,
    run_mining,
    starting_labels,
)
from embpipe.core.training.mining_steps import (
    candidate_pool,
    mining_summary,
    round_metrics,
    student_retriever,
    student_trainer,
    teacher_judge,
)
from embpipe.core.training.negatives import NegativeParams, mine_for_chunks, negatives_table
from embpipe.core.training.trainer import TrainingParams
from embpipe.core.training.validation import chunk_documents, validation_scorer, validation_target
from embpipe.defs.metadata import budget_metadata, progress_logger, table_output
from embpipe.defs.types import HardNegativesFrame, TrainingLabelsFrame
from embpipe.llm.budget import MINING_STAGE, BudgetStop
from embpipe.llm.teacher import Teacher
from embpipe.orchestration.fingerprints import CONFIG_FINGERPRINT, config_fingerprint
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.io_managers import read_table
from embpipe.resources.methods import MethodsResource
from embpipe.resources.teacher import TeacherResource
from embpipe.resources.tracking import MlflowResource


class HardNegativeConfig(Config):
    """The margin rule: negatives must score below ``margin`` × the weakest positive's score."""

    count: int = Field(default=NegativeParams.count, description="Negatives kept per training query.")
    margin: float = Field(default=NegativeParams.margin, description="Share of the weakest positive's score.")
    depth: int = Field(default=NegativeParams.depth, description="Ranked chunks read per query.")
    exclude_same_document: bool = Field(
        default=NegativeParams.exclude_same_document,
        description="Never use another chunk of a positive's document as a negative.",
    )
    backend: SearchBackend = Field(
        default=SearchBackend.AUTO,
        description="auto (faiss when installed, GPU with faiss-gpu; else exact), exact, faiss.",
    )

    def search_backend(self) -> SearchBackend:
        if self.backend != SearchBackend.AUTO:
            return self.backend
        return SearchBackend.FAISS if faiss_available() else SearchBackend.EXACT

    def params(self) -> NegativeParams:
        return NegativeParams(self.count, self.margin, self.depth, self.exclude_same_document)


@asset(dagster_type=HardNegativesFrame, code_version="3", group_name="training")
def hard_negatives(
    context: AssetExecutionContext,
    config: HardNegativeConfig,
    embedder: EmbedderResource,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
):
    """Per training query: base-model hard negatives below the margin, positives and their copies excluded."""
    train = queries_in_split(synthetic_queries, query_splits, Split.TRAIN)
    mined = mine_for_chunks(
        encode(embedder.load(), train["text"].tolist(), embedder.batch_size, role="query"),
        chunks,
        chunk_embeddings,
        [flatten_ids(p) for p in train["positive_chunk_ids"]],
        config.params(),
        config.search_backend(),
    )
    frame = negatives_table(train["query_id"], mined)
    counts = frame["negative_chunk_ids"].map(len)
    context.log.info(f"hard negatives for {len(frame)} training queries, {int(counts.sum())} in all")
    return table_output(
        frame,
        config,
        {
            "training_queries": len(frame),
            "negatives": int(counts.sum()),
            "queries_with_fewer_than_count": int((counts < config.count).sum()),
            "search": str(config.search_backend()),
        },
        ["query_id", "negative_chunk_ids", "weakest_positive_score"],
    )


class MiningConfig(Config):
    """Student–teacher rounds; ``rounds`` = 0 trains on the margin negatives alone.

    Each student starts from the base model and trains ``student_epochs`` with the training defaults
    (``TrainingParams``); it is validated like ``embedding_model`` (same validation sample).
    """

    rounds: int = Field(default=MiningParams.rounds, description="Most rounds (0 = no mining).")
    top_k: int = Field(default=MiningParams.top_k, description="Student results per training query to judge.")
    positive_threshold: float = Field(default=MiningParams.positive_threshold, description="P(yes) for a positive.")
    negative_threshold: float = Field(default=MiningParams.negative_threshold, description="P(yes) for a negative.")
    min_improvement: float = Field(default=MiningParams.min_improvement, description="Validation gain to go on.")
    max_judgements_per_round: int = Field(
        default=MiningParams.max_judgements_per_round, description="Teacher judgements per round at most."
    )
    student_epochs: int = Field(default=2, description="Epochs of each round's student.")
    pool_depth: int = Field(
        default=50, description="On large corpora the student re-ranks each query's base top pool_depth chunks."
    )
    full_search_max_chunks: int = Field(
        default=5000, description="Corpora up to this many chunks are searched whole by the student."
    )
    reuse_judgements: bool = Field(
        default=True,
        description="Keep the last materialization's teacher judgements (same settings) for training queries "
        "that are still there, and judge only new queries: a refresh after new documents pays for those alone.",
    )

    def student_params(self) -> TrainingParams:
        return TrainingParams(epochs=self.student_epochs)

    def params(self) -> MiningParams:
        return MiningParams(
            **self.model_dump(exclude={"student_epochs", "pool_depth", "full_search_max_chunks", "reuse_judgements"})
        )


def previous_labels(context: AssetExecutionContext, fingerprint: str) -> pd.DataFrame | None:
    """The last materialized labels table when it was made with the same settings and is still readable."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    recorded = metadata.get(CONFIG_FINGERPRINT)
    path = metadata.get("path")
    if recorded is None or recorded.value != fingerprint or path is None:
        return None
    try:
        return read_table(Path(str(path.value)), context.asset_key.to_user_string())
    except (FileNotFoundError, ValueError) as error:
        context.log.warning(f"not reusing earlier judgements: {error}")
        return None


LABEL_COLUMNS = ["query_id", "chunk_id", "role", "source", "round"]


def margin_labels_output(config: MiningConfig, train: pd.DataFrame, hard_negatives: pd.DataFrame, chunks: pd.DataFrame):
    """With mining switched off: the synthetic positives and margin-mined negatives alone, no teacher call."""
    outcome = MiningOutcome(labels=starting_labels(train, hard_negatives))
    frame = labels_frame(outcome.labels, outcome.judgements, chunks)
    return table_output(frame, config, {**mining_summary(frame, outcome, 0, 0, 0), "mining": False}, LABEL_COLUMNS)


@asset(dagster_type=TrainingLabelsFrame, code_version="7", group_name="training")
def mining_rounds(
    context: AssetExecutionContext,
    config: MiningConfig,
    methods: MethodsResource,
    teacher: TeacherResource,
    embedder: EmbedderResource,
    mlflow: MlflowResource,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
    hard_negatives: pd.DataFrame,
):
    """Training labels after student–teacher rounds: extra positives and hard negatives judged by the teacher
    (with ``methods.mining`` off, the synthetic positives and margin negatives alone)."""
    train = queries_in_split(synthetic_queries, query_splits, Split.TRAIN)
    if not methods.mining:
        return margin_labels_output(config, train, hard_negatives, chunks)
    texts, corpus = dict(zip(train["query_id"].astype(str), train["text"], strict=True)), chunk_corpus(chunks)
    base, client, stop = embedder.load(), teacher.client(), BudgetStop()
    pool = candidate_pool(train, chunks, chunk_embeddings, base, config.pool_depth, config.full_search_max_chunks)
    validation = validation_target(synthetic_queries, query_splits, chunks)
    score = validation_scorer(validation, chunk_documents(chunks), embedder.batch_size)
    reused = reused_judgements(context, config, set(texts), set(corpus))  # (judgements, settled queries)
    params = {**config.model_dump(), "train_queries": len(train), "pool": len(pool)}
    base_metric = {"base_val_ndcg_at_10": score(base)}
    with mlflow.start_run("mining_rounds", {"dagster_run_id": context.run_id}, params, base_metric) as run:
        outcome = run_mining(
            starting_labels(train, hard_negatives),
            student_trainer(embedder.load, train, chunks, score, config.student_params(), context.log.info),
            student_retriever(pool, texts, config.top_k, embedder.batch_size),
            teacher_judge(client, texts, corpus, stop),
            config.params(),
            round_logger(context),
            *reused,
            progress=progress_logger(context, "teacher judgements this round"),
            workers=client.concurrency,
        )
    frame = labels_frame(outcome.labels, outcome.judgements, chunks)
    metadata = mined_metadata(frame, outcome, reused, client, budget_metadata(context, stop.message), run.info.run_id)
    return table_output(frame, config, metadata, LABEL_COLUMNS)


def mined_metadata(
    frame: pd.DataFrame, outcome: MiningOutcome, reused: tuple, client: Teacher, stop: dict, run_id: str
) -> dict:
    """The metadata of a mined label table: the summary with the run's failed judgements, the budget stop, the
    MLflow run and the switch."""
    failures = len(client.store.failures(client.run_id, MINING_STAGE))
    summary = mining_summary(frame, outcome, len(reused[0]), len(reused[1]), failures)
    return {**summary, **stop, "mlflow_run_id": run_id, "mining": True}


def round_logger(context: AssetExecutionContext) -> Callable[[RoundRecord], None]:
    """Each finished round: a log line and its metrics as an MLflow step."""
    import mlflow as mlflow_api

    def on_round(record: RoundRecord) -> None:
        context.log.info(f"round {record.round}: {vars(record)}")
        mlflow_api.log_metrics(round_metrics(record), step=record.round)

    return on_round


def reused_judgements(
    context: AssetExecutionContext, config: MiningConfig, query_ids: set[str], chunk_ids: set[str]
) -> tuple[list[Label], frozenset[str]]:
    """The last materialization's teacher judgements still valid, and the training queries they settle."""
    previous = previous_labels(context, config_fingerprint(config)) if config.reuse_judgements else None
    if previous is None:
        return [], frozenset()
    carried, settled = earlier_judgements(previous, query_ids, chunk_ids)
    context.log.info(
        f"reusing {len(carried)} teacher judgements of {len(settled)} unchanged training queries; "
        f"judging only the other {len(query_ids) - len(settled)}"
    )
    return carried, settled
