"""What the server encodes with: the ONNX export when there is one, else the PyTorch model.

Example:
    >>> encoder = load_encoder(Path("data/models"))  # doctest: +SKIP
    >>> encoder.backend, encoder.encode(["hello"]).shape  # doctest: +SKIP
    ('onnx-int8', (1, 384))
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embpipe.core.deploy.onnx_export import SETTINGS_FILE, OnnxEncoder
from embpipe.core.embedding import Role


@dataclass
class ServingEncoder:
    """A named encoder with its tokenizer (for usage counts), its backend description and the query and
    document prompts it puts before a text of that role (none for a model without prompts)."""

    name: str
    backend: str
    dimension: int
    max_seq_length: int
    prompts: dict[str, str]
    _encode: Callable[[list[str], Role | None], np.ndarray]
    _tokenizer: object
    _lock: threading.Lock

    def encode(self, texts: Sequence[str], role: Role | None = None) -> np.ndarray:
        """Embeddings of ``texts``; a ``role`` the model has a prompt for puts that prompt before each text."""
        with self._lock:
            return self._encode(list(texts), role)

    def count_tokens(self, texts: Sequence[str], role: Role | None = None) -> int:
        """Tokens the model reads for ``texts`` (the role's prompt included, after truncation), reported as
        ``usage``."""
        prompt = self.prompts.get(role or "", "")
        ids = self._tokenizer([prompt + t for t in texts], truncation=True, max_length=self.max_seq_length)["input_ids"]
        return sum(len(i) for i in ids)


def onnx_encoder(folder: Path, name: str, variant: str | None = None) -> ServingEncoder:
    """The ONNX export in ``folder``, in the variant it recorded as served (or ``variant``)."""
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    chosen = variant or settings.get("served_variant", "fp32")
    encoder = OnnxEncoder(folder, chosen)
    return ServingEncoder(
        name,
        f"onnx-{chosen}",
        encoder.dimension(),
        settings["max_seq_length"],
        encoder.prompts,
        lambda texts, role: encoder.encode(texts, role=role),
        encoder.tokenizer,
        threading.Lock(),
    )


def pytorch_encoder(path: str, name: str) -> ServingEncoder:
    """A sentence-transformers model folder (or id) on PyTorch."""
    from embpipe.core.embedding import embedding_dimension, encode, load_model, role_prompts

    model = load_model(path, 256, "auto")
    return ServingEncoder(
        name,
        f"pytorch-{model.device}",
        embedding_dimension(model),
        model.max_seq_length,
        role_prompts(model),
        lambda texts, role: encode(model, texts, role=role),
        model.tokenizer,
        threading.Lock(),
    )


def load_encoder(models_dir: Path, model: str | None = None, name: str = "embpipe") -> ServingEncoder:
    """``model`` (an ONNX export or sentence-transformers folder) when given; else the pipeline's ONNX
    export, else its PyTorch model; a clear error when neither has been materialized."""
    if model:
        path = Path(model)
        return onnx_encoder(path, name) if (path / SETTINGS_FILE).is_file() else pytorch_encoder(model, name)
    if (models_dir / "onnx_model" / SETTINGS_FILE).is_file():
        return onnx_encoder(models_dir / "onnx_model", name)
    if (models_dir / "embedding_model").is_dir():
        return pytorch_encoder(str(models_dir / "embedding_model"), name)
    raise FileNotFoundError(
        f"no model under {models_dir}: run `embpipe run` (or materialize embedding_model / onnx_model) first, "
        "or pass --model PATH"
    )
