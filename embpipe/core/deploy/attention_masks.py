"""Attention masks for the ONNX tracer where transformers builds them in a way it cannot follow.

A bidirectional encoder of full and sliding-window layers (EmbeddingGemma, a ``Gemma3TextModel`` with
``use_bidirectional_attention``) gets its masks from ``torch.vmap`` in transformers' ``masking_utils``, and
``torch.onnx.export`` fails there (``RuntimeError: unordered_map::at``). Its ``forward`` also accepts the masks
ready-made, by layer type, so the export builds them from the padding mask with plain tensor operations.
"""

from __future__ import annotations


def bidirectional_windows(config) -> bool:
    """Whether ``config`` is such an encoder (its masks are built here for the export)."""
    return bool(getattr(config, "use_bidirectional_attention", False)) and hasattr(config, "layer_types")


def bidirectional_masks(config, attention_mask):
    """The masks transformers would build for each layer type from a padding mask: every real token for the full
    layers, those closer than the sliding window for the others (boolean for SDPA, additive for eager)."""
    import torch

    keep = attention_mask.bool()[:, None, None, :]
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    near = (positions[:, None] - positions[None, :]).abs() < config.sliding_window
    masks = {"full_attention": keep & torch.ones_like(near)[None, None], "sliding_attention": keep & near[None, None]}
    if config._attn_implementation == "eager":
        low = torch.finfo(torch.float32).min
        return {kind: torch.where(mask, 0.0, low) for kind, mask in masks.items()}
    return masks
