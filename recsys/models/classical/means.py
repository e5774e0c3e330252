"""Means, popularity and trending: the same scores for every user (no fold-in)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recsys.data.tasks import UserLog
from recsys.models import trend
from recsys.models.classical.base import (
    Baseline,
    RankingBaseline,
    _check_support,
    _item_counts,
    _rows,
    register,
)


@register
class GlobalMean(Baseline):
    """The mean training rating, for every user and item (no fold-in)."""

    name = "global-mean"
    predicts_ratings = True

    def fit(self, log: UserLog, n_items: int) -> GlobalMean:
        self.n_items = n_items
        self.mu = float(np.mean(log.ratings, dtype=np.float64)) if len(log.ratings) else 0.0
        return self

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, _ = _check_support(support_items, support_ratings, self.n_items)
        return np.full((items.shape[0], self.n_items), self.mu, dtype=np.float32)


@register
class ItemMean(Baseline):
    """Damped item mean ``(sum_i + beta * mu) / (n_i + beta)``, the same for every user (no fold-in).

    Items without training ratings get the global mean ``mu``.
    """

    name = "item-mean"
    predicts_ratings = True
    grid: ClassVar[dict[str, list[Any]]] = {"beta": [0.0, 5.0, 25.0]}
    defaults: ClassVar[dict[str, Any]] = {"beta": 5.0}

    def fit(self, log: UserLog, n_items: int) -> ItemMean:
        self.n_items = n_items
        beta = float(self.params["beta"])
        self.mu = float(np.mean(log.ratings, dtype=np.float64)) if len(log.ratings) else 0.0
        sums = np.bincount(log.items, weights=log.ratings.astype(np.float64), minlength=n_items)
        n = _item_counts(log, n_items)
        denom = n + beta
        self.means = np.where(denom > 0, (sums + beta * self.mu) / np.where(denom > 0, denom, 1.0), self.mu)
        return self

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, _ = _check_support(support_items, support_ratings, self.n_items)
        return _rows(self.means, items.shape[0])


@register
class Popularity(RankingBaseline):
    """Number of training positives per item, the same for every user (no fold-in)."""

    name = "popularity"

    def fit(self, log: UserLog, n_items: int) -> Popularity:
        self.n_items = n_items
        self.counts = _item_counts(self.positives(log), n_items)
        return self

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, _ = _check_support(support_items, support_ratings, self.n_items)
        return _rows(self.counts, items.shape[0])


@register
class Trending(RankingBaseline):
    """Recency-weighted popularity ("what is trending"), the same for every user (no fold-in).

    The prior the meta-learner's trend component uses (:func:`recsys.models.trend.trend_prior`): each
    training positive counts ``0.5 ** (age / half_life)``, its age in days before the log's last
    interaction; the half-life is chosen on validation users among the same candidates (7 to 365 days,
    or none: all-time popularity). Logs without timestamps have only the all-time candidate.
    """

    name = "trending"
    grid: ClassVar[dict[str, list[Any]]] = {"half_life": list(trend.HALF_LIVES_DAYS)}
    defaults: ClassVar[dict[str, Any]] = {"half_life": 30.0}

    @classmethod
    def grid_for(cls, log: UserLog, implicit: bool) -> dict[str, list[Any]]:
        grid = super().grid_for(log, implicit)
        grid["half_life"] = [h for h in grid["half_life"] if h in trend.candidates(log)]
        return grid

    def fit(self, log: UserLog, n_items: int) -> Trending:
        self.n_items = n_items
        half_life = self.params["half_life"] if log.times is not None else None
        self.prior = trend.trend_prior(self.positives(log), n_items, half_life)
        return self

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, _ = _check_support(support_items, support_ratings, self.n_items)
        return _rows(self.prior, items.shape[0])
