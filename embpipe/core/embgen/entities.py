"""EmbGen decomposition and reassembly: (entity, description) pairs per chunk, clustered by meaning.

The teacher reads one chunk and lists the entities it is about (a product, component, error code, setting,
procedure) with a one-sentence description of what the chunk says about each. Pairs are validated, and
deduplicated per document by a normalised entity name: one row per (document, entity) keeps the first
description and every chunk of that document that named the entity. Reassembly embeds the descriptions
(``"entity: description"``), clusters them with the same sampling-based KNN clustering as LMAR, and links
each entity cluster back to the chunks it came from, so the question sampler can pick chunks that share an
entity (intra-cluster) or bridge two related entities (inter-cluster).

Example:
    >>> parse_entities({"entities": [{"entity": " Fan 3 ", "description": "Chassis fan, alert H-052."}]}, 4)
    [('Fan 3', 'Chassis fan, alert H-052.')]
    >>> entity_key("The  SMTP-relay!")
    'smtp relay'
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from embpipe.core.lmar.clustering import knn_clusters
from embpipe.core.tables import ENTITY_DESCRIPTIONS
from embpipe.llm.budget import BudgetStop, within_budget
from embpipe.llm.teacher import Teacher, TeacherOutputError

ENTITY_PROMPT_VERSION = "entities-v1"
PASSAGE_CHARACTERS = 1500
ENTITY_SYSTEM = (
    "You index technical documents. List the specific entities the passage is about (products, components, "
    "error codes, settings, commands, procedures), each with one sentence saying what the passage tells about "
    'it. Skip generic words. Reply with JSON only: {"entities": [{"entity": "...", "description": "..."}]}.'
)
LEADING_ARTICLE = re.compile(r"^(the|a|an)\s+")


def entity_messages(passage: str) -> list[dict]:
    """Chat messages asking for the entities of one passage."""
    text = " ".join(passage.split())[:PASSAGE_CHARACTERS]
    return [{"role": "system", "content": ENTITY_SYSTEM}, {"role": "user", "content": f"PASSAGE: {text}"}]


def entity_schema(max_entities: int) -> dict:
    """JSON schema: 1..``max_entities`` entities, each a short name and a description."""
    item = {
        "type": "object",
        "properties": {
            "entity": {"type": "string", "minLength": 2, "maxLength": 80},
            "description": {"type": "string", "minLength": 10, "maxLength": 300},
        },
        "required": ["entity", "description"],
    }
    return {
        "type": "object",
        "properties": {"entities": {"type": "array", "items": item, "minItems": 1, "maxItems": max_entities}},
        "required": ["entities"],
    }


def parse_entities(reply: dict, max_entities: int) -> list[tuple[str, str]]:
    """Whitespace-normalised (entity, description) pairs; ``TeacherOutputError`` when none is usable."""
    pairs = []
    for item in reply.get("entities") or []:
        if not isinstance(item, dict):
            continue
        entity = " ".join(str(item.get("entity", "")).split())[:80]
        description = " ".join(str(item.get("description", "")).split())[:300]
        if len(entity) >= 2 and len(description) >= 10:
            pairs.append((entity, description))
    if not pairs:
        raise TeacherOutputError(f"no usable entity in {reply!r:.200}")
    return pairs[:max_entities]


def entity_key(name: str) -> str:
    """The name that decides duplicates: lower case, punctuation to spaces, no leading article."""
    words = " ".join(re.sub(r"[^\w]+", " ", name.casefold()).split())
    return LEADING_ARTICLE.sub("", words)


def deduplicate_per_document(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per (doc_id, entity key) from rows of (doc_id, chunk_id, entity, description), in input order.

    The first description is kept; ``chunk_ids`` lists every chunk of the document that named the entity.
    """
    if pairs.empty:
        return ENTITY_DESCRIPTIONS.empty()
    keyed = pairs.assign(key=pairs["entity"].map(entity_key))
    grouped = keyed.groupby(["doc_id", "key"], sort=False)
    first = grouped.first().reset_index()
    chunk_lists = grouped["chunk_id"].agg(lambda ids: list(dict.fromkeys(ids))).reset_index(drop=True)
    frame = first.assign(chunk_ids=chunk_lists.values)
    frame["entity_id"] = [f"{doc}:{key}" for doc, key in zip(frame["doc_id"], frame["key"], strict=True)]
    return frame[ENTITY_DESCRIPTIONS.names].reset_index(drop=True)


def description_texts(entities: pd.DataFrame) -> list[str]:
    """What gets embedded for reassembly: ``entity: description``."""
    return [f"{e}: {d}" for e, d in zip(entities["entity"], entities["description"], strict=True)]


def reassemble(vectors: np.ndarray, neighbours: int, min_similarity: float, seed: int) -> np.ndarray:
    """Entity-cluster label per description vector (LMAR's KNN clustering on the description embeddings)."""
    return knn_clusters(vectors, neighbours, min_similarity, seed)


def chunks_by_cluster(entities: pd.DataFrame, labels: np.ndarray) -> dict[int, list[str]]:
    """Each entity cluster's chunk ids (first-seen order, no repeats)."""
    chunks: dict[int, dict[str, None]] = {}
    for label, chunk_ids in zip(labels.tolist(), entities["chunk_ids"], strict=True):
        chunks.setdefault(int(label), {}).update(dict.fromkeys(chunk_ids))
    return {label: list(ids) for label, ids in chunks.items()}


def cluster_centroids(vectors: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Each cluster's normalised mean description vector."""
    centroids = {}
    for label in np.unique(labels):
        mean = vectors[labels == label].mean(axis=0)
        centroids[int(label)] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return centroids


def extract_entities(
    teacher: Teacher,
    chunks: pd.DataFrame,
    max_entities: int,
    stop: BudgetStop,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, int]:
    """The teacher's (doc_id, chunk_id, entity, description) pairs for each chunk, and how many chunks failed."""

    def extract(numbered: tuple[int, tuple]) -> list[tuple[str, str, str, str]] | None:
        number, row = numbered
        found = teacher.generate_json(
            "entity_descriptions",
            str(row.chunk_id),
            entity_messages(str(row.text)),
            lambda reply: parse_entities(reply, max_entities),
            schema=entity_schema(max_entities),
            prompt_version=ENTITY_PROMPT_VERSION,
            max_tokens=48 * max_entities,
        )
        if progress:
            progress(number, len(chunks))
        return None if found is None else [(str(row.doc_id), str(row.chunk_id), e, d) for e, d in found]

    rows = enumerate(chunks.itertuples(index=False), start=1)
    extracted = within_budget(rows, extract, stop, teacher.concurrency)
    pairs = [pair for found in extracted for pair in found or []]
    teacher.settle("entity_descriptions")
    failed = sum(found is None for found in extracted)
    return pd.DataFrame(pairs, columns=["doc_id", "chunk_id", "entity", "description"]), failed
