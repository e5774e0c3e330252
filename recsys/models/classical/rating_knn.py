"""The classical rating item-kNN (Koren, KDD 2008's neighbourhood model with baselines), folded in.

A new user's predicted rating of item ``i`` is ``base_i + u + k_ui``: the damped item mean, the
support's mean residual ``u`` (damped by one pseudo-rating at 0) and the similarity-weighted mean of the
support's residuals over ``i``'s neighbours, ``k_ui`` (:mod:`recsys.models.rating_knn`, whose lists and
term the meta-learner's rating combiner also uses: this baseline is that term alone, on its own
baseline, so the comparison says what the rest of the model adds).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.data.tasks import UserLog
from recsys.models import rating_knn
from recsys.models.classical.base import Baseline, _check_support, register


@register
class RatingKNN(Baseline):
    """Rating item-kNN with baselines: ``base_i + u + sum_j s_ji d_j / (sum_j |s_ji| + damping)``."""

    name = "rating-knn"
    predicts_ratings = True
    grid: ClassVar[dict[str, list[Any]]] = {"neighbours": [20, 50, 100]}
    defaults: ClassVar[dict[str, Any]] = {"neighbours": rating_knn.NEIGHBOURS}

    def fit(self, log: UserLog, n_items: int) -> RatingKNN:
        self.n_items = n_items
        r = log.ratings.astype(np.float64)
        mu = float(r.mean()) if len(r) else 0.0
        counts = np.bincount(log.items, minlength=n_items)
        offset = np.bincount(log.items, weights=r - mu, minlength=n_items) / (
            counts + rating_knn.ITEM_DAMPING
        )
        self.base = mu + offset
        lists = rating_knn.fit_rating_knn(log, n_items, int(self.params["neighbours"]))
        self.similar = lists.to_csr().astype(np.float64)  # row j: item j's neighbours i, s_ji
        return self

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, ratings, mask = _check_support(support_items, support_ratings, self.n_items)
        res = (ratings - self.base[items]) * mask
        user = res.sum(1) / (mask.sum(1) + 1.0)
        d = (res - user[:, None]) * mask
        n = len(items)
        rows = np.repeat(np.arange(n), items.shape[1])
        shape = (n, self.n_items)
        residuals = sp.csr_matrix((d.ravel(), (rows, items.ravel())), shape=shape)
        rated = sp.csr_matrix((mask.ravel().astype(np.float64), (rows, items.ravel())), shape=shape)
        num = (residuals @ self.similar).toarray()
        den = (rated @ abs(self.similar)).toarray()
        return (self.base[None, :] + user[:, None] + num / (den + rating_knn.DAMPING)).astype(np.float32)
