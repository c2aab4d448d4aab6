"""Deploy: the tuned model exported to ONNX (fp32 and int8), checked for parity and timed against PyTorch."""

import random
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, MetadataValue, Output, asset
from pydantic import Field

from embpipe.core.deploy.export_checks import verify_export
from embpipe.core.deploy.onnx_export import export_onnx
from embpipe.core.training.examples import chunk_passages
from embpipe.resources.embedder import EmbedderResource


class OnnxConfig(Config):
    """Parity threshold and how many texts the parity check and the speed comparison use."""

    min_cosine: float = Field(default=0.99, description="Lowest cosine to the PyTorch embedding a variant may have.")
    parity_texts: int = Field(default=64, description="Texts compared (seeded sample of chunk passages).")
    speed_texts: int = Field(default=128, description="Texts encoded per throughput measurement.")
    seed: int = Field(default=42, description="Seed of the text samples.")


class OnnxExport:
    """An exported model folder waiting to be stored (``save`` is what the model IO manager calls)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def save(self, target: str) -> None:
        shutil.move(self.folder, target)


@asset(io_manager_key="model_io_manager", code_version="2", group_name="deploy")
def onnx_model(
    context: AssetExecutionContext,
    config: OnnxConfig,
    embedder: EmbedderResource,
    chunks: pd.DataFrame,
    embedding_model,
):
    """ONNX export of the tuned model (fp32 + dynamic int8); the int8 graph is served only if it passes parity."""
    passages = chunk_passages(chunks)
    parity_texts = random.Random(config.seed).sample(passages, min(config.parity_texts, len(passages)))
    speed_texts = [passages[i % len(passages)] for i in range(config.speed_texts)]
    staging = Path(tempfile.mkdtemp(prefix="onnx-export-"))
    export_onnx(embedding_model, staging)
    try:
        report = verify_export(
            embedding_model, staging, parity_texts, speed_texts, config.min_cosine, embedder.batch_size
        )
    except ValueError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise Failure(str(error)) from error
    for row in report.rows():
        context.log.info(f"{row}")
    metadata = {f"{variant}_{k}": v for variant, values in report.variants.items() for k, v in values.items()}
    return Output(
        OnnxExport(staging),
        metadata={
            **metadata,
            "pytorch_texts_per_s": report.pytorch_texts_per_s,
            "served_variant": report.served,
            "summary": MetadataValue.md(pd.DataFrame(report.rows()).to_markdown(index=False)),
        },
    )
