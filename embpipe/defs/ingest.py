"""Ingest: the documents folder → documents (and rejected files) → chunks."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetOut,
    Config,
    DataVersion,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)
from pydantic import Field

from embpipe.core.embedding import encode
from embpipe.core.ingest.chunking import ChunkingParams, ChunkStrategy, chunk_id_for, chunk_text
from embpipe.core.ingest.documents import DEFAULT_MAX_BYTES, manifest_hash, read_folder, require_documents
from embpipe.core.tables import DOCUMENTS, REJECTED_DOCUMENTS
from embpipe.defs.metadata import frame_version, preview, table_output
from embpipe.defs.types import ChunksFrame, DocumentsFrame, RejectedDocumentsFrame
from embpipe.orchestration.fingerprints import CONFIG_FINGERPRINT, config_fingerprint
from embpipe.paths import default_documents_folder
from embpipe.resources.embedder import EmbedderResource


class DocumentsConfig(Config):
    """Where the documents are and which files are too large."""

    folder: str = Field(
        default_factory=default_documents_folder,
        description="Folder of .txt/.md/.html/.pdf files or a BEIR corpus.jsonl (default $EMBPIPE_DOCUMENTS).",
    )
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, description="Files larger than this are rejected.")


@multi_asset(
    outs={
        "documents": AssetOut(
            dagster_type=DocumentsFrame,
            code_version="2",
            description=("One row per readable document: id (hash of relative path), path, content hash, title, text."),
        ),
        "rejected_documents": AssetOut(
            dagster_type=RejectedDocumentsFrame,
            code_version="1",
            description=(
                "Files that could not be used (empty, binary, not UTF-8, unreadable, too large, duplicate) and why."
            ),
        ),
    },
    group_name="ingest",
)
def read_documents(context: AssetExecutionContext, config: DocumentsConfig):
    """Read the documents folder; data version = hash of the document manifest."""
    result = read_folder(config.folder, config.max_bytes)
    for rejection in result.rejected:
        context.log.warning(f"skipped {rejection.path}: {rejection.reason}")
    require_documents(result, config.folder)
    documents = pd.DataFrame([vars(d) for d in result.documents], columns=DOCUMENTS.names)
    rejected = pd.DataFrame([vars(r) for r in result.rejected], columns=REJECTED_DOCUMENTS.names)
    context.log.info(f"read {len(documents)} documents from {config.folder}, rejected {len(rejected)}")
    yield Output(
        documents,
        output_name="documents",
        data_version=DataVersion(manifest_hash(result.documents)),
        metadata={
            "documents": len(documents),
            "rejected": len(rejected),
            CONFIG_FINGERPRINT: config_fingerprint(config),
            "folder": config.folder,
            "preview": preview(documents, ["doc_id", "path", "title"]),
        },
    )
    yield Output(
        rejected,
        output_name="rejected_documents",
        data_version=DataVersion(frame_version(rejected)),
        metadata={"rejected": len(rejected), "preview": preview(rejected)},
    )


class ChunkingConfig(Config):
    """How documents are split into passages."""

    strategy: ChunkStrategy = Field(
        default=ChunkStrategy.PARAGRAPH, description="paragraph, sentences, tokens or semantic."
    )
    max_tokens: int = Field(default=200, description="Largest chunk (approximate tokens).")
    min_tokens: int = Field(default=24, description="Shorter paragraphs are merged into the next one.")
    sentences_per_chunk: int = Field(default=4, description="For the sentences strategy.")
    overlap_tokens: int = Field(default=32, description="For the tokens strategy.")
    semantic_threshold: float = Field(
        default=0.45, description="For the semantic strategy: split below this similarity."
    )

    def params(self) -> ChunkingParams:
        return ChunkingParams(**self.model_dump())


def chunk_documents(documents: pd.DataFrame, params: ChunkingParams, embed=None) -> pd.DataFrame:
    """Chunk rows for every document, with stable ids."""
    rows = []
    for doc in documents.itertuples(index=False):
        for chunk in chunk_text(doc.text, params, embed):
            rows.append(
                {
                    "chunk_id": chunk_id_for(doc.doc_id, chunk.position, chunk.text),
                    "doc_id": doc.doc_id,
                    "position": chunk.position,
                    "title": doc.title,
                    "text": chunk.text,
                    "n_tokens": chunk.n_tokens,
                }
            )
    columns = ["chunk_id", "doc_id", "position", "title", "text", "n_tokens"]
    return pd.DataFrame(rows, columns=columns).astype({"position": "int64", "n_tokens": "int64"})


@asset(dagster_type=ChunksFrame, code_version="2", group_name="ingest")
def chunks(context: AssetExecutionContext, config: ChunkingConfig, embedder: EmbedderResource, documents: pd.DataFrame):
    """Passages of every document (LMAR paragraph chunks by default), each tracing to its document."""
    embed = None
    if config.strategy == ChunkStrategy.SEMANTIC:
        model = embedder.load()
        embed = lambda texts: encode(model, texts)  # noqa: E731
    frame = chunk_documents(documents, config.params(), embed)
    stats = frame["n_tokens"].describe() if len(frame) else None
    return table_output(
        frame,
        config,
        {
            "chunks": len(frame),
            "documents": int(frame["doc_id"].nunique()) if len(frame) else 0,
            "mean_tokens": float(stats["mean"]) if stats is not None else 0.0,
            "strategy": MetadataValue.text(str(config.strategy)),
        },
        ["chunk_id", "doc_id", "n_tokens", "text"],
    )
