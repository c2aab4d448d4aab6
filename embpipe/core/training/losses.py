"""Weighted losses for sentence-transformers' trainer: each reads a row's weight from the ``label`` column.

``WeightedMultipleNegativesRankingLoss`` is InfoNCE over (anchor, positive, negative_1…n) rows: every anchor
is scored against every positive and negative of the batch at ``scale`` = 1 / temperature (50 ↔ 0.02), and
the per-row cross-entropy is weighted (LMAR's validator scores, EmbGen's quality scores) and averaged.
``WeightedTripletLoss`` is the triplet margin loss on cosine distance, weighted by the teacher's confidence.

Example:
    >>> import torch
    >>> queries, documents = torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(weighted_info_nce(queries, documents, torch.tensor([1.0, 0.0]), scale=1.0)), 4)
    0.7121
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
    TripletDistanceMetric,
    TripletLoss,
)


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``losses`` averaged with ``weights`` (normalised to sum to one; all-zero weights give 0)."""
    weights = torch.as_tensor(weights, dtype=losses.dtype, device=losses.device)
    return (losses * weights).sum() / weights.sum().clamp(min=1e-12)


def weighted_info_nce(
    queries: torch.Tensor,
    documents: torch.Tensor,
    weights: torch.Tensor,
    scale: float,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE where query i's positive is document i; every other document is a negative.

    ``queries`` (B×d) and ``documents`` (N×d, N ≥ B, positives first) are L2-normalised; ``present`` (N, or
    B × N for a per-query choice, bool) leaves out the documents that are only padding (or masked).
    """
    logits = scale * queries @ documents.T
    if present is not None:
        logits = logits.masked_fill(~present.to(logits.device), float("-inf"))
    labels = torch.arange(len(queries), device=queries.device)
    return weighted_mean(F.cross_entropy(logits, labels, reduction="none"), weights)


def distillation_kl(
    queries: torch.Tensor,
    documents: torch.Tensor,
    guide: torch.Tensor,
    scale: float,
    present: torch.Tensor | None,
    guide_scale: float = 0.0,
) -> torch.Tensor:
    """KL(guide ‖ student) over each query's own candidates, its positive and its hard negatives, the student's
    softmax at ``scale``, the guide's at ``guide_scale`` (0: the same; lower: softer targets); averaged over the
    rows that have guide scores.

    ``documents`` are ordered as in ``weighted_info_nce`` (B positives, then negative column 1 for every row, …);
    ``guide`` (B × candidates) holds the guide's cosines, NaN for a row without them; ``present`` as there.

    >>> q, d = torch.eye(2), torch.eye(2).repeat(2, 1)  # each row's positive and negative are the same text
    >>> round(float(distillation_kl(q, d, torch.tensor([[0.9, 0.9], [float("nan")] * 2]), 1.0, None)), 4)
    0.0
    """
    rows, dim = queries.shape
    candidates = documents.view(-1, rows, dim).transpose(0, 1)  # B × candidates × d
    mask = torch.ones(candidates.shape[:2], dtype=torch.bool, device=queries.device)
    if present is not None:
        mask = present.to(queries.device).view(-1, rows).T
    guided = ~torch.isnan(guide[:, 0])
    if not guided.any():
        return queries.new_zeros(())
    mask, guide = mask[guided], guide[guided].to(queries.dtype)
    student = (scale * torch.einsum("bd,bkd->bk", queries[guided], candidates[guided])).masked_fill(~mask, -1e4)
    target = F.softmax(((guide_scale or scale) * torch.nan_to_num(guide)).masked_fill(~mask, -1e4), dim=-1)
    log_ratio = torch.log(target.clamp(min=1e-12)) - F.log_softmax(student, dim=-1)
    return (target * log_ratio).masked_fill(~mask, 0.0).sum(dim=-1).mean()


def triplet_loss(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, weights, margin: float):
    """Weighted mean of max(0, d(a, p) - d(a, n) + margin) with d = 1 - cosine (inputs L2-normalised)."""
    closer = 1 - (anchors * positives).sum(dim=-1)
    farther = 1 - (anchors * negatives).sum(dim=-1)
    return weighted_mean(torch.clamp(closer - farther + margin, min=0), weights)


def present_documents(negative_counts: torch.Tensor, columns: int) -> torch.Tensor:
    """Which of the batch's documents are real: every positive, and row r's first ``negative_counts[r]``
    negatives (documents are ordered positives, then negative column 1 for every row, then column 2, …).

    >>> present_documents(torch.tensor([2.0, 0.0]), 2).tolist()
    [True, True, True, False, True, False]
    """
    rows = len(negative_counts)
    column = torch.arange(1, columns + 1, device=negative_counts.device).repeat_interleave(rows)
    positives = torch.ones(rows, dtype=torch.bool, device=negative_counts.device)
    return torch.cat([positives, column <= negative_counts.repeat(columns)])


def guide_false_negatives(guide: torch.Tensor, documents: int) -> torch.Tensor:
    """B × ``documents``: True where a row's own hard negative scores at least as high as its positive by the
    guide (a likely false negative, masked as GISTEmbed's guide does; only each row's own negatives have guide
    scores). ``guide`` is B × (1 + negative columns), NaN for a row without scores (nothing masked).

    >>> guide_false_negatives(torch.tensor([[0.5, 0.7, 0.2], [0.5, 0.1, 0.6]]), 6).int().tolist()
    [[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1]]
    """
    rows, columns = guide.shape[0], guide.shape[1] - 1
    flagged = guide[:, 1:] >= guide[:, :1]  # NaN compares False
    own = rows * torch.arange(1, columns + 1, device=guide.device) + torch.arange(rows, device=guide.device)[:, None]
    return torch.zeros(rows, documents, dtype=torch.bool, device=guide.device).scatter_(1, own, flagged)


class WeightedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """Multiple-negatives ranking (InfoNCE) with in-batch and hard negatives, weighted per row by its label.

    The label is the row's weight, or (weight, number of real negatives) when short negative lists were
    padded to the dataset's fixed columns: padding is then left out of every row's softmax, so an example
    with fewer negatives is trained on exactly the ones it has. Further label columns are a guide embedder's
    scores of the row's positive and negatives: ``distill_weight`` × ``distillation_kl`` is then added (a row of
    weight 0 is trained on the guide's soft labels alone, softmax at ``guide_scale``, 0 = ``scale``), and with
    ``guide_mask`` the negatives the guide scores at least as high as the positive leave that row's softmax.
    """

    def __init__(
        self,
        model,
        scale: float = 20.0,
        distill_weight: float = 1.0,
        guide_scale: float = 0.0,
        guide_mask: bool = False,
        **settings,
    ):
        super().__init__(model, scale=scale, **settings)
        self.distill_weight, self.guide_scale, self.guide_mask = distill_weight, guide_scale, guide_mask

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        queries = F.normalize(embeddings[0], dim=-1)
        documents = F.normalize(torch.cat(embeddings[1:]), dim=-1)
        if labels.dim() == 1:
            return weighted_info_nce(queries, documents, labels, self.scale)
        present = present_documents(labels[:, 1], len(embeddings) - 2)
        guide = labels[:, 2:] if labels.shape[1] > 2 else None
        kept = present
        if guide is not None and self.guide_mask:
            kept = present & ~guide_false_negatives(guide, len(present))
        loss = weighted_info_nce(queries, documents, labels[:, 0], self.scale, kept)
        if guide is not None and self.distill_weight > 0:
            kl = distillation_kl(queries, documents, guide, self.scale, present, self.guide_scale)
            loss = loss + self.distill_weight * kl
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "weights": "label column",
            "distill_weight": self.distill_weight,
            "guide_scale": self.guide_scale,
            "guide_mask": self.guide_mask,
        }


class WeightedTripletLoss(TripletLoss):
    """Triplet margin loss on cosine distance, weighted per (anchor, positive, negative) row by its label."""

    def __init__(self, model, triplet_margin: float):
        super().__init__(model, distance_metric=TripletDistanceMetric.COSINE, triplet_margin=triplet_margin)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        anchors, positives, negatives = (F.normalize(e, dim=-1) for e in embeddings)
        return triplet_loss(anchors, positives, negatives, labels, self.triplet_margin)

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance": "cosine", "margin": self.triplet_margin, "weights": "label column"}


def embed_texts(model, texts: Iterable[str]) -> torch.Tensor:
    """Differentiable, L2-normalised embeddings of ``texts`` (for computing a loss outside the trainer)."""
    texts = list(texts)
    features = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
    features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
    return F.normalize(model(features)["sentence_embedding"], dim=-1)
