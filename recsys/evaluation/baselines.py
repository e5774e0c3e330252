"""Classical cold-start baselines, run through the same protocol and code path as the meta-learner.

Every baseline implements :class:`Baseline`: ``fit`` on the training users' log, then ``score`` new
users from their support ratings alone (fold-in), returning one score per catalogue item. Baselines
whose scores are predicted ratings (``predicts_ratings``) enter the MAE/RMSE columns; the others
(popularity, item-kNN over implicit data...) rank only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from recsys.data.tasks import UserLog


class Baseline(ABC):
    """fit on training users, score new users from their support (vectorised over users)."""

    name: ClassVar[str]
    predicts_ratings: ClassVar[bool] = True
    grid: ClassVar[dict[str, list[Any]]] = {}
    """Hyperparameter grid searched on validation users (small on purpose)."""

    def __init__(self, **params: Any) -> None:
        self.params = params

    @abstractmethod
    def fit(self, log: UserLog, n_items: int) -> Baseline:
        """Learn from the training users' interactions (catalogue indices 0..n_items-1)."""

    @abstractmethod
    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        """Scores [n_users, n_items] for new users given padded support lists ([n, S], -1 = padding)."""
