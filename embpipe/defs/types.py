"""The dagster-pandas type of every stored table, built from its declaration in ``core/tables``.

An asset whose output breaks its contract fails at that asset, with the column named.
"""

from dagster import DagsterType
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

from embpipe.core import tables
from embpipe.core.tables import Column, Table


def pandas_column(column: Column) -> PandasColumn:
    """The dagster-pandas check of one declared column."""
    common = {"non_nullable": column.non_null, "unique": column.unique, "ignore_missing_vals": column.missing_ok}
    bounds = {
        "min_value": -float("inf") if column.min_value is None else column.min_value,
        "max_value": float("inf") if column.max_value is None else column.max_value,
    }
    if column.kind == "id":
        return PandasColumn.string_column(column.name, unique=column.unique, non_nullable=True)
    if column.kind == "text":
        return PandasColumn.string_column(column.name, **common)
    if column.kind == "int":
        return PandasColumn.integer_column(column.name, **bounds, **common)
    if column.kind == "float":
        return PandasColumn.float_column(column.name, **bounds, **common)
    if column.kind == "bool":
        return PandasColumn.boolean_column(column.name, **common)
    if column.kind == "category":
        return PandasColumn.categorical_column(column.name, categories=set(column.categories or ()), **common)
    return PandasColumn.exists(column.name, **common)


def dagster_type(table: Table) -> DagsterType:
    """``table``'s declaration as a dagster-pandas dataframe type."""
    return create_dagster_pandas_dataframe_type(
        name=table.name, description=table.description, columns=[pandas_column(c) for c in table.columns]
    )


DocumentsFrame = dagster_type(tables.DOCUMENTS)
RejectedDocumentsFrame = dagster_type(tables.REJECTED_DOCUMENTS)
ChunksFrame = dagster_type(tables.CHUNKS)
ChunkEmbeddingsFrame = dagster_type(tables.CHUNK_EMBEDDINGS)
SyntheticQueriesFrame = dagster_type(tables.SYNTHETIC_QUERIES)
QuerySplitsFrame = dagster_type(tables.QUERY_SPLITS)
RetrievalReportFrame = dagster_type(tables.RETRIEVAL_REPORT)
HardNegativesFrame = dagster_type(tables.HARD_NEGATIVES)
PassagePairsFrame = dagster_type(tables.PASSAGE_PAIRS)
TrainingLabelsFrame = dagster_type(tables.TRAINING_LABELS)
LineageFrame = dagster_type(tables.LINEAGE)
LabeledTripletsFrame = dagster_type(tables.LABELED_TRIPLETS)
ChunkClustersFrame = dagster_type(tables.CHUNK_CLUSTERS)
ClusterProfilesFrame = dagster_type(tables.CLUSTER_PROFILES)
EntityDescriptionsFrame = dagster_type(tables.ENTITY_DESCRIPTIONS)
EntityClustersFrame = dagster_type(tables.ENTITY_CLUSTERS)
EmbGenQueriesFrame = dagster_type(tables.EMBGEN_QUERIES)
