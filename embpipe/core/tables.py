"""The contract of every stored table, declared once: its columns, their kinds and constraints.

``core`` builds and reads tables from these declarations (column order, empty frames, dtypes); ``defs/types``
turns each into the dagster-pandas type its asset is checked against, so a broken contract fails at the asset
that broke it, with the column named. The value sets that columns draw from are string enums.

Example:
    >>> SYNTHETIC_QUERIES.names[:3]
    ['query_id', 'text', 'positive_chunk_ids']
    >>> Role.POSITIVE == "positive"
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Literal

import pandas as pd


class Strategy(StrEnum):
    """How a question was written: from one chunk, an LMAR cluster, one of EmbGen's samplers, or without the teacher."""

    SINGLE_CHUNK = "single_chunk"
    CLUSTER = "cluster"
    PROXIMITY = "proximity"
    INTRA_CLUSTER = "intra_cluster"
    INTER_CLUSTER = "inter_cluster"
    TITLE = "title"  # teacher-free: a document's title → its first chunk
    INVERSE_CLOZE = "inverse_cloze"  # teacher-free: one sentence → the rest of its chunk


EMBGEN_STRATEGIES = (Strategy.PROXIMITY, Strategy.INTRA_CLUSTER, Strategy.INTER_CLUSTER)


class Split(StrEnum):
    """Which part of the questions a query belongs to (``unassigned`` only in lineage)."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"
    UNASSIGNED = "unassigned"


SPLITS = (Split.TRAIN, Split.VALIDATION, Split.TEST)


class Role(StrEnum):
    """What a (query, chunk) label says about the chunk."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNCERTAIN = "uncertain"


class LabelSource(StrEnum):
    """Where a label came from: the question's own chunk, the margin rule, or a teacher judgement."""

    SYNTHETIC = "synthetic"
    MARGIN = "margin"
    TEACHER = "teacher"


Kind = Literal["id", "text", "int", "float", "bool", "category", "object"]
DTYPES = {"id": str, "category": str, "int": "int64", "float": "float64", "bool": "bool"}


@dataclass(frozen=True)
class Column:
    """One column: ``id`` = non-null string; ``text`` = string; ``object`` = lists or arrays."""

    name: str
    kind: Kind
    unique: bool = False
    non_null: bool = False
    min_value: float | None = None
    max_value: float | None = None
    categories: frozenset[str] | None = None
    missing_ok: bool = False


@dataclass(frozen=True)
class Table:
    """A stored table's name, what one row is, and its columns in order."""

    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def dtypes(self) -> dict[str, object]:
        """dtypes of the columns that have one (strings for ids and categories; lists stay objects)."""
        return {
            c.name: DTYPES[c.kind]
            for c in self.columns
            if c.kind in DTYPES and not (c.missing_ok and c.kind == "category")
        }

    def frame(self, rows: list[dict] | dict[str, list] | pd.DataFrame) -> pd.DataFrame:
        """``rows`` as this table: its columns in order, enum members as their plain values, with their dtypes."""
        frame = pd.DataFrame(rows, columns=self.names)
        for column in self.columns:
            if column.kind in {"id", "text", "category"}:
                frame[column.name] = frame[column.name].map(plain_value)
        return frame.astype(self.dtypes())

    def empty(self) -> pd.DataFrame:
        return self.frame([])


def plain_value(value: object) -> object:
    """An enum member's value (a ``str``, which Parquet and Dagster's metadata store take); others unchanged."""
    return value.value if isinstance(value, Enum) else value


def _id(name: str, unique: bool = False) -> Column:
    return Column(name, "id", unique=unique, non_null=True)


def _category(name: str, values, missing_ok: bool = False) -> Column:
    return Column(name, "category", categories=frozenset(str(v) for v in values), missing_ok=missing_ok)


_SCORE = {"min_value": 0.0, "max_value": 1.0}
QUESTION_COLUMNS = (
    _id("query_id", unique=True),
    _id("text"),
    Column("positive_chunk_ids", "object"),
    Column("doc_ids", "object"),
    _category("strategy", Strategy),
    Column("hops", "int", min_value=1, max_value=3),
)

