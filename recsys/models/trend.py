"""A time-decayed popularity prior ("what is trending") for the hybrid head's ranking scores.

New users join *now*, and what people rate now differs from what the log's early users rated (new
releases, seasonal items). The prior is ``log(1 + sum_j 0.5 ** (age_j / half_life))`` over each item's
training interactions ``j`` (``age`` = days before the log's last interaction; no half-life = plain
popularity), standardised over the catalogue. The hybrid head adds ``weight(n) * prior[item]`` to
the ranking scores of a user with ``n`` support ratings, ``weight(n) = weight * (n / REFERENCE_SIZE) **
-decay`` (:func:`user_weight`): with a decay above 0 a user who brought two ratings leans on the prior
more than one who brought twenty, whose own ratings say more. The half-life, the weight and the decay
are chosen on validation users after training (a weight of 0, no prior, is always a candidate, and so
is decay 0, one weight for every user), so a log where recency does not help keeps the model as
trained.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.data.tasks import UserLog

HALF_LIVES_DAYS: tuple[float | None, ...] = (None, 7.0, 30.0, 90.0, 365.0)
"""Candidate half-lives in days (None: all-time popularity)."""
WEIGHTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
"""Candidate weights of the standardised prior, in units of the ranking scores."""
DECAYS: tuple[float, ...] = (0.0, 0.5, 1.0)
"""Candidate decays of the weight with the support's size (0: the same weight for every user)."""
REFERENCE_SIZE = 5.0
"""The support size at which a prior's weight is its nominal weight, whatever the decay (about the
middle of the trained range 1-20 on a log scale), so :data:`WEIGHTS` means the same for every decay."""
SECONDS_PER_DAY = 86_400.0


def user_weight(weight: torch.Tensor, decay: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """The prior's weight for a user with ``n`` support ratings (0 counts as 1): ``weight * (n /
    REFERENCE_SIZE) ** -decay``. Plain tensor arithmetic: works under vmap."""
    return weight * (n.clamp_min(1.0) / REFERENCE_SIZE) ** (-decay)


def trend_prior(log: UserLog, n_items: int, half_life_days: float | None) -> np.ndarray:
    """The standardised prior [n_items] (float32) from ``log`` (timestamps in seconds).

    Logs without timestamps only support ``half_life_days=None``.
    """
    prior = _log_counts(log, n_items, half_life_days)
    spread = prior.std()
    prior = (prior - prior.mean()) / spread if spread > 0 else np.zeros_like(prior)
    return prior.astype(np.float32)


def no_interactions_value(log: UserLog, n_items: int, half_life_days: float | None) -> float:
    """The standardised prior of an item without training interactions (what :func:`trend_prior`
    gives such a catalogue item; an item added to the catalogue after training gets it)."""
    raw = _log_counts(log, n_items, half_life_days)
    spread = raw.std()
    return float(np.float32(-raw.mean() / spread)) if spread > 0 else 0.0


def _log_counts(log: UserLog, n_items: int, half_life_days: float | None) -> np.ndarray:
    """``log(1 + decayed interaction count)`` of every catalogue item, before standardising."""
    if half_life_days is None:
        weights = None
    else:
        if log.times is None:
            raise ValueError("a half-life needs timestamps")
        age_days = (log.times.max() - log.times).astype(np.float64) / SECONDS_PER_DAY
        weights = 0.5 ** (age_days / half_life_days)
    return np.log1p(np.bincount(log.items, weights=weights, minlength=n_items).astype(np.float64))


def candidates(log: UserLog) -> list[float | None]:
    """The half-lives that ``log`` supports (all-time popularity only, without timestamps)."""
    if log.times is None or len(log.times) == 0:
        return [None]
    return list(HALF_LIVES_DAYS)


def describe(half_life_days: float | None, weight: float, decay: float = 0.0) -> str:
    if weight == 0:
        return "off"
    span = "all-time" if half_life_days is None else f"half-life {half_life_days:g} days"
    scale = f" at {REFERENCE_SIZE:g} ratings, x (n / {REFERENCE_SIZE:g})^-{decay:g}" if decay else ""
    return f"{span}, weight {weight:g}{scale}"
