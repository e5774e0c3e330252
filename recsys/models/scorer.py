"""The one scorer protocol: every method (the meta-learner, each classical baseline, each ablation) scores
new users the same way.

``score(support_items, support_ratings, users=None) -> Scores``: support lists for a batch of ``n`` users,
padded ``[n, S]`` (item ``-1`` = padding, ``S`` may be 0), in; one score per catalogue item out. ``users``
says which users are asked about, for methods that read user features (the classical methods ignore it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Scores:
    """A method's scores of the whole catalogue for ``n`` users.

    ``ratings``: predicted ratings [n, n_items] (not clipped to the rating scale), or None for a
    ranking-only method. ``ranking``: the scores that order the catalogue [n, n_items], always present
    (a rating predictor without a separate ranking output ranks by its predicted ratings).
    """

    ratings: np.ndarray | None
    ranking: np.ndarray

    def __post_init__(self) -> None:
        if self.ranking.ndim != 2:
            raise ValueError(f"ranking scores must be [n, n_items], got shape {self.ranking.shape}")
        if self.ratings is not None and self.ratings.shape != self.ranking.shape:
            raise ValueError(
                f"ratings {self.ratings.shape} and ranking {self.ranking.shape} must have one shape"
            )

    @classmethod
    def of_ratings(cls, ratings: np.ndarray) -> Scores:
        """A rating predictor's scores: it ranks by its predicted ratings."""
        return cls(ratings, ratings)

    @classmethod
    def of_ranking(cls, ranking: np.ndarray) -> Scores:
        """A ranking-only method's scores."""
        return cls(None, ranking)


@runtime_checkable
class Scorer(Protocol):
    """What every evaluated method answers (see the module docstring)."""

    @property
    def predicts_ratings(self) -> bool:
        """Whether :attr:`Scores.ratings` is present (the method enters the MAE/RMSE columns)."""
        ...

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray, users: Any = None) -> Scores: ...
