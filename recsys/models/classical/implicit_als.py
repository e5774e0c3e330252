"""Implicit-feedback ALS (ranking only), from the ``implicit`` library."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recsys.data.tasks import UserLog
from recsys.models.classical.base import (
    RankingBaseline,
    _binary_matrix,
    _blas_single_thread,
    _support_matrix,
    register,
)


@register
class ImplicitALS(RankingBaseline):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) from the ``implicit`` library, CPU.

    Trained on the binarised user x item matrix. ``implicit`` gives observed entries confidence
    ``alpha * x`` (not ``1 + alpha * x``), so ``alpha=1`` weighs observed and missing entries alike (a
    ridge factorisation of the 0/1 matrix) and ``alpha > 1`` is Hu et al.'s confidence weighting. The
    penalty ``regularization`` is not scaled by counts: too large a value (about 60 on MovieLens-100k)
    collapses all factors to zero. A new user is folded in as ``recommend(..., recalculate_user=True)``
    does: ``model.recalculate_user`` solves its factor exactly (least squares against the fixed item
    factors, batched over users); scores are that factor times the item factors. A user with no
    support gets the average training user's factor.
    """

    name = "implicit-als"
    grid: ClassVar[dict[str, list[Any]]] = {
        "factors": [32, 64],
        "regularization": [5.0, 20.0],
        "alpha": [1.0, 4.0],
    }
    defaults: ClassVar[dict[str, Any]] = {
        "factors": 64,
        "regularization": 20.0,
        "alpha": 1.0,
        "iterations": 15,
        "seed": 0,
        "num_threads": 0,
    }

    def __init__(self, seed: int = 0, **params: Any) -> None:
        # ``seed`` is explicit in the signature so callers that inspect it (the runner) can pass theirs
        super().__init__(seed=seed, **params)

    def _model(self):
        from implicit.cpu.als import AlternatingLeastSquares  # construct under _blas_single_thread

        p = self.params
        return AlternatingLeastSquares(
            factors=int(p["factors"]),
            regularization=float(p["regularization"]),
            alpha=float(p["alpha"]),
            iterations=int(p["iterations"]),
            random_state=int(p["seed"]),
            num_threads=int(p["num_threads"]),
        )

    def fit(self, log: UserLog, n_items: int) -> ImplicitALS:
        self.n_items = n_items
        x = _binary_matrix(self.positives(log), n_items)
        # Per-user and per-item solves are independent, so results do not depend on num_threads.
        with _blas_single_thread():
            self.model = self._model()
            self.model.fit(x, show_progress=False)
        self.item_factors = np.asarray(self.model.item_factors, dtype=np.float32)
        users = np.asarray(self.model.user_factors, dtype=np.float32)
        self.mean_user = users.mean(0) if len(users) else np.zeros(self.item_factors.shape[1], np.float32)
        return self

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, mask = self.support(support_items, support_ratings)
        x = _support_matrix(items, mask, self.n_items)
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, self.n_items), dtype=np.float32)
        with _blas_single_thread():
            users = self.model.recalculate_user(np.arange(n), x)
        users = np.asarray(users, dtype=np.float32).reshape(n, -1)
        empty = np.diff(x.indptr) == 0
        users[empty] = self.mean_user
        return np.ascontiguousarray(users @ self.item_factors.T, dtype=np.float32)
