"""Users as tasks: the interaction log grouped by user, support/query sampling and meta-batches of tasks.

A **task** is one user: a *support* set (the few ratings the model adapts to) and a *query* set (the
ratings it is judged on). Sampling is vectorised over all users with numpy (no Python loop over users
or interactions) and redone each epoch. Padded tensor batches for the model are built in :mod:`recsys.meta.batches`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from recsys.data.ids import IdIndex
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER


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

    def to_csr(self, n_items: int, values: Literal["rating", "ones", "binary"] = "rating"):
        """Users x items scipy CSR matrix of the ratings, of ones (a repeated interaction: repeated
        entries), or ``binary`` (float32, a repeated interaction counts once)."""
        import scipy.sparse as sp

        data = self.ratings if values == "rating" else np.ones_like(self.ratings)
        m = sp.csr_matrix((data, self.items, self.indptr), shape=(self.n_users, n_items))
        if values == "binary":
            m = m.astype(np.float32)
            m.sum_duplicates()
            m.data[:] = 1.0
        return m


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


def concat_tasks(*sets: TaskSet) -> TaskSet:
    """The tasks of ``sets`` in order, as one task set (supports and queries padded to the widest)."""

    def stack(arrays: list[np.ndarray]) -> np.ndarray:
        width = max((a.shape[1] for a in arrays), default=0)
        return np.concatenate(
            [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1) for a in arrays]
        ).astype(np.int64)

    return TaskSet(
        np.concatenate([t.users for t in sets]).astype(np.int64),
        stack([t.support for t in sets]),
        stack([t.query for t in sets]),
    )


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


def iterate_batches(
    tasks: TaskSet, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False
) -> Iterator[TaskSet]:
    """Meta-batches of tasks, shuffled when ``rng`` is given."""
    order = rng.permutation(len(tasks)) if rng is not None else np.arange(len(tasks))
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield tasks.take(order[start : start + batch_size])
