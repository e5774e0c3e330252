"""Biased matrix factorisation (explicit ratings) trained by ALS, with fold-in."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recsys.data.tasks import UserLog
from recsys.models.classical.base import Baseline, _check_support, register

RIDGE_CHUNK_VALUES = 2**24
"""The most Gram-matrix entries :func:`_ridge_rows` builds at once (16M float64: 128 MB)."""
OUTER_MAX_WIDTH = 12
"""The widest ridge rows (unknowns d) whose Gram matrices :func:`_ridge_rows` takes from one sparse product
against the observed columns' outer products; wider rows multiply their gathered features in batches
(:func:`_gram`), which is faster from about there: a biased MF's whole fit (15 iterations, 2 cores) with
8 / 16 / 32 factors took 13.5 / 37.1 / 86.3 s by the outer products against 16.6 / 31.6 / 59.5 s by
:func:`_gram` on a 4M-rating, 25k-user, 62k-item log; 2.9 / 13.7 s against 3.3 / 11.1 s with 8 / 32
factors on ML-1M."""


def _ridge_rows(
    counts: sp.csr_matrix, residuals: sp.csr_matrix, features: np.ndarray, reg: np.ndarray
) -> np.ndarray:
    """Ridge solutions, one per row of ``counts``: argmin_x sum_j (y_rj - f_j.x)^2 + x.diag(reg).x.

    ``counts``: rows x cols CSR of observation multiplicities (1 per rating); ``residuals``: the same
    pattern holding the targets ``y``; ``features``: [cols, d]. Normal equations are built for all rows
    at once with one sparse product against the features' outer products, then solved batched.
    """
    d = features.shape[1]
    out = np.zeros((counts.shape[0], d))
    # a row without observations solves diag(reg) x = 0: x = 0. Only the others are built and solved
    # (a large catalogue's long tail: 100k items with 7k observed cost 100k d x d systems before)
    rows = np.nonzero(np.diff(counts.indptr) > 0)[0]
    if len(rows) == 0:
        return out
    counts, residuals = counts[rows], residuals[rows]
    lengths = np.diff(counts.indptr)
    width = 1 << np.ceil(np.log2(lengths)).astype(np.int64)
    short = width < d
    same = _same_pattern(counts, residuals)
    if short.any() and same:
        # rows with fewer observations than unknowns: the m x m dual system instead of the d x d one
        out[rows[short]] = _ridge_short(counts, residuals, features, reg, np.nonzero(short)[0], width)
        rows = rows[~short]
        if len(rows) == 0:
            return out
        counts, residuals = counts[~short], residuals[~short]
    iu, ju = np.triu_indices(d)  # the Gram matrices are symmetric: build the upper triangle only
    # bounded memory: a 1M-item catalogue's Gram matrices at d = 33 take 8.7 GB at once, its items'
    # outer products 4.5 GB. Narrow rows and few observed columns: their outer products once, one sparse
    # product per block of rows; else each block multiplies its own rows' gathered features (:func:`_gram`)
    # the observed columns, sorted (np.unique sorts every observation: 16% of a 25M-rating fit)
    cols = np.flatnonzero(np.bincount(counts.indices, minlength=counts.shape[1]))
    outer = None
    if d <= OUTER_MAX_WIDTH and len(cols) * len(iu) <= RIDGE_CHUNK_VALUES:
        f = features[cols]
        counts, outer = counts[:, cols], f[:, iu] * f[:, ju]
    # the right-hand sides: from the features :func:`_gram` gathers anyway where it can, else one
    # sparse product (:func:`_spmm`)
    rhs = None if outer is None and same else _spmm(residuals, features)
    sym = np.empty((d, d), dtype=np.int64)
    sym[iu, ju] = sym[ju, iu] = np.arange(len(iu))
    sym = sym.ravel()
    chunk = max(1, RIDGE_CHUNK_VALUES // (d * d))
    for start in range(0, len(rows), chunk):
        sl = slice(start, start + chunk)
        if outer is not None:  # symmetric: each entry taken from the upper triangle (one gather)
            gram, b = np.take(_spmm(counts[sl], outer), sym, axis=1).reshape(-1, d, d), None
        else:
            gram, b = _gram(counts[sl], features, residuals[sl].data if rhs is None else None)
        b = rhs[sl] if b is None else b
        gram += np.diag(reg)
        out[rows[sl]] = np.linalg.solve(gram, b[:, :, None])[:, :, 0]
    return out


def _spmm(a: sp.csr_matrix, dense: np.ndarray) -> np.ndarray:
    """``a @ dense`` (float64) by torch's CSR product, which uses every intra-op thread (scipy's runs on
    one core: 16 of the 28.5 s an 8-factor MF took on a 4M-rating, 62k-item log)."""
    a = a.tocsr()
    if a.nnz == 0:
        return np.zeros((a.shape[0], dense.shape[1]))
    with warnings.catch_warnings():  # torch calls its CSR tensors beta; scipy built a valid one
        warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")
        t = torch.sparse_csr_tensor(
            torch.from_numpy(a.indptr.astype(np.int64)),
            torch.from_numpy(a.indices.astype(np.int64)),
            torch.from_numpy(a.data.astype(np.float64, copy=False)),
            size=a.shape,
        )
    return (t @ torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float64))).numpy()


def _same_pattern(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)


def _ridge_short(
    counts: sp.csr_matrix,
    residuals: sp.csr_matrix,
    features: np.ndarray,
    reg: np.ndarray,
    rows: np.ndarray,
    width: np.ndarray,
) -> np.ndarray:
    """:func:`_ridge_rows` for ``rows`` with m observations, fewer than the d unknowns, through the dual
    (Woodbury) form: with F [m, d] the observed features, C the multiplicities and s the summed targets,
    ``x = R^-1 F^T z`` where ``(C^-1 + F R^-1 F^T) z = C^-1 s`` (an m x m system; R = diag(reg)).
    Rows are stacked by ``width`` (m padded to a power of two: padding has F = 0, C = 1, so z = 0)."""
    d = features.shape[1]
    out = np.empty((len(rows), d))
    indptr, lengths = counts.indptr, np.diff(counts.indptr)
    inv_reg = 1.0 / reg
    for w in np.unique(width[rows]):
        which = np.nonzero(width[rows] == w)[0]
        step = max(1, RIDGE_CHUNK_VALUES // int(w * d))
        slots = np.arange(w)
        for s in range(0, len(which), step):
            k = which[s : s + step]
            r = rows[k]
            valid = slots[None, :] < lengths[r][:, None]
            pos = np.where(valid, indptr[r][:, None] + slots[None, :], 0)
            c = np.where(valid, counts.data[pos], 1.0)
            f = features[counts.indices[pos]] * valid[:, :, None]
            fr = f * inv_reg
            dual = np.matmul(fr, f.transpose(0, 2, 1))
            dual[:, slots, slots] += 1.0 / c
            z = np.linalg.solve(dual, (np.where(valid, residuals.data[pos], 0.0) / c)[:, :, None])
            out[k] = np.matmul(fr.transpose(0, 2, 1), z)[:, :, 0]
    return out


def _gram(
    counts: sp.csr_matrix, features: np.ndarray, targets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each row's Gram matrix ``sum_j counts[r, j] f_j f_j^T`` [n, d, d], for rows that all have
    observations: rows of similar length (padded, see ``width``) are stacked and multiplied as batches,
    about ``RIDGE_CHUNK_VALUES`` gathered values at a time. Gather and batched product run in torch:
    both use every intra-op thread (numpy's stacked ``matmul`` runs on one core; on a 25M-rating log
    this was 31 of the 44 s an ALS iteration took). With ``targets`` (aligned with ``counts.data``)
    also each row's ``sum_j targets[r, j] f_j`` [n, d] from the same gathered features, else None."""
    n, d = counts.shape[0], features.shape[1]
    indptr, lengths = counts.indptr, np.diff(counts.indptr)
    # padded width: the length rounded up to a quarter of its power of two (<= 25% padding, not 100%)
    quarter = 1 << np.maximum(0, np.floor(np.log2(np.maximum(lengths, 1))).astype(np.int64) - 2)
    width = -(-np.maximum(lengths, 1) // quarter) * quarter
    # padding gathers the appended zero row: nothing to mask when every multiplicity is 1
    table = torch.from_numpy(np.vstack([features, np.zeros((1, d))]))
    unit = bool(np.all(counts.data == 1.0))
    gram = np.empty((n, d, d))
    out = torch.from_numpy(gram)
    rhs = None if targets is None else np.empty((n, d))
    # one gather buffer and one product buffer for all blocks: a fresh 128-MB block each time costs
    # more in page faults than the gather itself (81 vs 32 ms a block)
    gathered = torch.empty(max(RIDGE_CHUNK_VALUES, int(width.max()) * d), dtype=torch.float64)
    products = torch.empty(max(1, RIDGE_CHUNK_VALUES // int(width.min() * d)) * d * d, dtype=torch.float64)
    for w in np.unique(width):
        rows = np.nonzero(width == w)[0]
        step = max(1, RIDGE_CHUNK_VALUES // int(w * d))
        slots = np.arange(w)
        for s in range(0, len(rows), step):
            r = rows[s : s + step]
            valid = slots[None, :] < lengths[r][:, None]
            pos = np.where(valid, indptr[r][:, None] + slots[None, :], 0)
            index = torch.from_numpy(np.where(valid, counts.indices[pos], len(features)).ravel())
            x = torch.index_select(table, 0, index, out=gathered[: index.numel() * d].view(-1, d))
            x = x.view(len(r), int(w), d)
            if not unit:
                x *= torch.from_numpy(np.sqrt(counts.data[pos]))[:, :, None]
            g = torch.bmm(x.mT, x, out=products[: len(r) * d * d].view(len(r), d, d))
            out[torch.from_numpy(r)] = g
            if rhs is not None:  # sum_j y_j f_j = sum_j (y_j / sqrt(c_j)) x_j
                y = np.where(valid, targets[pos] / (1.0 if unit else np.sqrt(counts.data[pos])), 0.0)
                rhs[r] = torch.bmm(x.mT, torch.from_numpy(y)[:, :, None])[:, :, 0].numpy()
    return gram, rhs


def _csr_pattern(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
) -> tuple[sp.csr_matrix, np.ndarray]:
    """The canonical CSR (sorted columns, duplicates summed) of the multiplicities of the observations
    ``(rows[i], cols[i])``, and each observation's slot in it: what ``sp.csr_matrix((ones, (rows,
    cols)))`` builds, plus the map that lets :func:`_with_targets` fill the same pattern in O(nnz)
    instead of a COO-to-CSR conversion per ALS half-step (5.5 s of each 44-s iteration on 25M)."""
    order = np.argsort(rows.astype(np.int64) * shape[1] + cols, kind="stable")
    r, c = rows[order], cols[order]
    new = np.ones(len(r), dtype=bool)
    new[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    slot = np.empty(len(r), dtype=np.int64)
    slot[order] = np.cumsum(new) - 1
    nnz = int(new.sum())
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(r[new], minlength=shape[0]), out=indptr[1:])
    data = np.bincount(slot, minlength=nnz).astype(np.float64)
    return sp.csr_matrix((data, c[new], indptr), shape=shape), slot


def _with_targets(pattern: sp.csr_matrix, slot: np.ndarray, values: np.ndarray) -> sp.csr_matrix:
    """``pattern``'s sparsity holding ``values`` summed per slot (see :func:`_csr_pattern`)."""
    data = np.bincount(slot, weights=values, minlength=pattern.nnz)
    return sp.csr_matrix((data, pattern.indices, pattern.indptr), shape=pattern.shape)


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
        shape = (log.n_users, n_items)
        # the observation patterns once; each iteration only sums its targets into their slots
        ui_counts, ui_slot = _csr_pattern(user, item, shape)
        iu_counts, iu_slot = _csr_pattern(item, user, shape[::-1])
        centred = ratings - self.mu

        rng = np.random.default_rng(int(p["seed"]))
        scale = float(p["init_scale"])
        self.item_bias = np.zeros(n_items)
        self.item_factors = rng.normal(0.0, scale, (n_items, k))
        user_bias = np.zeros(log.n_users)
        user_factors = rng.normal(0.0, scale, (log.n_users, k))

        for _ in range(int(p["iterations"])):
            # users given items: features [1, q_i], target r - mu - b_i
            target = _with_targets(ui_counts, ui_slot, centred - self.item_bias[item])
            sol = _ridge_rows(ui_counts, target, self._item_design(), self._reg)
            user_bias, user_factors = sol[:, 0], sol[:, 1:]
            # items given users: features [1, p_u], target r - mu - b_u
            target = _with_targets(iu_counts, iu_slot, centred - user_bias[user])
            design = np.hstack([np.ones((log.n_users, 1)), user_factors])
            sol = _ridge_rows(iu_counts, target, design, self._reg)
            self.item_bias, self.item_factors = sol[:, 0], sol[:, 1:]

        self.user_bias, self.user_factors = user_bias, user_factors
        self.item_counts = np.bincount(item, minlength=n_items)  # training ratings per item
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

    def _score(self, support_items: np.ndarray, support_ratings: np.ndarray) -> np.ndarray:
        bias, factors = self.fold_in(support_items, support_ratings)
        out = factors @ self.item_factors.T
        out += bias[:, None]
        out += self.mu + self.item_bias[None, :]
        return out.astype(np.float32)


class FittedMFs:
    """Biased MFs fitted on one log, one per parameter set, each fitted on first use and then shared:
    the ALS start of the item ids and the rating fallback (:mod:`recsys.post_training`) both ask for
    the 32-factor MF of the training users with the recipe's seed."""

    def __init__(self, log: UserLog, n_items: int, seed: int) -> None:
        self.log, self.n_items, self.seed = log, n_items, seed
        self._fits: dict[tuple[tuple[str, Any], ...], BiasedMF] = {}

    def of(self, log: UserLog, n_items: int, seed: int) -> bool:
        """Whether these are the MFs of ``log`` (the same object) with ``n_items`` items and ``seed``."""
        return self.log is log and (self.n_items, self.seed) == (n_items, seed)

    def get(self, **params: Any) -> BiasedMF:
        """The :class:`BiasedMF` with ``params`` (the others its defaults) fitted on the log."""
        key = tuple(sorted(params.items()))
        if key not in self._fits:
            self._fits[key] = BiasedMF(seed=self.seed, **params).fit(self.log, self.n_items)
        return self._fits[key]
