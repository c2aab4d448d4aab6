"""Keep what the base model knew: the tuned weights mixed back towards the base's, the mix chosen on validation.

Fine-tuning on a few hundred synthetic questions moves a model far from where it started; a point between the
base weights and the tuned ones often retrieves better than either (weight interpolation, as in WiSE-FT and model
soups). On techqa (``benchmarks/results/recipe-sweep-techqa-teacher-lr.json``, 47 teacher labels, three seeds),
learning rate 1e-4 mixed halfway back gained +0.012 to +0.015 nDCG@10 over the base, the default recipe +0.008 to
+0.011; against each other +0.004 (−0.002…+0.010), not significant at that size, so the default stays [1.0].

Example:
    >>> share, score = mix_with_base(model, base_state, validation_score, (0.5, 1.0), tuned_score)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)


def mixed_weights(base_state: dict, tuned_state: dict, share: float) -> dict:
    """``share`` × tuned + (1 − ``share``) × base for every floating-point tensor (others are the tuned ones)."""
    return {
        key: share * tuned + (1.0 - share) * base_state[key] if tuned.is_floating_point() else tuned
        for key, tuned in tuned_state.items()
    }


def mix_with_base(
    model, base_state: dict, score: Callable[[object], float], shares: Sequence[float], tuned_score: float
) -> tuple[float, float]:
    """Leave ``model`` holding the mix of its weights with the base's that scores best on validation among
    ``shares`` (the first one on a tie); returns that share and its score. Moving part of the way from the
    base keeps what the base knew (measured on techqa: see the ledger's recipe sweep)."""
    if not shares:
        raise ValueError("tuned_shares needs at least one share (1.0 keeps the tuned weights as they are)")
    tuned_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_share, best_score = shares[0], -math.inf
    for share in shares:
        if share == 1.0:
            candidate = tuned_score
        else:
            model.load_state_dict(mixed_weights(base_state, tuned_state, share))
            candidate = float(score(model))
        logger.info("tuned share %.2f: validation %.4f", share, candidate)
        if candidate > best_score:
            best_share, best_score = share, candidate
    if best_share != 1.0 or len(shares) > 1:
        model.load_state_dict(mixed_weights(base_state, tuned_state, best_share))
    return best_share, best_score
