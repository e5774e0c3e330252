"""The one top-N: which items a user may be recommended (:func:`exclusion_mask`) and the best of them
(:func:`top_n`). Used by the front (recommend, recommend_batch, recommend_frame), the evaluation's
catalogue metrics and validation."""

from __future__ import annotations

import numpy as np
import torch

TOP_N_CHUNK_VALUES = 2**23
"""The most scores :func:`top_n` ranks at once (8M: 64 MB per float64 copy); more rows go in chunks."""


def exclusion_mask(support_items: np.ndarray, n_items: int, extra: np.ndarray | None = None) -> np.ndarray:
    """Bool [n, n_items]: True at each user's support items (padded ``[n, S]``, -1 = padding), or'ed with
    ``extra`` (bool [n, n_items]) when given."""
    support_items = np.asarray(support_items)
    mask = np.zeros((len(support_items), n_items), dtype=bool)
    mask[exclusion_entries(support_items)] = True
    if extra is not None:
        mask |= extra
    return mask


def top_n(scores: np.ndarray, n: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores), each [n_users, min(n, n_items)]: the best items per row, best first.

    Ties are broken by item index (a constant scorer ranks in catalogue order). Excluded items
    (``exclude``, bool [n_users, n_items]) rank after every other item, so a row holds excluded items
    only where fewer than ``n`` items are left: callers that must not show them drop them with
    ``exclude``. The returned scores are ``scores`` at the returned indices.
    """
    chunk = max(1, TOP_N_CHUNK_VALUES // max(1, scores.shape[1]))
    if len(scores) > chunk:  # bounded memory: a copy and int64 indices of every row at once
        parts = [
            top_n(scores[i : i + chunk], n, None if exclude is None else exclude[i : i + chunk])
            for i in range(0, len(scores), chunk)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    s = np.array(scores, dtype=np.float64 if scores.dtype.kind != "f" else None)  # a copy
    if exclude is not None:
        np.copyto(s, -np.inf, where=exclude)  # (torch's masked_fill takes as long as the top-k itself)
    indices = top_n_masked(s, n)
    return indices, np.take_along_axis(scores, indices, axis=1)


def top_n_masked(scores: np.ndarray, n: int) -> np.ndarray:
    """The indices [n_users, min(n, n_items)] of :func:`top_n` for float ``scores`` in which the excluded
    items already score -inf (a scratch array the caller masked in place, e.g. with
    :func:`exclusion_entries`: no copy, no dense mask). ``scores`` is not changed; no chunking."""
    k = min(n, scores.shape[1])
    if k == 0 or len(scores) == 0:
        return np.zeros((len(scores), k), np.int64)
    # the k + 1 best per row with torch's multi-threaded top-k (4x numpy's argpartition at 41k items); a
    # row whose k-th and (k+1)-th best tie, or with a NaN among them, takes the exact path below
    vals, part = (t.numpy() for t in torch.topk(torch.from_numpy(scores), min(k + 1, scores.shape[1]), dim=1))
    exact = np.isnan(vals).any(axis=1)
    if vals.shape[1] > k:
        exact |= vals[:, k - 1] == vals[:, k]
    part, vals = part[:, :k], vals[:, :k]
    if exact.any():
        rows = np.nonzero(exact)[0]
        part[rows], vals[rows] = _exact_top(scores[rows], k, None)
    # stable order: by score descending, then by item index ascending
    return np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1)


def exclusion_entries(support_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, items) of each user's support items (padded ``[n, S]``, -1 = padding): the entries
    :func:`exclusion_mask` sets, for masking a scratch score array in place
    (``scores[rows, items] = -np.inf``) before :func:`top_n_masked`."""
    support_items = np.asarray(support_items)
    rows, cols = np.nonzero(support_items >= 0)
    return rows, support_items[rows, cols]


def _exact_top(scores: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The k best per row and their scores (unordered) by numpy's partition: rows with ties at the k-th
    place or NaN scores (NaN after every score, excluded items just before them)."""
    s = scores.astype(np.float64, copy=True)
    if exclude is not None:
        s[exclude] = -np.inf
    part = (
        np.argpartition(-s, kth=k - 1, axis=1)[:, :k]
        if k < s.shape[1]
        else np.tile(np.arange(s.shape[1]), (len(s), 1))
    )
    return part, np.take_along_axis(s, part, axis=1)
