"""LMAR: LLM-labelled triplets, triplet tuning, sampling-based KNN clustering, validated cluster questions.

With ``MethodsResource.lmar`` off every stage here stores an empty table (and ``triplet_tuned_model`` the base
model) without calling the teacher, so ``synthetic_queries`` holds single-chunk questions only.
"""

from typing import Literal

import pandas as pd
from dagster import AssetExecutionContext, Config, DataVersion, MetadataValue, Output, asset
from pydantic import Field

from embpipe.core.embedding import encode_with_progress, model_version, stack_embeddings
from embpipe.core.lmar.cluster_questions import (
    ClusterQuestionStats,
    cluster_members,
    cluster_question_summary,
    empty_profiles,
    empty_queries,
    generate_cluster_questions,
    profile_clusters,
    relevance_validator,
)
from embpipe.core.lmar.clustering import knn_clusters, size_histogram
from embpipe.core.lmar.triplet_labels import empty_triplets, label_triplets, text_triplets
from embpipe.core.lmar.triplets import TripletParams, candidate_triplets, train_triplets
from embpipe.core.training.examples import chunk_passages
from embpipe.defs.metadata import budget_metadata, progress_logger, table_output
from embpipe.defs.types import ChunkClustersFrame, ClusterProfilesFrame, LabeledTripletsFrame, SyntheticQueriesFrame
from embpipe.llm.budget import BudgetStop
from embpipe.orchestration.fingerprints import CONFIG_FINGERPRINT, config_fingerprint
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.methods import MethodsResource
from embpipe.resources.teacher import TeacherResource
from embpipe.resources.tracking import MlflowResource


class TripletConfig(Config):
    """Anchors to label and where their two candidates come from."""

    anchors: int = Field(default=48, description="Anchor chunks sampled (one triplet question each).")
    neighbours: int = Field(default=10, description="K: both candidates are drawn from the anchor's top-K.")
    comparison: Literal["pointwise", "pairwise"] = Field(
        default="pointwise",
        description="pointwise: same-topic P(yes) per candidate; pairwise: A/B in both orders (strong teachers).",
    )
    ambiguity_margin: float = Field(
        default=0.05, description="|P(first closer) - 0.5| below this is 'ambiguous' and the triplet is dropped."
    )
    seed: int = Field(default=42, description="Seed of the anchor and candidate draws.")


@asset(dagster_type=LabeledTripletsFrame, code_version="2", group_name="lmar")
def labeled_triplets(
    context: AssetExecutionContext,
    config: TripletConfig,
    methods: MethodsResource,
    teacher: TeacherResource,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
):
    """LMAR triplets: for sampled anchors, which of two top-K neighbours the teacher finds closer."""
    frame, verdicts, stop = empty_triplets(), {}, BudgetStop()
    if methods.lmar:
        aligned = chunk_embeddings.set_index("chunk_id").loc[chunks["chunk_id"].astype(str)].reset_index()
        triples = candidate_triplets(stack_embeddings(aligned), config.anchors, config.neighbours, config.seed)
        ids, texts = chunks["chunk_id"].astype(str).tolist(), chunks["text"].astype(str).tolist()
        frame, verdicts = label_triplets(
            teacher.client(),
            triples,
            ids,
            texts,
            config.ambiguity_margin,
            config.comparison,
            stop,
            progress_logger(context, "triplets"),
        )
    return table_output(
        frame,
        config,
        {
            "lmar": methods.lmar,
            "triplets": len(frame),
            **{f"verdicts_{k}": v for k, v in verdicts.items()},
            **budget_metadata(context, stop.message),
        },
    )


class TripletTuningConfig(Config):
    """LMAR stage 1: triplet margin loss on cosine distance."""

    epochs: int = Field(default=TripletParams.epochs, description="Passes over the labelled triplets.")
    batch_size: int = Field(default=TripletParams.batch_size, description="Triplets per step.")
    learning_rate: float = Field(default=TripletParams.learning_rate, description="AdamW learning rate.")
    margin: float = Field(default=TripletParams.margin, description="Triplet margin (cosine distance).")
    seed: int = Field(default=TripletParams.seed, description="Seed of the triplet order.")

    def params(self) -> TripletParams:
        return TripletParams(**self.model_dump())


@asset(io_manager_key="model_io_manager", code_version="3", group_name="lmar")
def triplet_tuned_model(
    context: AssetExecutionContext,
    config: TripletTuningConfig,
    methods: MethodsResource,
    embedder: EmbedderResource,
    mlflow: MlflowResource,
    chunks: pd.DataFrame,
    labeled_triplets: pd.DataFrame,
):
    """The base model tuned on the labelled triplets (the base model itself when LMAR is off or none)."""
    import mlflow as mlflow_api

    model, losses, run_id = embedder.load(), [], ""
    if methods.lmar and len(labeled_triplets):
        triplets = text_triplets(labeled_triplets, chunks)
        with mlflow.start_run("triplet_tuned_model", tags={"dagster_run_id": context.run_id}) as run:
            mlflow_api.log_params({**config.model_dump(), "triplets": len(triplets), "base_model": embedder.model_id()})
            losses = train_triplets(model, triplets, config.params())
            for epoch, loss in enumerate(losses, start=1):
                mlflow_api.log_metric("triplet_loss", loss, step=epoch)
            run_id = run.info.run_id
        context.log.info(f"triplet tuning on {len(triplets)} triplets: losses {losses}")
    metadata = {
        "lmar": methods.lmar,
        "triplets": len(labeled_triplets),
        "epoch_losses": str([round(v, 4) for v in losses]),
        "mlflow_run_id": run_id,
        CONFIG_FINGERPRINT: config_fingerprint(config),
    }
    return Output(model, data_version=DataVersion(model_version(model)), metadata=metadata)


