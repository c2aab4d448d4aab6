"""The trainer's dataset rows: one (query, positive, negatives, weight[, guide scores]) example per row.

The trainer needs fixed columns, so short negative lists are padded and the label tells the loss how many
negatives are real (padding never enters a softmax) and, when a guide embedder scored the examples, its scores
of each row's candidates (see ``guide.py`` and ``losses.distillation_kl``).

Example:
    >>> list(training_dataset([TrainingExample("q", "p", ("n",), 0.5)])["label"])
    [[0.5, 1.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingExample:
    """One training row: a query, its positive passage, optional hard negatives, a loss weight."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    weight: float = 1.0
    guide_scores: tuple[float, ...] = ()  # a guide embedder's cosine with the positive, then each negative


def padded_negatives(examples: Sequence[TrainingExample]) -> list[list[str]]:
    """Every example's negatives, padded to the most any example has (the trainer needs fixed columns).

    A short list repeats its own negatives (an example with none, its positive): the loss leaves every padded
    slot out (see ``training_dataset``), so what fills it only has to be a text.
    """
    width = max((len(e.negatives) for e in examples), default=0)
    return [[(list(e.negatives) or [e.positive])[i % max(len(e.negatives), 1)] for i in range(width)] for e in examples]


def example_label(example: TrainingExample, width: int, guided: bool) -> list[float]:
    """What the loss reads of one row: (weight, number of real negatives), then, when any example of the data
    carries guide scores, its ``1 + width`` guide scores (NaN where it has none: no soft label)."""
    label = [float(example.weight), float(len(example.negatives))]
    if guided:
        scores = list(example.guide_scores) or [math.nan]
        label += scores + [math.nan] * (1 + width - len(scores))
    return label


def training_dataset(examples: Sequence[TrainingExample]):
    """The trainer's rows: anchor, positive, negative_1…n (padded, see ``padded_negatives``), and as label the
    (weight, number of real negatives[, guide scores]) the loss reads: padding never enters a softmax."""
    from datasets import Dataset

    negatives = padded_negatives(examples)
    width = len(negatives[0]) if negatives else 0
    columns: dict[str, list] = {"anchor": [e.query for e in examples], "positive": [e.positive for e in examples]}
    for i in range(width):
        columns[f"negative_{i + 1}"] = [row[i] for row in negatives]
    guided = any(e.guide_scores for e in examples)
    columns["label"] = [example_label(e, width, guided) for e in examples]
    return Dataset.from_dict(columns)
