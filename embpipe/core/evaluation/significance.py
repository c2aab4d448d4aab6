"""Per-query comparison of two rankings: bootstrap confidence intervals, wins and losses.

Example:
    >>> interval = bootstrap_interval(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 1.0]), seed=0)
    >>> interval.mean
    0.3333333333333333
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DeltaInterval:
    """Mean per-query difference (after − before) with a percentile-bootstrap interval."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class WinLoss:
    """Queries where the second ranking scored higher, lower, or the same."""

    wins: int
    losses: int
    ties: int


def bootstrap_interval(
    before: np.ndarray, after: np.ndarray, samples: int = 2000, level: float = 0.95, seed: int = 42
) -> DeltaInterval:
    """Percentile bootstrap of the mean paired difference, resampling queries with replacement."""
    deltas = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if len(deltas) == 0:
        return DeltaInterval(0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = deltas[rng.integers(0, len(deltas), size=(samples, len(deltas)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return DeltaInterval(
        float(deltas.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))
    )


def sign_flip_p_value(before: np.ndarray, after: np.ndarray, samples: int = 10000, seed: int = 42) -> float:
    """Two-sided paired randomisation test of the mean difference: each query's difference flips sign at random."""
    deltas = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if len(deltas) == 0 or not deltas.any():
        return 1.0
    flips = np.random.default_rng(seed).choice([-1.0, 1.0], size=(samples, len(deltas)))
    extreme = np.abs((flips * deltas).mean(axis=1)) >= abs(deltas.mean()) - 1e-12
    return float((extreme.sum() + 1) / (samples + 1))


WORSE_P_VALUE = 0.05  # a lower score counts as worse only when a paired test this strict says the drop is real


def clearly_worse(before: np.ndarray, after: np.ndarray, p_value: float = WORSE_P_VALUE) -> bool:
    """Whether ``after`` scores lower than ``before`` on the same queries by more than chance explains: a lower
    mean and a paired sign-flip p-value below ``p_value``. On a few dozen queries a drop of a point or two is
    noise, and a rule that takes any drop as a loss keeps or blocks models by coin flip."""
    deltas = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    return bool(len(deltas)) and deltas.mean() < 0 and sign_flip_p_value(before, after) < p_value


def win_loss(before: np.ndarray, after: np.ndarray, tolerance: float = 1e-9) -> WinLoss:
    """Count queries improved, worsened and unchanged."""
    deltas = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    return WinLoss(
        int((deltas > tolerance).sum()), int((deltas < -tolerance).sum()), int((np.abs(deltas) <= tolerance).sum())
    )
