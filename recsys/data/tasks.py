"""Users as tasks: the interaction log grouped by user, support/query sampling and padded batches.

A **task** is one user: a *support* set (the few ratings the model adapts to) and a *query* set (the
ratings it is judged on). Sampling is vectorised over all users with numpy (no Python loop over users
or interactions) and redone each epoch.

:class:`TaskBatch` tensor shapes, for ``T`` users with support lists padded to ``S`` and query lists
padded to ``Q``, over the ``U`` distinct items of the batch:

=====================  ==========  ======================================================
``support_items``      [T, S]      catalogue index (0 where padded)
``support_ratings``    [T, S]      float rating (1.0 for implicit feedback)
``support_mask``       [T, S]      bool, False on padding
``query_items``        [T, Q]      catalogue index
``query_ratings``      [T, Q]
``query_mask``         [T, Q]
``support_pos``        [T, S]      row of each support item in the batch's item bags (0..U-1)
``query_pos``          [T, Q]      row of each query item in the batch's item bags
``item_indices``       [nnz_i]     token ids of the U items' bags (U * F_item bags, CSR)
``item_offsets``       [U*F_i+1]   bag boundaries
``item_dense``         [U, D_i]    dense item fields
``user_indices``       [nnz_u]     token ids of the T users' bags (T * F_user bags, CSR)
``user_offsets``       [T*F_u+1]
``user_dense``         [T, D_u]
=====================  ==========  ======================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import polars as pl
import torch

from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.features.encoders import EncodedTable
from recsys.features.space import FeatureSpace, IdIndex


@dataclass
class UserLog:
    """Interactions in index space, grouped by user (CSR), in time order within a user when known."""

    user_ids: pl.Series
    """Raw id of each user row."""
    indptr: np.ndarray
    """[n_users + 1] start of each user's interactions."""
    items: np.ndarray
    """Catalogue index of each interaction."""
    ratings: np.ndarray
    """Rating (float32; 1.0 for implicit feedback)."""
    times: np.ndarray | None
    """Timestamp (int64) or None."""

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def user_of(self) -> np.ndarray:
        """User row of each interaction."""
        return np.repeat(np.arange(self.n_users), self.counts)

    @classmethod
    def from_frame(cls, interactions: pl.DataFrame, catalog: IdIndex) -> UserLog:
        """Group a canonical frame by user; interactions with items outside ``catalog`` are dropped."""
        frame = interactions.select(
            [USER, ITEM] + [c for c in (RATING, TIMESTAMP) if c in interactions.columns]
        ).with_columns(pl.Series("__item", catalog.lookup(interactions[ITEM])))
        frame = frame.filter(pl.col("__item") >= 0)
        order = [USER, TIMESTAMP] if TIMESTAMP in frame.columns else [USER]
        frame = frame.with_row_index("__order").sort([*order, "__order"])
        users = frame[USER].unique(maintain_order=True)
        counts = frame.group_by(USER, maintain_order=True).len()["len"].to_numpy()
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        ratings = (
            frame[RATING].to_numpy().astype(np.float32)
            if RATING in frame.columns
            else np.ones(frame.height, dtype=np.float32)
        )
        times = frame[TIMESTAMP].to_numpy().astype(np.int64) if TIMESTAMP in frame.columns else None
        return cls(users, indptr, frame["__item"].to_numpy().astype(np.int64), ratings, times)

    def positions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner, position): every interaction of user ``rows`` in order, as its index into ``rows``
        and its position in this log — without a loop over users."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = self.counts[rows]
        owner = np.repeat(np.arange(len(rows)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return owner, np.repeat(self.indptr[rows], counts) + within

    def subset(self, rows: np.ndarray) -> UserLog:
        """The log restricted to user ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(self.counts[rows], out=indptr[1:])
        _, take = self.positions(rows)
        return UserLog(
            self.user_ids.gather(rows) if len(rows) else self.user_ids.head(0),
            indptr,
            self.items[take],
            self.ratings[take],
            None if self.times is None else self.times[take],
        )

    def keep(self, mask: np.ndarray) -> UserLog:
        """The log with only the interactions where ``mask`` is true (every user row kept, maybe empty)."""
        mask = np.asarray(mask, dtype=bool)
        counts = np.bincount(self.user_of[mask], minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        times = None if self.times is None else self.times[mask]
        return UserLog(self.user_ids, indptr, self.items[mask], self.ratings[mask], times)

    def rows_of(self, user_ids: pl.Series | list | np.ndarray) -> np.ndarray:
        """User rows of raw ids (-1 where absent)."""
        return IdIndex(self.user_ids).lookup(user_ids)

    def to_csr(self, n_items: int, values: Literal["rating", "ones"] = "rating"):
        """Users x items scipy CSR matrix."""
        import scipy.sparse as sp

        data = self.ratings if values == "rating" else np.ones_like(self.ratings)
        return sp.csr_matrix((data, self.items, self.indptr), shape=(self.n_users, n_items))


def rank_within_users(log: UserLog, keys: np.ndarray, eligible: np.ndarray | None = None) -> np.ndarray:
    """Rank (0-based) of each interaction within its user by ascending ``keys``; ineligible -> large."""
    user = log.user_of
    big = np.iinfo(np.int64).max
    if eligible is not None:
        keys = np.where(eligible, keys, np.inf)
    order = np.lexsort((keys, user))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order)) - log.indptr[user[order]]
    if eligible is not None:
        ranks[~eligible] = big
    return ranks


@dataclass
class TaskSet:
    """Support and query sets of a list of users, as padded positions into a :class:`UserLog`."""

    users: np.ndarray
    """User row (in the log) of each task."""
    support: np.ndarray
    """[n_tasks, S] positions into the log's arrays, -1 where padded."""
    query: np.ndarray
    """[n_tasks, Q] positions into the log's arrays, -1 where padded."""

    def __len__(self) -> int:
        return len(self.users)

    @property
    def support_sizes(self) -> np.ndarray:
        return (self.support >= 0).sum(1)

    @property
    def query_sizes(self) -> np.ndarray:
        return (self.query >= 0).sum(1)

    def take(self, idx: np.ndarray) -> TaskSet:
        return TaskSet(self.users[idx], self.support[idx], self.query[idx])


def _pad_by_rank(
    log: UserLog, selected: np.ndarray, ranks: np.ndarray, task_of_user: np.ndarray, n_tasks: int
) -> np.ndarray:
    pos = np.nonzero(selected)[0]
    width = int(ranks[pos].max()) + 1 if len(pos) else 0
    out = np.full((n_tasks, width), -1, dtype=np.int64)
    out[task_of_user[log.user_of[pos]], ranks[pos]] = pos
    return out


def sample_tasks(
    log: UserLog,
    users: np.ndarray,
    rng: np.random.Generator,
    *,
    support_size: int | tuple[int, int] | np.ndarray,
    query_size: int | None,
    support_order: Literal["random", "temporal", "mixed"] = "random",
    query_order: Literal["random", "last"] = "random",
    min_query: int = 1,
    log_uniform: bool = False,
) -> TaskSet:
    """Draw a support and a query set for each user row in ``users`` (vectorised over users).

    ``support_size``: a fixed K, an inclusive range (lo, hi) drawn uniformly (``log_uniform``: uniformly
    in log K) per user, or one K per user. Each user keeps at least ``min_query`` ratings for the query; ``query_size=None`` puts all
    remaining ratings in the query. ``support_order='temporal'`` takes the first K ratings by time,
    ``'mixed'`` does so for a random half of the users; ``query_order='last'`` gives users whose support
    is temporal the latest remaining ratings as the query (random-support users keep a random one;
    a log without timestamps gets random queries), ``'random'`` a random subset for everyone.
    """
    users = np.asarray(users, dtype=np.int64)
    n_tasks = len(users)
    if n_tasks == 0:  # no user qualifies (e.g. none has K + 10 ratings): no tasks, not an error
        empty = np.zeros((0, 0), dtype=np.int64)
        return TaskSet(users, empty, empty.copy())
    counts = log.counts[users]
    if isinstance(support_size, tuple):
        lo, hi = support_size
        if log_uniform:
            k = np.floor(np.exp(rng.uniform(np.log(max(lo, 1)), np.log(hi + 1), size=n_tasks))).astype(
                np.int64
            )
            k = np.clip(k, lo, hi)
        else:
            k = rng.integers(lo, hi + 1, size=n_tasks)
    else:
        k = np.broadcast_to(np.asarray(support_size, dtype=np.int64), (n_tasks,)).copy()
    k = np.clip(k, 0, np.maximum(counts - min_query, 0))
    remaining = counts - k
    q = remaining if query_size is None else np.minimum(query_size, remaining)

    task_of_user = np.full(log.n_users, -1, dtype=np.int64)
    task_of_user[users] = np.arange(n_tasks)
    in_tasks = task_of_user[log.user_of] >= 0
    k_of = np.where(in_tasks, k[np.maximum(task_of_user[log.user_of], 0)], 0)
    q_of = np.where(in_tasks, q[np.maximum(task_of_user[log.user_of], 0)], 0)
    n = len(log.items)
    in_time = np.arange(n, dtype=np.float64)  # the log is in time order within a user
    if support_order == "temporal":
        keys, temporal_rows = in_time, np.ones(n, dtype=bool)
    elif support_order == "mixed":
        temporal_rows = (rng.random(log.n_users) < 0.5)[log.user_of]
        keys = np.where(temporal_rows, in_time, rng.random(n) * n)
    else:
        keys, temporal_rows = rng.random(n), np.zeros(n, dtype=bool)
    srank = rank_within_users(log, keys, in_tasks)
    is_support = in_tasks & (srank < k_of)
    rest = in_tasks & ~is_support
    if query_order == "last" and log.times is None:
        query_order = "random"  # "latest" means nothing without timestamps
    if query_order == "last" and temporal_rows.all():
        qkeys = -in_time
    elif query_order == "last":
        qkeys = np.where(temporal_rows, -in_time, rng.random(n) * n)
    else:
        qkeys = rng.random(n)
    qrank = rank_within_users(log, qkeys, rest)
    is_query = rest & (qrank < q_of)
    support = _pad_by_rank(log, is_support, srank, task_of_user, n_tasks)
    query = _pad_by_rank(log, is_query, qrank, task_of_user, n_tasks)
    return TaskSet(users, support, query)


@dataclass
class TaskBatch:
    """A padded meta-batch of tasks, ready for the model (see the module docstring for shapes)."""

    support_items: torch.Tensor
    support_ratings: torch.Tensor
    support_mask: torch.Tensor
    query_items: torch.Tensor
    query_ratings: torch.Tensor
    query_mask: torch.Tensor
    support_pos: torch.Tensor
    query_pos: torch.Tensor
    item_indices: torch.Tensor
    item_offsets: torch.Tensor
    item_dense: torch.Tensor
    user_indices: torch.Tensor
    user_offsets: torch.Tensor
    user_dense: torch.Tensor
    batch_items: torch.Tensor
    """[U] catalogue index of each distinct item in the batch."""
    rank_items: torch.Tensor
    """[T, P] the ranking loss's positives: the user's other relevant items (catalogue index)."""
    rank_mask: torch.Tensor
    """[T, P] bool, False on padding (P may be 0 when the ranking loss is off)."""
    task_fold: torch.Tensor
    """[T] the training user's fold (its log row mod 2) for out-of-fold components; -1 outside training."""

    @property
    def n_tasks(self) -> int:
        return self.support_items.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TaskBatch:
        return TaskBatch(
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )

    def pin_memory(self) -> TaskBatch:
        return TaskBatch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})


