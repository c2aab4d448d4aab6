"""The embedder resource: which base model is adapted, and the encoding settings (``core/embedding.py`` encodes)."""

from dagster import ConfigurableResource
from pydantic import Field

from embpipe.core.embedding import load_model, packaged_base_model


class EmbedderResource(ConfigurableResource):
    """The base embedding model and encoding settings."""

    base_model: str = Field(default="", description="sentence-transformers path or id; empty = packaged MiniLM.")
    max_seq_length: int = Field(default=256, description="Tokens per text when encoding and training.")
    batch_size: int = Field(default=32, description="Encoding batch size.")
    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")

    def model_id(self) -> str:
        """The base model's path or id."""
        return self.base_model or packaged_base_model()

    def load(self, max_seq_length: int | None = None):
        """A fresh copy of the base model (training mutates it); ``max_seq_length`` overrides the setting."""
        return load_model(self.model_id(), max_seq_length or self.max_seq_length, self.device)
