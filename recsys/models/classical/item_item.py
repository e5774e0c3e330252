"""Item-item recommenders on binarised data (ranking only): item-kNN and EASE."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from recsys.data.tasks import UserLog
from recsys.models.classical.base import (
    RankingBaseline,
    _binary_matrix,
    _item_counts,
    _popularity_prior,
    _support_matrix,
    register,
)


@register
class ItemKNN(RankingBaseline):
    """Item-based kNN: ``implicit``'s ``CosineRecommender`` (K neighbours per item) on binarised data.

    A new user's scores are its binary support row times the item-item similarity matrix (row i holds
    item i's K nearest items, including itself), which is what ``recommend`` computes for a user row.
    A user with no support gets the training popularity (scaled to [0, 1]).
    """

    name = "item-knn"
    grid: ClassVar[dict[str, list[Any]]] = {"K": [50, 100, 200, 400, 800]}
    defaults: ClassVar[dict[str, Any]] = {"K": 200, "num_threads": 0}

    def fit(self, log: UserLog, n_items: int) -> ItemKNN:
        from implicit.nearest_neighbours import CosineRecommender

        self.n_items = n_items
        log = self.positives(log)
        x = _binary_matrix(log, n_items)
        model = CosineRecommender(K=int(self.params["K"]), num_threads=int(self.params["num_threads"]))
        with warnings.catch_warnings():
            # CosineRecommender hands all_pairs_knn a COO matrix, then warns about its own conversion
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(x, show_progress=False)
        self.similarity = model.similarity.tocsr().astype(np.float32)
        self.prior = _popularity_prior(_item_counts(log, n_items))
        return self

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, mask = self.support(support_items, support_ratings)
        x = _support_matrix(items, mask, self.n_items)
        out = np.asarray((x @ self.similarity).toarray(), dtype=np.float32)
        empty = np.diff(x.indptr) == 0
        out[empty] = self.prior
        return out


@register
class EASE(RankingBaseline):
    """EASE (Steck 2019): closed-form item-item model on binarised data.

    ``P = (X^T X + lambda I)^-1``, ``B = I - P diag(1 / diag(P))`` (zero diagonal); a new user's scores
    are ``x_u B`` for its binary support row ``x_u`` (fold-in needs no solve). A user with no support
    gets the training popularity (scaled to [0, 1]). Memory is dense ``n_items^2`` (float64 while
    inverting). With a handful of support items a strong ``lam`` (thousands) works best.
    """

    name = "ease"
    grid: ClassVar[dict[str, list[Any]]] = {"lam": [500.0, 2000.0, 8000.0, 32000.0]}
    defaults: ClassVar[dict[str, Any]] = {"lam": 8000.0}

    def fit(self, log: UserLog, n_items: int) -> EASE:
        self.n_items = n_items
        log = self.positives(log)
        x = _binary_matrix(log, n_items).astype(np.float64)
        gram = np.asarray((x.T @ x).toarray())
        gram[np.diag_indices(n_items)] += float(self.params["lam"])
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n_items)] = 0.0
        self.B = b.astype(np.float32)
        self.prior = _popularity_prior(_item_counts(log, n_items))
        return self

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, mask = self.support(support_items, support_ratings)
        x = _support_matrix(items, mask, self.n_items)
        out = np.asarray(x @ self.B, dtype=np.float32)
        empty = np.diff(x.indptr) == 0
        out[empty] = self.prior
        return out
