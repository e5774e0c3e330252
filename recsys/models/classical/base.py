"""Classical cold-start recommenders (the evaluation's baselines): the interface, registry and helpers.

Classical cold-start baselines, run through the same protocol and code path as the meta-learner.

Every baseline implements :class:`Baseline`: ``fit`` on the training users' log, then ``score`` new
users from their support ratings alone (fold-in), returning one score per catalogue item as
:class:`~recsys.models.scorer.Scores` (the :class:`~recsys.models.scorer.Scorer` protocol). Baselines
whose scores are predicted ratings (``predicts_ratings``) enter the MAE/RMSE columns; the others
(popularity, item-kNN over implicit data...) rank only.

Conventions shared by all baselines:

* support lists are padded with item ``-1``; a user whose support is all padding gets the method's
  no-information prior (the global or item mean, ``mu + b_i`` for biased MF, popularity or the
  average training user for the ranking-only methods);
* the ranking-only methods (:class:`RankingBaseline`) see the data as implicit feedback: each
  training or support interaction they count as a positive is one interaction (value 1). Which ones
  count is their ``positives`` hyperparameter, tuned on validation users like the rest: ``all`` (every
  rating, whatever its value) or ``liked`` (ratings at or above ``threshold``, the relevance threshold
  the meta-learner's ranking path also learns from); with ``liked`` a new user is scored from its liked
  support items only. Implicit logs use ``all``;
* scores are not clipped and support items are not masked out: the caller clips predicted ratings
  to the scale and excludes the support items from catalogue rankings;
* all work is vectorised over users (sparse products and batched ``np.linalg.solve``).

:data:`BASELINES` maps each baseline's ``name`` to its class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.data.tasks import UserLog
from recsys.models.scorer import Scores


class Baseline(ABC):
    """fit on training users, score new users from their support (vectorised over users)."""

    name: ClassVar[str]
    predicts_ratings: ClassVar[bool] = True
    grid: ClassVar[dict[str, list[Any]]] = {}
    """Hyperparameter grid searched on validation users (small on purpose)."""
    defaults: ClassVar[dict[str, Any]] = {}
    """Default hyperparameters (sensible on MovieLens); keyword arguments override them."""

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyperparameters {sorted(unknown)}")
        self.params = {**self.defaults, **params}
        self.n_items = 0

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    @abstractmethod
    def fit(self, log: UserLog, n_items: int) -> Baseline:
        """Learn from the training users' interactions (catalogue indices 0..n_items-1)."""

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray, users: Any = None) -> Scores:
        """:class:`Scores` of new users given padded support lists ([n, S], -1 = padding): a rating
        predictor's ratings (its ranking is the same array), a ranker's ranking (ratings None).
        ``users`` is not read (the classical methods use no user features)."""
        scores = self._score(support_items, support_ratings)
        return Scores.of_ratings(scores) if self.predicts_ratings else Scores.of_ranking(scores)

    @abstractmethod
    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        """Scores [n_users, n_items] for new users given padded support lists ([n, S], -1 = padding)."""

    @classmethod
    def grid_for(cls, log: UserLog, implicit: bool) -> dict[str, list[Any]]:
        """The grid to search on a training log (a method may drop values the log cannot support)."""
        return dict(cls.grid)


POSITIVES = ("all", "liked")
"""What a ranking baseline counts as a positive interaction (see the module docstring)."""


class RankingBaseline(Baseline):
    """A ranking-only baseline that learns from positives: ``all`` interactions or the ``liked`` ones."""

    predicts_ratings = False
    positive_defaults: ClassVar[dict[str, Any]] = {"positives": "all", "threshold": 4.0}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.defaults = {**cls.positive_defaults, **cls.defaults}
        cls.grid = {**cls.grid, "positives": list(POSITIVES)}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["positives"] not in POSITIVES:
            raise ValueError(f"positives must be one of {POSITIVES}, got {self.params['positives']!r}")

    @classmethod
    def grid_for(cls, log: UserLog, implicit: bool) -> dict[str, list[Any]]:
        grid = dict(cls.grid)
        if implicit:  # every interaction is a positive
            grid.pop("positives")
        return grid

    @property
    def liked_only(self) -> bool:
        return self.params["positives"] == "liked"

    def positives(self, log: UserLog) -> UserLog:
        """The training interactions this baseline learns from."""
        return log.keep(log.ratings >= float(self.params["threshold"])) if self.liked_only else log

    def support(
        self, support_items: np.ndarray, support_ratings: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items, ratings, mask) of the support interactions that count as positives."""
        items, ratings, mask = _check_support(support_items, support_ratings, self.n_items)
        if self.liked_only:
            mask = mask & (ratings >= float(self.params["threshold"]))
        return items, ratings, mask


BASELINES: dict[str, type[Baseline]] = {}
"""Registered baselines by name."""


def register(cls: type[Baseline]) -> type[Baseline]:
    BASELINES[cls.name] = cls
    return cls


# ----------------------------------------------------------------------------------------------------
# helpers


def _check_support(
    support_items: np.ndarray, support_ratings: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, ratings, mask) as [n, S] arrays; padding (-1) is masked and its item set to 0."""
    items = np.asarray(support_items, dtype=np.int64)
    ratings = np.asarray(support_ratings, dtype=np.float64)
    if items.ndim != 2 or ratings.shape != items.shape:
        raise ValueError(
            f"support_items and support_ratings must be [n, S] arrays of one shape, got "
            f"{items.shape} and {ratings.shape}"
        )
    mask = items >= 0
    if (items >= n_items).any():
        raise ValueError(f"support item index out of range (catalogue has {n_items} items)")
    return np.where(mask, items, 0), np.where(mask, ratings, 0.0), mask


def _support_matrix(items: np.ndarray, mask: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Binary users x items CSR of the (masked) support lists; duplicates count once."""
    rows, cols = np.nonzero(mask)
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, items[rows, cols])), shape=(mask.shape[0], n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _binary_matrix(log: UserLog, n_items: int) -> sp.csr_matrix:
    """Binary users x items CSR (float32) of the training log; duplicates count once."""
    return log.to_csr(n_items, values="binary")


def _item_counts(log: UserLog, n_items: int) -> np.ndarray:
    return np.bincount(log.items, minlength=n_items).astype(np.float64)


def _rows(values: np.ndarray, n: int) -> np.ndarray:
    """The same score row for ``n`` users, as a writable float32 [n, n_items] array."""
    return np.tile(np.asarray(values, dtype=np.float32), (n, 1))


def _popularity_prior(counts: np.ndarray) -> np.ndarray:
    """Popularity scaled to [0, 1]: the ranking prior of users with no support."""
    top = counts.max() if len(counts) else 0.0
    return counts / top if top > 0 else counts


def _blas_single_thread():
    """Context limiting BLAS to one thread (implicit warns, and slows down, otherwise).

    ``implicit`` is imported first: importing it loads another BLAS (scipy's), which a limit set
    before the import would not cover.
    """
    import implicit.cpu.als  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")
