"""EmbGen: entity–description pairs, entity clusters, and strategy-sampled questions with answers.

With ``MethodsResource.embgen`` off every stage here stores an empty table without calling the teacher.
"""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from embpipe.core.embedding import encode
from embpipe.core.embgen.entities import (
    deduplicate_per_document,
    description_texts,
    extract_entities,
    reassemble,
)
from embpipe.core.embgen.plan import SelectionSettings, embgen_questions, embgen_summary, tokens_by_strategy
from embpipe.core.embgen.questions import (
    EmbGenStats,
)
from embpipe.core.synthesis.questions import near_duplicate_mask, select_chunks
from embpipe.core.tables import EMBGEN_QUERIES, ENTITY_DESCRIPTIONS, SYNTHETIC_QUERIES
from embpipe.defs.metadata import budget_metadata, progress_logger, table_output
from embpipe.defs.types import EmbGenQueriesFrame, EntityClustersFrame, EntityDescriptionsFrame
from embpipe.llm.budget import BudgetStop
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.methods import MethodsResource
from embpipe.resources.teacher import TeacherResource


class EntityConfig(Config):
    """Which chunks the teacher decomposes into entities."""

    max_chunks: int = Field(default=48, description="Chunks to extract entities from (spread over documents).")
    max_entities: int = Field(default=6, description="Most entities per chunk.")
    min_chunk_tokens: int = Field(default=20, description="Chunks shorter than this are skipped.")
    seed: int = Field(default=42, description="Seed of the chunk sample.")


@asset(dagster_type=EntityDescriptionsFrame, code_version="1", group_name="embgen")
def entity_descriptions(
    context: AssetExecutionContext,
    config: EntityConfig,
    methods: MethodsResource,
    teacher: TeacherResource,
    chunks: pd.DataFrame,
):
    """EmbGen decomposition: the teacher's (entity, description) pairs per chunk, deduplicated per document."""
    pairs, failed, stop = pd.DataFrame(columns=["doc_id", "chunk_id", "entity", "description"]), 0, BudgetStop()
    if methods.embgen:
        sample = select_chunks(chunks, config.max_chunks, config.min_chunk_tokens, config.seed)
        report = progress_logger(context, "entities")
        pairs, failed = extract_entities(teacher.client(), sample, config.max_entities, stop, report)
    frame = deduplicate_per_document(pairs)
    return table_output(
        frame[ENTITY_DESCRIPTIONS.names],
        config,
        {
            "embgen": methods.embgen,
            "entities": len(frame),
            "pairs_before_deduplication": len(pairs),
            "chunks_failed": failed,
            **budget_metadata(context, stop.message),
        },
        ["entity_id", "entity", "description"],
    )


class EntityClusterConfig(Config):
    """Reassembly: KNN clustering of the description embeddings."""

    neighbours: int = Field(default=10, description="K: a cluster is a seed entity plus at most K neighbours.")
    min_similarity: float = Field(default=0.7, description="δ: neighbours must have cosine above this.")
    seed: int = Field(default=42, description="Seed of the seed order.")


@asset(dagster_type=EntityClustersFrame, code_version="1", group_name="embgen")
def entity_clusters(
    config: EntityClusterConfig, embedder: EmbedderResource, entity_descriptions: pd.DataFrame
) -> Output[pd.DataFrame]:
    """EmbGen reassembly: every entity's cluster, from the similarity of its "entity: description" embedding."""
    labels = np.zeros(0, dtype=np.int64)
    if len(entity_descriptions):
        vectors = encode(embedder.load(), description_texts(entity_descriptions))
        labels = reassemble(vectors, config.neighbours, config.min_similarity, config.seed)
    frame = pd.DataFrame({"entity_id": entity_descriptions["entity_id"].astype(str), "cluster_id": labels})
    sizes = frame["cluster_id"].value_counts()
    return table_output(
        frame,
        config,
        {
            "entities": len(frame),
            "clusters": int(len(sizes)),
            "clusters_of_two_or_more": int((sizes >= 2).sum()),
        },
    )


class EmbGenQuestionConfig(Config):
    """The strategy mix and the quality bar of EmbGen's questions (their tokens: the stage's budget share)."""

    proximity_weight: float = Field(default=0.4, description="Share of the stage's tokens for proximity questions.")
    intra_cluster_weight: float = Field(default=0.3, description="Share for intra-cluster questions.")
    inter_cluster_weight: float = Field(default=0.3, description="Share for inter-cluster (bridging) questions.")
    max_hops: int = Field(default=3, ge=1, le=3, description="Most chunks a question needs.")
    min_quality: float = Field(default=0.5, description="Questions whose quality P(yes) is below this are dropped.")
    dedup_threshold: float = Field(default=0.9, description="Drop a question whose cosine to a kept one exceeds this.")
    seed: int = Field(default=42, description="Seed of every draw.")

    def settings(self) -> SelectionSettings:
        return SelectionSettings(self.weights(), self.max_hops, self.min_quality, self.seed)

    def weights(self) -> dict[str, float]:
        return {
            "proximity": self.proximity_weight,
            "intra_cluster": self.intra_cluster_weight,
            "inter_cluster": self.inter_cluster_weight,
        }


@asset(dagster_type=EmbGenQueriesFrame, code_version="2", group_name="embgen")
def embgen_queries(
    context: AssetExecutionContext,
    config: EmbGenQuestionConfig,
    methods: MethodsResource,
    teacher: TeacherResource,
    embedder: EmbedderResource,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    entity_descriptions: pd.DataFrame,
    entity_clusters: pd.DataFrame,
):
    """EmbGen questions with answers: proximity, intra-cluster and inter-cluster chunk selections, 1–3 hops."""
    frame, answers, plan, stats = SYNTHETIC_QUERIES.empty(), [], {}, EmbGenStats()
    client = teacher.client() if methods.embgen else None
    if client is not None and len(chunks):
        vectors = encode(embedder.load(), description_texts(entity_descriptions))
        frame, answers, plan = embgen_questions(
            client,
            chunks,
            chunk_embeddings,
            entity_descriptions,
            entity_clusters,
            vectors,
            config.settings(),
            stats,
            progress_logger(context, "EmbGen questions"),
        )
        context.log.info(f"EmbGen plan: {plan}")
    frame = EMBGEN_QUERIES.frame(frame.assign(answer=answers))
    if len(frame):
        frame = frame[near_duplicate_mask(encode(embedder.load(), frame["text"].tolist()), config.dedup_threshold)]
    frame = frame.reset_index(drop=True)
    tokens = tokens_by_strategy(client) if client else {}
    summary = embgen_summary(frame, plan, stats, tokens, int(chunks["n_tokens"].sum()) if len(chunks) else 0)
    metadata = {
        "embgen": methods.embgen,
        **{k: MetadataValue.json(v) if isinstance(v, dict) else v for k, v in summary.items()},
        **budget_metadata(context, stats.budget_message),
    }
    return table_output(frame, config, metadata, ["query_id", "text", "strategy", "hops"])
