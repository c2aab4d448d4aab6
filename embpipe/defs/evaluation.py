"""Evaluation: BM25, the base model and the tuned model side by side (ranx), logged to MLflow."""

import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from embpipe.core.beir import BeirDataset, load_beir
from embpipe.core.datasets import queries_in_split, retrieval_target
from embpipe.core.evaluation import DEFAULT_METRICS
from embpipe.core.report import bm25_run, compare_runs, dense_run, wide_table
from embpipe.defs.metadata import CONFIG_FINGERPRINT, config_fingerprint
from embpipe.defs.synthesis import stack_embeddings
from embpipe.defs.types import RetrievalReportFrame
from embpipe.resources.embedder import EmbedderResource, encode
from embpipe.resources.tracking import MlflowResource


class ReportConfig(Config):
    """What the models are scored on besides the held-out synthetic test split."""

    beir_folder: str = Field(default="", description="Optional BEIR folder scored only here (never trained on).")
    beir_split: str = Field(default="test", description="qrels file of the BEIR folder.")
    top_k: int = Field(default=100, description="Depth of every ranking.")


def compare_on(target: BeirDataset, base, tuned, batch_size: int, top_k: int, base_vectors=None) -> pd.DataFrame:
    """Metric table of BM25, base and tuned on one target."""
    runs = {
        "bm25": bm25_run(target.corpus, target.queries, top_k),
        "base": dense_run(lambda t: encode(base, t, batch_size), target.corpus, target.queries, top_k, base_vectors),
        "tuned": dense_run(lambda t: encode(tuned, t, batch_size), target.corpus, target.queries, top_k),
    }
    table = compare_runs(target.qrels, runs, DEFAULT_METRICS)
    table.insert(0, "target", target.name)
    return table


@asset(dagster_type=RetrievalReportFrame, code_version="1", group_name="evaluation")
def retrieval_report(
    context: AssetExecutionContext,
    config: ReportConfig,
    embedder: EmbedderResource,
    mlflow: MlflowResource,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
    embedding_model,
):
    """Metrics before/after adaptation: BM25, base and tuned on the synthetic test split (and a BEIR folder)."""
    import mlflow as mlflow_api

    base = embedder.load()
    test = retrieval_target(queries_in_split(synthetic_queries, query_splits, "test"), chunks, "synthetic-test")
    if not test.queries:
        raise ValueError("the test split is empty: generate more questions (raise max_chunks) or adjust the split")
    aligned = chunk_embeddings.set_index("chunk_id").loc[list(test.corpus)].reset_index()
    tables = [compare_on(test, base, embedding_model, embedder.batch_size, config.top_k, stack_embeddings(aligned))]
    if config.beir_folder:
        beir = load_beir(config.beir_folder, config.beir_split)
        context.log.info(f"scoring on BEIR {beir.name}: {len(beir.queries)} queries, {len(beir.corpus)} documents")
        tables.append(compare_on(beir, base, embedding_model, embedder.batch_size, config.top_k))
    report = pd.concat(tables, ignore_index=True)
    with mlflow.start_run("retrieval_report", tags={"dagster_run_id": context.run_id}):
        for row in report.itertuples(index=False):
            mlflow_api.log_metric(f"{row.target}.{row.model}.{row.metric.replace('@', '_at_')}", row.value)
    metadata = {CONFIG_FINGERPRINT: config_fingerprint(config), "test_queries": len(test.queries)}
    for target, part in report.groupby("target", sort=False):
        metadata[f"{target}"] = MetadataValue.md(wide_table(part).round(4).to_markdown())
        values = part.set_index(["model", "metric"])["value"]
        metadata[f"{target}.tuned_minus_base_ndcg@10"] = float(values["tuned", "ndcg@10"] - values["base", "ndcg@10"])
    return Output(report, metadata=metadata)
