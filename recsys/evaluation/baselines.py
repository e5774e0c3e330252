"""Classical cold-start baselines, run through the same protocol and code path as the meta-learner.

Every baseline implements :class:`Baseline`: ``fit`` on the training users' log, then ``score`` new
users from their support ratings alone (fold-in), returning one score per catalogue item. Baselines
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

import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.data.tasks import UserLog
from recsys.models import trend


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

    @abstractmethod
    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
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
    m = log.to_csr(n_items, values="ones").astype(np.float32)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


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


# ----------------------------------------------------------------------------------------------------
# means and popularity


@register
class GlobalMean(Baseline):
    """The mean training rating, for every user and item (no fold-in)."""

    name = "global-mean"
    predicts_ratings = True

    def fit(self, log: UserLog, n_items: int) -> GlobalMean:
        self.n_items = n_items
        self.mu = float(np.mean(log.ratings, dtype=np.float64)) if len(log.ratings) else 0.0
        return self

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
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

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
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

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
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

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, _ = _check_support(support_items, support_ratings, self.n_items)
        return _rows(self.prior, items.shape[0])


# ----------------------------------------------------------------------------------------------------
# biased matrix factorisation (explicit ratings)


def _ridge_rows(
    counts: sp.csr_matrix, residuals: sp.csr_matrix, features: np.ndarray, reg: np.ndarray
) -> np.ndarray:
    """Ridge solutions, one per row of ``counts``: argmin_x sum_j (y_rj - f_j.x)^2 + x.diag(reg).x.

    ``counts``: rows x cols CSR of observation multiplicities (1 per rating); ``residuals``: the same
    pattern holding the targets ``y``; ``features``: [cols, d]. Normal equations are built for all rows
    at once with one sparse product against the features' outer products, then solved batched.
    """
    d = features.shape[1]
    iu, ju = np.triu_indices(d)  # the Gram matrices are symmetric: build the upper triangle only
    upper = np.asarray(counts @ (features[:, iu] * features[:, ju]))
    gram = np.empty((counts.shape[0], d, d))
    gram[:, iu, ju] = upper
    gram[:, ju, iu] = upper
    gram += np.diag(reg)
    rhs = np.asarray(residuals @ features)
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]


@register
class BiasedMF(Baseline):
    """Biased matrix factorisation ``r_ui = mu + b_u + b_i + p_u . q_i`` trained by ALS, with fold-in.

    Training alternates exact ridge solves of all users' ``(b_u, p_u)`` given the items, then all items'
    ``(b_i, q_i)`` given the users (L2 penalty ``reg`` on factors, ``bias_reg`` on biases, not scaled
    by counts). A new user is **folded in** with the same ridge solve over its support ratings, the
    item side fixed; with no support ratings its part is zero and it gets ``mu + b_i``. With a few
    support ratings most of the gain over the item mean comes from ``b_u``; when the support is the
    user's *first* ratings (temporal protocol) a larger ``bias_reg`` guards against early-rating drift.
    """

    name = "mf-als"
    predicts_ratings = True
    grid: ClassVar[dict[str, list[Any]]] = {
        "factors": [8, 32],
        "reg": [5.0, 20.0],
        "bias_reg": [5.0, 25.0],
    }
    defaults: ClassVar[dict[str, Any]] = {
        "factors": 32,
        "reg": 20.0,
        "bias_reg": 5.0,
        "iterations": 15,
        "init_scale": 0.1,
        "seed": 0,
    }

    def __init__(self, seed: int = 0, **params: Any) -> None:
        # ``seed`` is explicit in the signature so callers that inspect it (the runner) can pass theirs
        super().__init__(seed=seed, **params)

    def fit(self, log: UserLog, n_items: int) -> BiasedMF:
        p = self.params
        k = int(p["factors"])
        self.n_items = n_items
        ratings = log.ratings.astype(np.float64)
        self.mu = float(ratings.mean()) if len(ratings) else 0.0
        self._reg = np.array([float(p["bias_reg"])] + [float(p["reg"])] * k)

        user, item = log.user_of, log.items
        ones = np.ones(len(item))
        shape = (log.n_users, n_items)
        ui_counts = sp.csr_matrix((ones, (user, item)), shape=shape)
        iu_counts = ui_counts.T.tocsr()
        centred = ratings - self.mu

        rng = np.random.default_rng(int(p["seed"]))
        scale = float(p["init_scale"])
        self.item_bias = np.zeros(n_items)
        self.item_factors = rng.normal(0.0, scale, (n_items, k))
        user_bias = np.zeros(log.n_users)
        user_factors = rng.normal(0.0, scale, (log.n_users, k))

        for _ in range(int(p["iterations"])):
            # users given items: features [1, q_i], target r - mu - b_i
            target = sp.csr_matrix((centred - self.item_bias[item], (user, item)), shape=shape)
            sol = _ridge_rows(ui_counts, target, self._item_design(), self._reg)
            user_bias, user_factors = sol[:, 0], sol[:, 1:]
            # items given users: features [1, p_u], target r - mu - b_u
            target = sp.csr_matrix((centred - user_bias[user], (item, user)), shape=shape[::-1])
            design = np.hstack([np.ones((log.n_users, 1)), user_factors])
            sol = _ridge_rows(iu_counts, target, design, self._reg)
            self.item_bias, self.item_factors = sol[:, 0], sol[:, 1:]

        self.user_bias, self.user_factors = user_bias, user_factors
        return self

    def _item_design(self) -> np.ndarray:
        return np.hstack([np.ones((self.n_items, 1)), self.item_factors])

    def fold_in(
        self, support_items: np.ndarray, support_ratings: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(b_u [n], p_u [n, k]) of new users: ridge fit on their support ratings, items fixed."""
        items, ratings, mask = _check_support(support_items, support_ratings, self.n_items)
        design = self._item_design()[items] * mask[:, :, None]  # [n, S, d], zero on padding
        target = np.where(mask, ratings - self.mu - self.item_bias[items], 0.0)
        gram = np.einsum("nsd,nse->nde", design, design) + np.diag(self._reg)
        rhs = np.einsum("nsd,ns->nd", design, target)
        sol = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
        return sol[:, 0], sol[:, 1:]

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        bias, factors = self.fold_in(support_items, support_ratings)
        out = factors @ self.item_factors.T
        out += bias[:, None]
        out += self.mu + self.item_bias[None, :]
        return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# implicit-feedback methods (ranking only)


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

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
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

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
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

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        items, _, mask = self.support(support_items, support_ratings)
        x = _support_matrix(items, mask, self.n_items)
        out = np.asarray(x @ self.B, dtype=np.float32)
        empty = np.diff(x.indptr) == 0
        out[empty] = self.prior
        return out
