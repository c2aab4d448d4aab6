"""Training data mining: margin-rule hard negatives, then iterative student–teacher rounds."""

from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, asset
from pydantic import Field

from embpipe.core.datasets import chunk_corpus, labelled_examples, queries_in_split
from embpipe.core.embedding import encode, stack_embeddings
from embpipe.core.mining import (
    Label,
    MiningParams,
    RoundRecord,
    StopMining,
    earlier_judgements,
    labels_frame,
    run_mining,
    starting_labels,
)
from embpipe.core.negatives import NegativeParams, mine_hard_negatives
from embpipe.core.questions import flatten_ids
from embpipe.core.report import dense_run
from embpipe.core.retrieval import SearchBackend, faiss_available, top_k
from embpipe.core.training import NEGATIVES_PER_EXAMPLE, TrainingParams, train_contrastive
from embpipe.core.validation import validation_scorer, validation_target
from embpipe.defs.metadata import CONFIG_FINGERPRINT, budget_stop, config_fingerprint, progress_logger, table_output
from embpipe.defs.types import HardNegativesFrame, TrainingLabelsFrame
from embpipe.llm.budget import BudgetStop, TokenBudgetExhausted
from embpipe.llm.judge import judge_relevance
from embpipe.resources.embedder import EmbedderResource
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


@asset(dagster_type=HardNegativesFrame, code_version="2", group_name="training")
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
    train = queries_in_split(synthetic_queries, query_splits, "train")
    aligned = chunk_embeddings.set_index("chunk_id").loc[chunks["chunk_id"].astype(str)].reset_index()
    mined = mine_hard_negatives(
        encode(embedder.load(), train["text"].tolist(), embedder.batch_size),
        stack_embeddings(aligned),
        chunks["chunk_id"].astype(str).tolist(),
        chunks["text"].tolist(),
        [flatten_ids(p) for p in train["positive_chunk_ids"]],
        config.params(),
        config.search_backend(),
        chunks["doc_id"].astype(str).tolist(),
    )
    frame = pd.DataFrame(
        {
            "query_id": train["query_id"].astype(str),
            "negative_chunk_ids": [m.chunk_ids for m in mined],
            "negative_scores": [m.scores for m in mined],
            "weakest_positive_score": [m.weakest_positive for m in mined],
            "threshold": [m.threshold for m in mined],
        }
    )
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

    def params(self) -> MiningParams:
        return MiningParams(
            **self.model_dump(exclude={"student_epochs", "pool_depth", "full_search_max_chunks", "reuse_judgements"})
        )


def previous_labels(context: AssetExecutionContext, fingerprint: str) -> pd.DataFrame | None:
    """The last materialized labels table when it was made with the same settings (else ``None``)."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    recorded = metadata.get(CONFIG_FINGERPRINT)
    path = metadata.get("path")
    if recorded is None or recorded.value != fingerprint or path is None or not Path(str(path.value)).is_file():
        return None
    return pd.read_parquet(str(path.value))


def candidate_pool(
    train: pd.DataFrame, chunks: pd.DataFrame, chunk_embeddings: pd.DataFrame, query_vectors, config: MiningConfig
) -> dict[str, str]:
    """The passages the student searches: the whole corpus when small, else every query's base top pool."""
    corpus = chunk_corpus(chunks)
    if len(corpus) <= config.full_search_max_chunks:
        return corpus
    ids = chunk_embeddings["chunk_id"].astype(str).tolist()
    result = top_k(query_vectors, stack_embeddings(chunk_embeddings), config.pool_depth)
    pool = {ids[i] for row in result.indices for i in row}
    pool |= {c for p in train["positive_chunk_ids"] for c in flatten_ids(p)}
    return {c: corpus[c] for c in sorted(pool) if c in corpus}


