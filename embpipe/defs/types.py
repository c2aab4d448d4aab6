"""The contract of every stored table: columns and dtypes declared once as dagster-pandas types.

An asset whose output breaks its contract fails at that asset, with the column named.
"""

from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

STRATEGIES = frozenset({"single_chunk", "cluster", "proximity", "intra_cluster", "inter_cluster"})


def _id(name: str, unique: bool = False) -> PandasColumn:
    return PandasColumn.string_column(name, non_nullable=True, unique=unique)


DocumentsFrame = create_dagster_pandas_dataframe_type(
    name="DocumentsFrame",
    description="One row per readable document.",
    columns=[
        _id("doc_id", unique=True),
        _id("path", unique=True),
        _id("content_sha256"),
        PandasColumn.string_column("title"),
        _id("text"),
    ],
)

RejectedDocumentsFrame = create_dagster_pandas_dataframe_type(
    name="RejectedDocumentsFrame",
    description="Files that were skipped, with the reason.",
    columns=[_id("path"), _id("reason")],
)

ChunksFrame = create_dagster_pandas_dataframe_type(
    name="ChunksFrame",
    description="Retrieval passages; every chunk traces to its document.",
    columns=[
        _id("chunk_id", unique=True),
        _id("doc_id"),
        PandasColumn.integer_column("position", min_value=0),
        PandasColumn.string_column("title"),
        _id("text"),
        PandasColumn.integer_column("n_tokens", min_value=1),
    ],
)

ChunkEmbeddingsFrame = create_dagster_pandas_dataframe_type(
    name="ChunkEmbeddingsFrame",
    description="One L2-normalised float32 vector per chunk (base model).",
    columns=[_id("chunk_id", unique=True), PandasColumn.exists("embedding")],
)

SyntheticQueriesFrame = create_dagster_pandas_dataframe_type(
    name="SyntheticQueriesFrame",
    description="Teacher-written questions with their positive chunks and source documents.",
    columns=[
        _id("query_id", unique=True),
        _id("text"),
        PandasColumn.exists("positive_chunk_ids"),
        PandasColumn.exists("doc_ids"),
        PandasColumn.categorical_column("strategy", categories=STRATEGIES),
        PandasColumn.integer_column("hops", min_value=1, max_value=3),
        PandasColumn.float_column("validator_score", min_value=0.0, max_value=1.0, ignore_missing_vals=True),
    ],
)

QuerySplitsFrame = create_dagster_pandas_dataframe_type(
    name="QuerySplitsFrame",
    description="train / validation / test per query, grouped by document.",
    columns=[
        _id("query_id", unique=True),
        PandasColumn.categorical_column("split", categories={"train", "validation", "test"}),
    ],
)

RetrievalReportFrame = create_dagster_pandas_dataframe_type(
    name="RetrievalReportFrame",
    description="Metric values per evaluation target and model; against base: p-value, delta, 95% CI, wins/losses.",
    columns=[
        _id("target"),
        PandasColumn.integer_column("n_queries", min_value=1),
        _id("model"),
        _id("metric"),
        PandasColumn.float_column("value"),
        *[PandasColumn.float_column(c, ignore_missing_vals=True) for c in ("p_value", "delta", "ci_low", "ci_high")],
        *[PandasColumn.exists(c) for c in ("wins", "losses")],
    ],
)

HardNegativesFrame = create_dagster_pandas_dataframe_type(
    name="HardNegativesFrame",
    description="Per training query: margin-rule hard negatives (best first) and the threshold they stayed under.",
    columns=[
        _id("query_id", unique=True),
        PandasColumn.exists("negative_chunk_ids"),
        PandasColumn.exists("negative_scores"),
        PandasColumn.float_column("weakest_positive_score", ignore_missing_vals=True),
        PandasColumn.float_column("threshold", ignore_missing_vals=True),
    ],
)

TrainingLabelsFrame = create_dagster_pandas_dataframe_type(
    name="TrainingLabelsFrame",
    description="(query, chunk) training labels with their source (synthetic, margin, teacher) and round.",
    columns=[
        _id("query_id"),
        _id("chunk_id"),
        PandasColumn.string_column("doc_id"),
        PandasColumn.categorical_column("role", categories={"positive", "negative", "uncertain"}),
        PandasColumn.categorical_column("source", categories={"synthetic", "margin", "teacher"}),
        PandasColumn.integer_column("round", min_value=0),
        PandasColumn.float_column("score", ignore_missing_vals=True),
        PandasColumn.boolean_column("used"),
    ],
)

LineageFrame = create_dagster_pandas_dataframe_type(
    name="LineageFrame",
    description="query → chunk → document, for every question, training pair and negative.",
    columns=[
        _id("query_id"),
        PandasColumn.string_column("query_text"),
        PandasColumn.categorical_column("split", categories={"train", "validation", "test", "unassigned"}),
        PandasColumn.categorical_column("role", categories={"positive", "negative"}),
        _id("chunk_id"),
        PandasColumn.string_column("doc_id"),
        PandasColumn.string_column("doc_path"),
    ],
)

LabeledTripletsFrame = create_dagster_pandas_dataframe_type(
    name="LabeledTripletsFrame",
    description="LMAR: anchor chunk, the candidate the teacher judged closer, the other one, and its confidence.",
    columns=[
        _id("anchor_chunk_id"),
        _id("positive_chunk_id"),
        _id("negative_chunk_id"),
        PandasColumn.float_column("confidence", min_value=0.0, max_value=1.0),
    ],
)

ChunkClustersFrame = create_dagster_pandas_dataframe_type(
    name="ChunkClustersFrame",
    description="LMAR: the cluster of every chunk (sampling-based KNN clustering on stage-1 embeddings).",
    columns=[_id("chunk_id", unique=True), PandasColumn.integer_column("cluster_id", min_value=0, non_nullable=True)],
)

ClusterProfilesFrame = create_dagster_pandas_dataframe_type(
    name="ClusterProfilesFrame",
    description="LMAR: the teacher's topic summary of every cluster of two or more chunks.",
    columns=[
        PandasColumn.integer_column("cluster_id", min_value=0, non_nullable=True, unique=True),
        PandasColumn.integer_column("size", min_value=2),
        _id("summary"),
    ],
)

EntityDescriptionsFrame = create_dagster_pandas_dataframe_type(
    name="EntityDescriptionsFrame",
    description="EmbGen: the teacher's (entity, description) pairs, one row per document and entity.",
    columns=[
        _id("entity_id", unique=True),
        _id("doc_id"),
        _id("entity"),
        _id("description"),
        PandasColumn.exists("chunk_ids"),
    ],
)

EntityClustersFrame = create_dagster_pandas_dataframe_type(
    name="EntityClustersFrame",
    description="EmbGen: the cluster of every entity, from the similarity of their descriptions.",
    columns=[_id("entity_id", unique=True), PandasColumn.integer_column("cluster_id", min_value=0, non_nullable=True)],
)

EmbGenQueriesFrame = create_dagster_pandas_dataframe_type(
    name="EmbGenQueriesFrame",
    description="EmbGen: quality-scored proximity, intra- and inter-cluster questions with the teacher's answers.",
    columns=[
        _id("query_id", unique=True),
        _id("text"),
        PandasColumn.exists("positive_chunk_ids"),
        PandasColumn.exists("doc_ids"),
        PandasColumn.categorical_column("strategy", categories=STRATEGIES),
        PandasColumn.integer_column("hops", min_value=1, max_value=3),
        PandasColumn.float_column("validator_score", min_value=0.0, max_value=1.0),
        _id("answer"),
    ],
)