def _trim(padded: np.ndarray) -> np.ndarray:
    """Drop all-padding trailing columns (keep at least one column)."""
    width = int((padded >= 0).sum(1).max()) if padded.size else 0
    return padded[:, : max(1, width)] if padded.shape[1] else np.full((len(padded), 1), -1, np.int64)


def _gather(log_values: np.ndarray, idx: np.ndarray, fill: float | int) -> np.ndarray:
    safe = np.maximum(idx, 0)
    return np.where(idx >= 0, log_values[safe], fill)


def build_batch(
    log: UserLog,
    space: FeatureSpace,
    tasks: TaskSet,
    *,
    user_rows: np.ndarray | None = None,
    user_table: EncodedTable | None = None,
    extra_items: np.ndarray | None = None,
    rank_positives: bool = False,
    rank_threshold: float | None = None,
    folds: bool = False,
) -> TaskBatch:
    """Assemble the tensors of a meta-batch: padded lists and the CSR bags of its distinct items/users.

    ``user_rows`` indexes ``space.user_table`` (defaults to the users' own feature rows);
    ``user_table`` overrides it with already-encoded users (new users at scoring time, row t = task t).
    ``extra_items`` are added to the distinct items (for example sampled negatives).
    ``rank_positives``: also list each user's relevant items outside the support (ratings at or above
    ``rank_threshold``; every interaction when None) for the ranking loss. ``folds``: tag each task
    with its user's fold (training batches).
    """
    s_idx = _trim(tasks.support)
    q_idx = _trim(tasks.query)
    s_mask, q_mask = s_idx >= 0, q_idx >= 0
    s_items = _gather(log.items, s_idx, 0)
    q_items = _gather(log.items, q_idx, 0)
    all_items = [s_items.ravel(), q_items.ravel()]
    if extra_items is not None:
        all_items.append(np.asarray(extra_items, dtype=np.int64).ravel())
    uniq, inverse = np.unique(np.concatenate(all_items), return_inverse=True)
    s_pos = inverse[: s_items.size].reshape(s_items.shape)
    q_pos = inverse[s_items.size : s_items.size + q_items.size].reshape(q_items.shape)
    item_bags = space.item_table.gather(uniq)
    if user_table is None:
        if user_rows is None:
            user_rows = space.user_rows(log.user_ids.gather(tasks.users))
        user_table = space.user_table.gather(user_rows)
    rank_items, rank_mask = (
        _rank_positives(log, tasks, rank_threshold)
        if rank_positives
        else (
            np.zeros((len(tasks), 0), np.int64),
            np.zeros((len(tasks), 0), bool),
        )
    )
    t = torch.from_numpy
    return TaskBatch(
        support_items=t(s_items.astype(np.int64)),
        support_ratings=t(_gather(log.ratings, s_idx, 0.0).astype(np.float32)),
        support_mask=t(s_mask),
        query_items=t(q_items.astype(np.int64)),
        query_ratings=t(_gather(log.ratings, q_idx, 0.0).astype(np.float32)),
        query_mask=t(q_mask),
        support_pos=t(s_pos.astype(np.int64)),
        query_pos=t(q_pos.astype(np.int64)),
        item_indices=t(item_bags.indices),
        item_offsets=t(item_bags.offsets),
        item_dense=t(item_bags.dense),
        user_indices=t(user_table.indices),
        user_offsets=t(user_table.offsets),
        user_dense=t(user_table.dense),
        batch_items=t(uniq.astype(np.int64)),
        rank_items=t(rank_items),
        rank_mask=t(rank_mask),
        task_fold=t((tasks.users % 2) if folds else np.full(len(tasks), -1, dtype=np.int64)),
    )


