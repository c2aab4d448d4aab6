"""EmbGen: entity–description pairs, entity clusters, and strategy-sampled questions with answers.

With ``MethodsResource.embgen`` off every stage here stores an empty table without calling the teacher.
"""

from itertools import zip_longest

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from embpipe.core.embedding import encode, stack_embeddings
from embpipe.core.embgen_questions import (
    PROMPT_OVERHEAD_TOKENS,
    QUALITY_PROMPT_VERSION,
    QUESTION_MAX_TOKENS,
    EmbGenStats,
    generate_selection_questions,
    quality_messages,
)
from embpipe.core.entities import (
    ENTITY_COLUMNS,
    chunks_by_cluster,
    cluster_centroids,
    deduplicate_per_document,
    description_texts,
    extract_entities,
    reassemble,
)
from embpipe.core.questions import QUERY_COLUMNS, near_duplicate_mask, select_chunks
from embpipe.core.sampling import (
    ChunkSelection,
    inter_cluster_selections,
    intra_cluster_selections,
    plan_mix,
    proximity_selections,
)
from embpipe.defs.metadata import budget_stop, progress_logger, table_output
from embpipe.defs.types import EmbGenQueriesFrame, EntityClustersFrame, EntityDescriptionsFrame
from embpipe.llm.budget import BudgetStop, estimate_text_tokens
from embpipe.llm.judge import ask_yes_probability
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.methods import MethodsResource
from embpipe.resources.teacher import TeacherResource

