"""Is an ONNX export fit to serve: its parity with the PyTorch model and its speed, variant by variant.

Example:
    >>> report = verify_export(model, folder, parity_texts, speed_texts, min_cosine=0.99)  # doctest: +SKIP
    >>> report.served  # doctest: +SKIP
    'int8'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embpipe.core.deploy.onnx_export import SETTINGS_FILE, VARIANT_FILES, OnnxEncoder


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between two sets of normalised embeddings: minimum and mean."""
    cosines = np.sum(reference * candidate, axis=1)
    return {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean())}


@dataclass(frozen=True)
class Throughput:
    """Texts per second of one encoder, and the wall time it was measured over."""

    texts_per_s: float
    seconds: float


def throughput(encode: Callable[[list[str]], np.ndarray], texts: list[str], repeats: int = 1) -> Throughput:
    """Texts per second of ``encode`` over ``texts`` (after one warm-up call)."""
    encode(texts[:2])
    started = time.perf_counter()
    for _ in range(repeats):
        encode(texts)
    seconds = time.perf_counter() - started
    return Throughput(len(texts) * repeats / seconds, seconds)


@dataclass
class ExportReport:
    """Parity and speed of each exported variant against PyTorch, and the variant chosen for serving."""

    pytorch_texts_per_s: float
    variants: dict[str, dict[str, float]]
    served: str

    def rows(self) -> list[dict[str, float | str]]:
        """One row per encoder: texts/s, speed-up over PyTorch and the parity cosines."""
        rows: list[dict[str, float | str]] = [
            {"encoder": "pytorch", "texts_per_s": self.pytorch_texts_per_s, "speedup": 1.0, "min_cosine": 1.0}
        ]
        for name, values in self.variants.items():
            rows.append({"encoder": f"onnx-{name}", **values})
        return rows


def verify_export(
    model,
    folder: Path,
    parity_texts: list[str],
    speed_texts: list[str],
    min_cosine: float,
    batch_size: int = 32,
) -> ExportReport:
    """Parity (cosine to PyTorch on ``parity_texts``) and throughput of each variant in ``folder``.

    Serving uses int8 when it passes ``min_cosine``, else fp32; the choice is recorded in the export.
    ``ValueError`` when even fp32 disagrees with PyTorch (a broken export).
    """
    reference = model.encode(parity_texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    torch_speed = throughput(
        lambda t: model.encode(t, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False),
        speed_texts,
    )
    variants = {}
    for variant in VARIANT_FILES:
        encoder = OnnxEncoder(folder, variant)
        scores = parity(reference, encoder.encode(parity_texts, batch_size))
        speed = throughput(lambda t, e=encoder: e.encode(t, batch_size), speed_texts)
        variants[variant] = {
            "texts_per_s": speed.texts_per_s,
            "speedup": speed.texts_per_s / torch_speed.texts_per_s,
            **scores,
        }
    if variants["fp32"]["min_cosine"] < min_cosine:
        raise ValueError(
            f"ONNX fp32 export disagrees with PyTorch (min cosine {variants['fp32']['min_cosine']:.4f} < "
            f"{min_cosine}): the export is broken"
        )
    served = "int8" if variants["int8"]["min_cosine"] >= min_cosine else "fp32"
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    (folder / SETTINGS_FILE).write_text(json.dumps({**settings, "served_variant": served}, indent=2))
    return ExportReport(torch_speed.texts_per_s, variants, served)