class ClusterConfig(Config):
    """LMAR Algorithm 1."""

    neighbours: int = Field(default=10, description="K: a cluster is a seed plus at most K neighbours.")
    min_similarity: float = Field(default=0.6, description="δ: neighbours must have cosine above this.")
    seed: int = Field(default=42, description="Seed of the seed order.")


@asset(dagster_type=ChunkClustersFrame, code_version="2", group_name="lmar")
def chunk_clusters(
    context: AssetExecutionContext,
    config: ClusterConfig,
    methods: MethodsResource,
    embedder: EmbedderResource,
    chunks: pd.DataFrame,
    triplet_tuned_model,
):
    """Every chunk's cluster: sampling-based KNN clustering on the triplet-tuned embeddings."""
    frame = pd.DataFrame({"chunk_id": pd.Series(dtype=str), "cluster_id": pd.Series(dtype="int64")})
    histogram: dict[int, int] = {}
    if methods.lmar and len(chunks):
        vectors = encode_with_progress(
            triplet_tuned_model, chunk_passages(chunks), embedder.batch_size, context.log.info, role="document"
        )
        labels = knn_clusters(vectors, config.neighbours, config.min_similarity, config.seed)
        frame = pd.DataFrame({"chunk_id": chunks["chunk_id"].astype(str), "cluster_id": labels})
        histogram = size_histogram(labels)
    sizes = pd.DataFrame({"size": list(histogram), "clusters": list(histogram.values())})
    return table_output(
        frame,
        config,
        {
            "lmar": methods.lmar,
            "chunks": len(frame),
            "clusters": int(frame["cluster_id"].nunique()),
            "clusters_of_two_or_more": int(sum(v for k, v in histogram.items() if k >= 2)),
            "size_histogram": MetadataValue.md(sizes.to_markdown(index=False) if len(sizes) else "no clusters"),
        },
    )


class ProfileConfig(Config):
    """Which clusters get a topic summary."""

    max_clusters: int = Field(default=24, description="Clusters (two or more chunks, largest first) to profile.")


@asset(dagster_type=ClusterProfilesFrame, code_version="1", group_name="lmar")
def cluster_profiles(
    context: AssetExecutionContext,
    config: ProfileConfig,
    methods: MethodsResource,
    teacher: TeacherResource,
    chunks: pd.DataFrame,
    chunk_clusters: pd.DataFrame,
):
    """The teacher's topic summary of each cluster of two or more chunks (largest clusters first)."""
    frame, stop = empty_profiles(), BudgetStop()
    if methods.lmar:  # with no clusters it asks nothing and leaves its share to the question stage
        members = cluster_members(chunks, chunk_clusters)
        sizes = chunk_clusters["cluster_id"].value_counts().to_dict()
        frame = profile_clusters(
            teacher.client(), members, sizes, config.max_clusters, stop, progress_logger(context, "cluster profiles")
        )
    return table_output(
        frame,
        config,
        {
            "lmar": methods.lmar,
            "profiles": len(frame),
            **budget_metadata(context, stop.message),
        },
    )


class ClusterQuestionConfig(Config):
    """Questions per profiled cluster and the validator threshold."""

    questions_per_cluster: int = Field(default=2, description="Questions asked per cluster.")
    min_validator_score: float = Field(
        default=0.5, description="Questions whose cited evidence scores below this P(yes) are dropped."
    )


@asset(dagster_type=SyntheticQueriesFrame, code_version="2", group_name="lmar")
def cluster_queries(
    context: AssetExecutionContext,
    config: ClusterQuestionConfig,
    methods: MethodsResource,
    teacher: TeacherResource,
    chunks: pd.DataFrame,
    chunk_clusters: pd.DataFrame,
    cluster_profiles: pd.DataFrame,
):
    """Questions only a cluster answers, its cited chunks as positives, scored by the validator."""
    stats, frame = ClusterQuestionStats(), empty_queries()
    if methods.lmar:  # with no profiles it asks nothing and leaves its share to the question stage
        client = teacher.client()
        frame = generate_cluster_questions(
            client,
            cluster_members(chunks, chunk_clusters),
            dict(zip(cluster_profiles["cluster_id"].astype(int), cluster_profiles["summary"], strict=True)),
            config.questions_per_cluster,
            relevance_validator(client),
            config.min_validator_score,
            stats,
            progress_logger(context, "cluster questions"),
        )
    summary = cluster_question_summary(frame, stats)
    metadata = {
        "lmar": methods.lmar,
        **summary,
        "hops": MetadataValue.json(summary["hops"]),
        **budget_metadata(context, stats.budget_message),
    }
    return table_output(frame, config, metadata, ["query_id", "text", "hops", "validator_score"])