DOCUMENTS = Table(
    "DocumentsFrame",
    "One row per readable document.",
    (_id("doc_id", unique=True), _id("path", unique=True), _id("content_sha256"), Column("title", "text"), _id("text")),
)
REJECTED_DOCUMENTS = Table(
    "RejectedDocumentsFrame", "Files that were skipped, with the reason.", (_id("path"), _id("reason"))
)
CHUNKS = Table(
    "ChunksFrame",
    "Retrieval passages; every chunk traces to its document.",
    (
        _id("chunk_id", unique=True),
        _id("doc_id"),
        Column("position", "int", min_value=0),
        Column("title", "text"),
        _id("text"),
        Column("n_tokens", "int", min_value=1),
    ),
)
CHUNK_EMBEDDINGS = Table(
    "ChunkEmbeddingsFrame",
    "One L2-normalised float32 vector per chunk (base model).",
    (_id("chunk_id", unique=True), Column("embedding", "object")),
)
SYNTHETIC_QUERIES = Table(
    "SyntheticQueriesFrame",
    "Teacher-written questions with their positive chunks and source documents.",
    (
        *QUESTION_COLUMNS,
        Column("validator_score", "float", missing_ok=True, **_SCORE),
        Column("source_chunk_id", "text"),
    ),
)
QUERY_SPLITS = Table(
    "QuerySplitsFrame",
    "train / validation / test per query, grouped by document.",
    (_id("query_id", unique=True), _category("split", SPLITS)),
)
RETRIEVAL_REPORT = Table(
    "RetrievalReportFrame",
    "Metric values per evaluation target and model; against base: p-value, delta, 95% CI, wins/losses.",
    (
        _id("target"),
        Column("n_queries", "int", min_value=1),
        _id("model"),
        _id("metric"),
        Column("value", "float"),
        *[Column(name, "float", missing_ok=True) for name in ("p_value", "delta", "ci_low", "ci_high")],
        Column("wins", "object"),
        Column("losses", "object"),
    ),
)
HARD_NEGATIVES = Table(
    "HardNegativesFrame",
    "Per training query: margin-rule hard negatives (best first) and the threshold they stayed under.",
    (
        _id("query_id", unique=True),
        Column("negative_chunk_ids", "object"),
        Column("negative_scores", "object"),
        Column("weakest_positive_score", "float", missing_ok=True),
        Column("threshold", "float", missing_ok=True),
    ),
)
PASSAGE_PAIRS = Table(
    "PassagePairsFrame",
    "Teacher-free pairs: a title or one sentence → its chunk with that text cut out, base-model negatives.",
    (_id("pair_id", unique=True), _category("strategy", (Strategy.TITLE, Strategy.INVERSE_CLOZE)), _id("query"),
     _id("positive"), _id("chunk_id"), _id("doc_id"), Column("negative_chunk_ids", "object"),
     Column("weight", "float", min_value=0.0, max_value=1.0)),
)  # fmt: skip
TRAINING_LABELS = Table(
    "TrainingLabelsFrame",
    "(query, chunk) training labels with their source (synthetic, margin, teacher) and round.",
    (
        _id("query_id"),
        _id("chunk_id"),
        Column("doc_id", "text"),
        _category("role", Role),
        _category("source", LabelSource),
        Column("round", "int", min_value=0),
        Column("score", "float", missing_ok=True),
        Column("used", "bool"),
    ),
)
LINEAGE = Table(
    "LineageFrame",
    "query → chunk → document, for every question, training pair and negative.",
    (
        _id("query_id"),
        Column("query_text", "text"),
        _category("split", Split),
        _category("strategy", Strategy, missing_ok=True),
        _category("role", (Role.POSITIVE, Role.NEGATIVE)),
        _category("source", LabelSource),
        Column("round", "int", min_value=0),
        _id("chunk_id"),
        Column("doc_id", "text"),
        Column("doc_path", "text"),
    ),
)
LABELED_TRIPLETS = Table(
    "LabeledTripletsFrame",
    "LMAR: anchor chunk, the candidate the teacher judged closer, the other one, and its confidence.",
    (
        _id("anchor_chunk_id"),
        _id("positive_chunk_id"),
        _id("negative_chunk_id"),
        Column("confidence", "float", **_SCORE),
    ),
)
CHUNK_CLUSTERS = Table(
    "ChunkClustersFrame",
    "LMAR: the cluster of every chunk (sampling-based KNN clustering on stage-1 embeddings).",
    (_id("chunk_id", unique=True), Column("cluster_id", "int", non_null=True, min_value=0)),
)
CLUSTER_PROFILES = Table(
    "ClusterProfilesFrame",
    "LMAR: the teacher's topic summary of every cluster of two or more chunks.",
    (
        Column("cluster_id", "int", unique=True, non_null=True, min_value=0),
        Column("size", "int", min_value=2),
        _id("summary"),
    ),
)
ENTITY_DESCRIPTIONS = Table(
    "EntityDescriptionsFrame",
    "EmbGen: the teacher's (entity, description) pairs, one row per document and entity.",
    (_id("entity_id", unique=True), _id("doc_id"), _id("entity"), _id("description"), Column("chunk_ids", "object")),
)
ENTITY_CLUSTERS = Table(
    "EntityClustersFrame",
    "EmbGen: the cluster of every entity, from the similarity of their descriptions.",
    (_id("entity_id", unique=True), Column("cluster_id", "int", non_null=True, min_value=0)),
)
EMBGEN_QUERIES = Table(
    "EmbGenQueriesFrame",
    "EmbGen: quality-scored proximity, intra- and inter-cluster questions with the teacher's answers.",
    (*QUESTION_COLUMNS, Column("validator_score", "float", **_SCORE), Column("source_chunk_id", "text"), _id("answer")),
)

TABLES = (
    DOCUMENTS,
    REJECTED_DOCUMENTS,
    CHUNKS,
    CHUNK_EMBEDDINGS,
    SYNTHETIC_QUERIES,
    QUERY_SPLITS,
    RETRIEVAL_REPORT,
    HARD_NEGATIVES,
    TRAINING_LABELS,
    LINEAGE,
    LABELED_TRIPLETS,
    CHUNK_CLUSTERS,
    CLUSTER_PROFILES,
    ENTITY_DESCRIPTIONS,
    ENTITY_CLUSTERS,
    EMBGEN_QUERIES,
)
