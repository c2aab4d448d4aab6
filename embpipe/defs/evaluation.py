"""Evaluation: BM25, the base model and the tuned model side by side (ranx), logged to MLflow."""

import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from embpipe.core.embedding import role_encoder, stack_embeddings
from embpipe.core.evaluation.beir import BeirDataset, load_beir
from embpipe.core.evaluation.report import TargetComparison, compare_models, headline_metrics
from embpipe.core.evaluation.report_render import delta_histogram_figure, markdown_report, metric_curve_figure
from embpipe.core.tables import Split
from embpipe.core.training.examples import queries_in_split, retrieval_target
from embpipe.defs.types import RetrievalReportFrame
from embpipe.orchestration.fingerprints import CONFIG_FINGERPRINT, config_fingerprint
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.tracking import MlflowResource


class ReportConfig(Config):
    """What the models are scored on besides the held-out synthetic test split."""

    beir_folder: str = Field(default="", description="Optional BEIR folder scored only here (never trained on).")
    beir_split: str = Field(default="test", description="qrels file of the BEIR folder.")
    top_k: int = Field(default=100, description="Depth of every ranking.")


def compare_base_and_tuned(
    target: BeirDataset, base, tuned, batch_size: int, top_k: int, log, base_vectors=None
) -> TargetComparison:
    """BM25, base and tuned on one target (encoding progress goes to ``log``)."""
    encoders = {"base": role_encoder(base, batch_size, log), "tuned": role_encoder(tuned, batch_size, log)}
    precomputed = {"base": base_vectors} if base_vectors is not None else {}
    return compare_models(target, encoders, top_k, precomputed)


def log_comparisons(mlflow_api, comparisons: list[TargetComparison], markdown: str) -> None:
    """Metrics, the Markdown report and its plots into the active MLflow run."""
    for comparison in comparisons:
        target = comparison.table["target"].iloc[0]
        for row in comparison.table.itertuples(index=False):
            mlflow_api.log_metric(f"{target}.{row.model}.{row.metric.replace('@', '_at_')}", row.value)
        mlflow_api.log_figure(metric_curve_figure(comparison.curves, target), f"report/{target}-metric-vs-k.png")
        deltas = comparison.per_query_ndcg10
        histogram = delta_histogram_figure((deltas["tuned"] - deltas["base"]).to_numpy(), "nDCG@10", target)
        mlflow_api.log_figure(histogram, f"report/{target}-ndcg10-delta-histogram.png")
    mlflow_api.log_text(markdown, "report/report.md")


@asset(dagster_type=RetrievalReportFrame, code_version="4", group_name="evaluation")
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
    test = retrieval_target(queries_in_split(synthetic_queries, query_splits, Split.TEST), chunks, "synthetic-test")
    if not test.queries:
        raise ValueError("the test split is empty: generate more questions (raise max_chunks) or adjust the split")
    aligned = stack_embeddings(chunk_embeddings.set_index("chunk_id").loc[list(test.corpus)].reset_index())
    batch, log = embedder.batch_size, context.log.info
    comparisons = []
    if config.beir_folder:  # real (or hand-written) queries first: the figures a user should read
        beir = load_beir(config.beir_folder, config.beir_split)
        context.log.info(f"scoring on BEIR {beir.name}: {len(beir.queries)} queries, {len(beir.corpus)} documents")
        comparisons.append(compare_base_and_tuned(beir, base, embedding_model, batch, config.top_k, log))
    comparisons.append(compare_base_and_tuned(test, base, embedding_model, batch, config.top_k, log, aligned))
    report = pd.concat([c.table for c in comparisons], ignore_index=True)
    markdown = markdown_report(report)
    with mlflow.start_run("retrieval_report", tags={"dagster_run_id": context.run_id}) as run:
        log_comparisons(mlflow_api, comparisons, markdown)
    metadata = {
        CONFIG_FINGERPRINT: config_fingerprint(config),
        "report": MetadataValue.md(markdown),
        "mlflow_run_id": run.info.run_id,
        **headline_metrics(report),
    }
    return Output(report, metadata=metadata)