EMBGEN_COLUMNS = [*QUERY_COLUMNS, "answer"]


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
        frame[ENTITY_COLUMNS],
        config,
        {
            "embgen": methods.embgen,
            "entities": len(frame),
            "pairs_before_deduplication": len(pairs),
            "chunks_failed": failed,
            "budget_stop": budget_stop(context, stop.message),
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

    def weights(self) -> dict[str, float]:
        return {
            "proximity": self.proximity_weight,
            "intra_cluster": self.intra_cluster_weight,
            "inter_cluster": self.inter_cluster_weight,
        }


def request_estimate(chunks: pd.DataFrame, hops: float) -> int:
    """Estimated tokens of one question request plus its quality judgement for ``hops`` average chunks."""
    mean_characters = float(chunks["text"].astype(str).str.len().mean()) if len(chunks) else 0.0
    return 2 * (estimate_text_tokens(int(mean_characters * hops)) + PROMPT_OVERHEAD_TOKENS) + QUESTION_MAX_TOKENS


def planned_selections(
    config: EmbGenQuestionConfig,
    plan_tokens: int,
    chunks: pd.DataFrame,
    chunk_vectors: np.ndarray,
    clusters: dict[int, list[str]],
    centroids: dict[int, np.ndarray],
) -> tuple[dict[str, int], list[ChunkSelection]]:
    """The planned request count per strategy and the selections, interleaved so a budget stop keeps the mix."""
    hops = {"proximity": 2.0, "intra_cluster": 2.5, "inter_cluster": 2.0}
    plan = plan_mix(plan_tokens, config.weights(), {s: request_estimate(chunks, h) for s, h in hops.items()})
    ids = chunks["chunk_id"].astype(str).tolist()
    lists = [
        proximity_selections(ids, chunk_vectors, plan["proximity"], config.max_hops, config.seed),
        intra_cluster_selections(clusters, plan["intra_cluster"], config.max_hops, config.seed),
        inter_cluster_selections(clusters, centroids, plan["inter_cluster"], config.seed),
    ]
    interleaved = [s for group in zip_longest(*lists) for s in group if s is not None]
    return plan, interleaved


def tokens_by_strategy(client) -> dict[str, int]:
    """Teacher tokens (paid and cached) of this run's EmbGen questions and quality scores, per strategy."""
    usage = [u for u in client.store.usage(client.run_id) if u.stage.startswith("embgen_")]
    return {u.stage.removeprefix("embgen_"): u.prompt_tokens + u.completion_tokens + u.cached_tokens for u in usage}


def entity_description_pairs(entities: pd.DataFrame, labels: np.ndarray) -> dict[int, list[tuple[str, str]]]:
    """Entity cluster → its (entity, description) pairs."""
    pairs: dict[int, list[tuple[str, str]]] = {}
    for label, entity, description in zip(labels.tolist(), entities["entity"], entities["description"], strict=True):
        pairs.setdefault(int(label), []).append((str(entity), str(description)))
    return pairs


def prompt_entities(
    selection: ChunkSelection, members: dict[int, list[tuple[str, str]]], named: dict[str, list[tuple[str, str]]]
) -> list[tuple[str, str]]:
    """What a selection's system prompt says its passages are about: its clusters' entities, then its chunks'."""
    pairs = [p for c in selection.cluster_ids for p in members.get(c, [])]
    pairs += [p for chunk_id in selection.chunk_ids for p in named.get(chunk_id, [])]
    return list(dict.fromkeys(pairs))


def entity_lookup(entities: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """chunk id → the (entity, description) pairs that name it."""
    named: dict[str, list[tuple[str, str]]] = {}
    for entity, description, chunk_ids in entities[["entity", "description", "chunk_ids"]].itertuples(index=False):
        for chunk_id in chunk_ids:
            named.setdefault(str(chunk_id), []).append((str(entity), str(description)))
    return named


@asset(dagster_type=EmbGenQueriesFrame, code_version="1", group_name="embgen")
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
    frame, answers, plan, stats = pd.DataFrame(columns=QUERY_COLUMNS), [], {}, EmbGenStats()
    client = teacher.client() if methods.embgen else None
    if client is not None and len(chunks):
        aligned = chunk_embeddings.set_index("chunk_id").loc[chunks["chunk_id"].astype(str)].reset_index()
        labels = entity_clusters.set_index("entity_id").loc[entity_descriptions["entity_id"], "cluster_id"].to_numpy()
        known = set(chunks["chunk_id"].astype(str))
        clusters = {
            c: [i for i in ids if i in known] for c, ids in chunks_by_cluster(entity_descriptions, labels).items()
        }
        vectors = encode(embedder.load(), description_texts(entity_descriptions))
        centroids = cluster_centroids(vectors, labels) if len(vectors) else {}
        plan_tokens = client.budget.planning_tokens("embgen_queries")
        plan, selections = planned_selections(
            config, plan_tokens, chunks, stack_embeddings(aligned), clusters, centroids
        )
        context.log.info(f"EmbGen plan for {plan_tokens} tokens: {plan}")
        named = entity_lookup(entity_descriptions)
        members = entity_description_pairs(entity_descriptions, labels)
        passages = {
            str(c): (str(t), str(d)) for c, t, d in chunks[["chunk_id", "text", "doc_id"]].itertuples(index=False)
        }

        def judge(stage: str, question: str, evidence: str) -> float | None:
            messages = quality_messages(question, evidence)
            return ask_yes_probability(client, stage, question[:60], messages, QUALITY_PROMPT_VERSION)

        frame, answers = generate_selection_questions(
            client,
            selections,
            passages,
            lambda selection: prompt_entities(selection, members, named),
            judge,
            config.min_quality,
            stats,
            progress=progress_logger(context, "EmbGen questions"),
        )
    frame = frame.assign(answer=answers) if len(frame) else pd.DataFrame(columns=EMBGEN_COLUMNS)
    if len(frame):
        frame = frame[near_duplicate_mask(encode(embedder.load(), frame["text"].tolist()), config.dedup_threshold)]
    frame = frame.reset_index(drop=True).astype({"hops": "int64", "validator_score": "float64"})
    tokens = tokens_by_strategy(client) if client else {}
    document_tokens = int(chunks["n_tokens"].sum()) if len(chunks) else 0
    return table_output(
        frame[EMBGEN_COLUMNS],
        config,
        {
            "embgen": methods.embgen,
            "queries": len(frame),
            "planned_requests": MetadataValue.json(plan),
            "asked": MetadataValue.json(stats.asked),
            "queries_by_strategy": MetadataValue.json(
                {str(k): int(v) for k, v in frame["strategy"].value_counts().items()}
            ),
            "queries_by_hops": MetadataValue.json({str(k): int(v) for k, v in frame["hops"].value_counts().items()}),
            "tokens_by_strategy": MetadataValue.json(tokens),
            "tokens_per_document_token": sum(tokens.values()) / max(document_tokens, 1),
            "failed": stats.failed,
            "below_quality": stats.below_quality,
            "budget_stop": budget_stop(context, stats.budget_message),
        },
        ["query_id", "text", "strategy", "hops"],
    )
