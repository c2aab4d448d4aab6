"""EmbGen's plan: from entity clusters to chunk selections per strategy, within the stage's token share, then
one question per selection.

The share of the run's token budget is split over the strategies by weight (``plan_mix``), each request
estimated from the mean chunk length and the strategy's typical hops; the selections of the three strategies
are interleaved, so a budget stop keeps the mix. A selection's system prompt names the entities of its
clusters and of its chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import zip_longest

import numpy as np
import pandas as pd

from embpipe.core.embedding import stack_embeddings
from embpipe.core.embgen.entities import chunks_by_cluster, cluster_centroids
from embpipe.core.embgen.questions import (
    PROMPT_OVERHEAD_TOKENS,
    QUALITY_PROMPT_VERSION,
    QUESTION_MAX_TOKENS,
    EmbGenStats,
    generate_selection_questions,
    quality_messages,
)
from embpipe.core.embgen.sampling import (
    ChunkSelection,
    inter_cluster_selections,
    intra_cluster_selections,
    plan_mix,
    proximity_selections,
)
from embpipe.llm.budget import estimate_text_tokens
from embpipe.llm.judge import ask_yes_probability
from embpipe.llm.teacher import Teacher

STAGE = "embgen_queries"


@dataclass(frozen=True)
class SelectionSettings:
    """The strategy weights, the most hops, the quality bar and the seed of EmbGen's questions."""

    weights: dict[str, float] = field(default_factory=dict)
    max_hops: int = 3
    min_quality: float = 0.5
    seed: int = 42


def request_estimate(chunks: pd.DataFrame, hops: float) -> int:
    """Estimated tokens of one question request plus its quality judgement for ``hops`` average chunks."""
    mean_characters = float(chunks["text"].astype(str).str.len().mean()) if len(chunks) else 0.0
    return 2 * (estimate_text_tokens(int(mean_characters * hops)) + PROMPT_OVERHEAD_TOKENS) + QUESTION_MAX_TOKENS


def planned_selections(
    settings: SelectionSettings,
    plan_tokens: int,
    chunks: pd.DataFrame,
    chunk_vectors: np.ndarray,
    clusters: dict[int, list[str]],
    centroids: dict[int, np.ndarray],
) -> tuple[dict[str, int], list[ChunkSelection]]:
    """The planned request count per strategy and the selections, interleaved so a budget stop keeps the mix."""
    hops = {"proximity": 2.0, "intra_cluster": 2.5, "inter_cluster": 2.0}
    plan = plan_mix(plan_tokens, settings.weights, {s: request_estimate(chunks, h) for s, h in hops.items()})
    ids = chunks["chunk_id"].astype(str).tolist()
    lists = [
        proximity_selections(ids, chunk_vectors, plan["proximity"], settings.max_hops, settings.seed),
        intra_cluster_selections(clusters, plan["intra_cluster"], settings.max_hops, settings.seed),
        inter_cluster_selections(clusters, centroids, plan["inter_cluster"], settings.seed),
    ]
    interleaved = [s for group in zip_longest(*lists) for s in group if s is not None]
    return plan, interleaved


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


def embgen_questions(
    teacher: Teacher,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    entities: pd.DataFrame,
    entity_clusters: pd.DataFrame,
    description_vectors: np.ndarray,
    settings: SelectionSettings,
    stats: EmbGenStats,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """EmbGen's questions (``synthetic_queries`` columns), their answers, and the planned requests per strategy."""
    aligned = chunk_embeddings.set_index("chunk_id").loc[chunks["chunk_id"].astype(str)].reset_index()
    labels = entity_clusters.set_index("entity_id").loc[entities["entity_id"], "cluster_id"].to_numpy()
    known = set(chunks["chunk_id"].astype(str))
    clusters = {c: [i for i in ids if i in known] for c, ids in chunks_by_cluster(entities, labels).items()}
    centroids = cluster_centroids(description_vectors, labels) if len(description_vectors) else {}
    plan_tokens = teacher.budget.planning_tokens(STAGE)
    plan, selections = planned_selections(settings, plan_tokens, chunks, stack_embeddings(aligned), clusters, centroids)
    named, members = entity_lookup(entities), entity_description_pairs(entities, labels)
    passages = {str(c): (str(t), str(d)) for c, t, d in chunks[["chunk_id", "text", "doc_id"]].itertuples(index=False)}

    def judge(stage: str, question: str, evidence: str) -> float | None:
        messages = quality_messages(question, evidence)
        return ask_yes_probability(teacher, stage, question[:60], messages, QUALITY_PROMPT_VERSION)

    def entities_of(selection: ChunkSelection) -> list[tuple[str, str]]:
        return prompt_entities(selection, members, named)

    frame, answers = generate_selection_questions(
        teacher, selections, passages, entities_of, judge, settings.min_quality, stats, progress=progress
    )
    return frame, answers, plan


def tokens_by_strategy(teacher: Teacher) -> dict[str, int]:
    """Teacher tokens (paid and cached) of this run's EmbGen questions and quality scores, per strategy."""
    usage = [u for u in teacher.store.usage(teacher.run_id) if u.stage.startswith("embgen_")]
    return {u.stage.removeprefix("embgen_"): u.prompt_tokens + u.completion_tokens + u.cached_tokens for u in usage}


def embgen_summary(frame: pd.DataFrame, plan: dict, stats: EmbGenStats, tokens: dict, document_tokens: int) -> dict:
    """What the questions stage records: the plan, what was asked, kept and spent, per strategy and hops."""
    return {
        "queries": len(frame),
        "planned_requests": plan,
        "asked": stats.asked,
        "queries_by_strategy": {str(k): int(v) for k, v in frame["strategy"].value_counts().items()},
        "queries_by_hops": {str(k): int(v) for k, v in frame["hops"].value_counts().items()},
        "tokens_by_strategy": tokens,
        "tokens_per_document_token": sum(tokens.values()) / max(document_tokens, 1),
        "failed": stats.failed,
        "below_quality": stats.below_quality,
    }