@asset(dagster_type=TrainingLabelsFrame, code_version="3", group_name="training")
def mining_rounds(
    context: AssetExecutionContext,
    config: MiningConfig,
    teacher: TeacherResource,
    embedder: EmbedderResource,
    mlflow: MlflowResource,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
    hard_negatives: pd.DataFrame,
):
    """Training labels after student–teacher rounds: extra positives and hard negatives judged by the teacher."""
    import mlflow as mlflow_api

    train = queries_in_split(synthetic_queries, query_splits, "train")
    texts = dict(zip(train["query_id"].astype(str), train["text"], strict=True))
    corpus = chunk_corpus(chunks)
    base = embedder.load()
    pool = candidate_pool(train, chunks, chunk_embeddings, encode(base, list(texts.values())), config)
    score = validation_scorer(validation_target(synthetic_queries, query_splits, chunks), embedder.batch_size)
    student_params = TrainingParams(epochs=config.student_epochs)
    client, stop = teacher.client(), BudgetStop()

    def train_student(labels: list[Label]):
        student = embedder.load()
        examples = labelled_examples(labels_frame(labels, [], chunks), train, chunks, NEGATIVES_PER_EXAMPLE)
        outcome = train_contrastive(student, examples, score, student_params)
        context.log.info(f"student on {len(examples)} examples: validation {outcome.best_score:.4f}")
        return student, outcome.best_score

    def retrieve(student) -> dict[str, list[str]]:
        run = dense_run(lambda t: encode(student, t, embedder.batch_size), pool, texts, k=config.top_k)
        return {q: sorted(found, key=found.get, reverse=True) for q, found in run.items()}

    def judge(query_id: str, chunk_id: str) -> float | None:
        try:
            return judge_relevance(client, "mining_rounds", f"{query_id}:{chunk_id}", texts[query_id], corpus[chunk_id])
        except TokenBudgetExhausted as error:
            stop.message = str(error)
            raise StopMining(str(error)) from error

    def on_round(record: RoundRecord) -> None:
        context.log.info(f"round {record.round}: {vars(record)}")
        mlflow_api.log_metrics(
            {
                "val_ndcg_at_10": record.validation_score,
                "judged": record.judged,
                "new_positives": record.new_positives,
                "new_negatives": record.new_negatives,
            },
            step=record.round,
        )

    labels = starting_labels(train, hard_negatives)
    carried, settled = [], frozenset()
    previous = previous_labels(context, config_fingerprint(config)) if config.reuse_judgements else None
    if previous is not None:
        carried, settled = earlier_judgements(previous, set(texts), set(corpus))
        context.log.info(
            f"reusing {len(carried)} teacher judgements of {len(settled)} unchanged training queries; "
            f"judging only the other {len(texts) - len(settled)}"
        )
    with mlflow.start_run("mining_rounds", tags={"dagster_run_id": context.run_id}) as run:
        mlflow_api.log_params({**config.model_dump(), "train_queries": len(train), "pool": len(pool)})
        outcome = run_mining(
            labels,
            train_student,
            retrieve,
            judge,
            config.params(),
            on_round,
            carried,
            settled,
            progress=progress_logger(context, "teacher judgements this round"),
        )
        mlflow_api.log_metric("base_val_ndcg_at_10", score(base))
    frame = labels_frame(outcome.labels, outcome.judgements, chunks)
    rounds = pd.DataFrame([vars(r) for r in outcome.rounds])
    return table_output(
        frame,
        config,
        {
            "labels": len(frame),
            "positives": int(((frame.role == "positive") & frame.used).sum()),
            "negatives": int(((frame.role == "negative") & frame.used).sum()),
            "teacher_judgements": len(outcome.judgements),
            "judgements_reused": len(carried),
            "queries_settled_earlier": len(settled),
            "rounds_run": len(outcome.rounds),
            "best_round": outcome.best_round,
            "rounds": MetadataValue.md(rounds.to_markdown(index=False) if len(rounds) else "no rounds"),
            "failures": len(client.store.failures(client.run_id, "mining_rounds")),
            "budget_stop": budget_stop(context, stop.message),
            "mlflow_run_id": run.info.run_id,
        },
        ["query_id", "chunk_id", "role", "source", "round"],
    )