def _rank_positives(log: UserLog, tasks: TaskSet, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Padded catalogue indices of each task user's interactions outside the support (liked ones)."""
    n = len(tasks)
    starts, ends = log.indptr[tasks.users], log.indptr[tasks.users + 1]
    lengths = ends - starts
    owner = np.repeat(np.arange(n), lengths)
    pos = np.repeat(starts, lengths) + (
        np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    )
    keep = np.ones(len(pos), dtype=bool)
    if threshold is not None:
        keep &= log.ratings[pos] >= threshold
    in_support = np.zeros(len(log.items), dtype=bool)
    s = tasks.support[tasks.support >= 0]
    in_support[s] = True
    keep &= ~in_support[pos]
    owner, pos = owner[keep], pos[keep]
    counts = np.bincount(owner, minlength=n)
    width = max(1, int(counts.max()) if n else 1)
    rank = np.arange(len(pos)) - np.repeat(np.cumsum(counts) - counts, counts)
    items = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=bool)
    items[owner, rank] = log.items[pos]
    mask[owner, rank] = True
    return items, mask


def iterate_batches(
    tasks: TaskSet, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False
) -> Iterator[TaskSet]:
    """Meta-batches of tasks, shuffled when ``rng`` is given."""
    order = rng.permutation(len(tasks)) if rng is not None else np.arange(len(tasks))
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield tasks.take(order[start : start + batch_size])
