"""Padded meta-batches of tasks as tensors: the support/query lists and the CSR bags of their items/users.

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
``rank_pos``           [T, P]      row of each ranking positive in the item bags (sampled softmax)
``candidate_logw``     [U]         log weight of each item in the sampled softmax ([0]: full catalogue)
=====================  ==========  ======================================================

With sampled negatives (:func:`build_batch`'s ``negatives``) the ranking softmax runs over the batch's
``U`` items instead of the catalogue: the items every task brings (supports, queries, positives: log
weight 0, always present) plus the sampled ones (log weight ``log(N / M)`` for ``M`` draws out of ``N``
items, the importance weight that keeps the estimate of the full normaliser unbiased).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

from recsys.data.tasks import TaskSet, UserLog
from recsys.features.encoders import EncodedTable
from recsys.features.space import FeatureSpace


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
    rank_pos: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))
    """[T, P] row of each ranking positive among ``batch_items`` (sampled softmax only, else [0, 0])."""
    candidate_logw: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    """[U] log importance weight of each batch item in the sampled softmax; [0]: the full catalogue."""

    @property
    def sampled(self) -> bool:
        """True when the ranking softmax runs over the batch's items plus sampled negatives."""
        return self.candidate_logw.numel() > 0

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
    negatives: np.ndarray | None = None,
    n_catalogue: int = 0,
) -> TaskBatch:
    """Assemble the tensors of a meta-batch: padded lists and the CSR bags of its distinct items/users.

    ``user_rows`` indexes ``space.user_table`` (defaults to the users' own feature rows);
    ``user_table`` overrides it with already-encoded users (new users at scoring time, row t = task t).
    ``extra_items`` are added to the distinct items (for example sampled negatives).
    ``rank_positives``: also list each user's relevant items outside the support (ratings at or above
    ``rank_threshold``; every interaction when None) for the ranking loss. ``folds``: tag each task
    with its user's fold (training batches). ``negatives``: items drawn uniformly (without replacement)
    from the ``n_catalogue`` items for a sampled ranking softmax over the batch's items (see the module
    docstring); needs ``rank_positives``.
    """
    s_idx = _trim(tasks.support)
    q_idx = _trim(tasks.query)
    s_mask, q_mask = s_idx >= 0, q_idx >= 0
    s_items = _gather(log.items, s_idx, 0)
    q_items = _gather(log.items, q_idx, 0)
    no_positives = (np.zeros((len(tasks), 0), np.int64), np.zeros((len(tasks), 0), bool))
    rank_items, rank_mask = _rank_positives(log, tasks, rank_threshold) if rank_positives else no_positives
    all_items = [s_items.ravel(), q_items.ravel()]
    if extra_items is not None:
        all_items.append(np.asarray(extra_items, dtype=np.int64).ravel())
    if negatives is not None:
        if not rank_positives:
            raise ValueError("sampled negatives need rank_positives=True")
        all_items.append(rank_items[rank_mask])
        forced = np.unique(np.concatenate(all_items))  # present whatever is drawn: weight 1
        all_items.append(np.asarray(negatives, dtype=np.int64).ravel())
    uniq, inverse = np.unique(np.concatenate(all_items), return_inverse=True)
    s_pos = inverse[: s_items.size].reshape(s_items.shape)
    q_pos = inverse[s_items.size : s_items.size + q_items.size].reshape(q_items.shape)
    rank_pos, logw = (
        _sampled_softmax(uniq, forced, rank_items, len(negatives), n_catalogue)
        if negatives is not None
        else (np.zeros((0, 0), np.int64), np.zeros(0))
    )
    item_bags = space.item_table.gather(uniq)
    if user_table is None:
        if user_rows is None:
            user_rows = space.user_rows(log.user_ids.gather(tasks.users))
        user_table = space.user_table.gather(user_rows)
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
        rank_pos=t(rank_pos.astype(np.int64)),
        candidate_logw=t(logw.astype(np.float32)),
    )


def _sampled_softmax(
    uniq: np.ndarray, forced: np.ndarray, rank_items: np.ndarray, n_drawn: int, n_catalogue: int
) -> tuple[np.ndarray, np.ndarray]:
    """(each ranking positive's row among the batch's items ``uniq``, each batch item's log importance
    weight): 0 for the items the tasks bring (``forced``), ``log(N / M)`` for the drawn ones."""
    logw = np.where(np.isin(uniq, forced), 0.0, np.log(n_catalogue / max(n_drawn, 1)))
    return np.searchsorted(uniq, rank_items), logw


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
