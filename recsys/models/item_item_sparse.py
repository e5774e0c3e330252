"""The sparse top-k item-item matrix: per item its k strongest neighbours, for catalogues too large
for a dense ``n_items x n_items`` EASE matrix (see :mod:`recsys.models.item_item` for the choice).

A :class:`TopK` holds ``idx`` (int32) and ``val`` (float32) of shape [n_items, k] (or [2, n_items, k]
for the two out-of-fold copies): row ``i`` lists item ``i``'s neighbours ``j`` and ``B[i, j]``; empty
slots have value 0 (and index 0), so they add nothing. A user's item-item scores are the sum of its
support items' rows, which is ``x @ B`` for the binary support row ``x`` with ``B`` the dense matrix
restricted to the kept entries. Memory is O(n_items * k).

Two kinds, both built from scipy sparse matrices and pruned to the top k per row:

* ``cosine``: item-kNN cosine similarities (``implicit``'s ``CosineRecommender``, k + 1 neighbours, the
  item itself dropped); time roughly linear in the interactions (sum over users of their length^2).
* ``ease-pop``: EASE (Steck 2019) on the ``p`` most popular items (one dense p x p inversion), added to
  the cosine matrix, each scaled to unit spread of users' scores, then pruned: popular items' rows
  get EASE's neighbours among popular items, every item keeps its cosine neighbours.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.data.tasks import UserLog


@dataclass
class TopK:
    """Per item (row) its k strongest neighbours: ``idx`` int32 and ``val`` float32, [..., n_items, k]."""

    idx: np.ndarray
    val: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.idx.shape)

    def to_csr(self) -> sp.csr_matrix:
        """The [n_items, n_items] sparse matrix of one (2-D) top-k matrix; empty slots dropped."""
        n, k = self.idx.shape
        m = sp.csr_matrix(
            (self.val.ravel(), (np.repeat(np.arange(n), k), self.idx.ravel())), shape=(n, n), dtype=np.float32
        )
        m.eliminate_zeros()
        return m

    def scaled(self, factor: float) -> TopK:
        return TopK(self.idx, (self.val * np.float32(factor)).astype(np.float32))


TOPK_CHUNK_ENTRIES = 2**24
"""About the most stored entries :func:`topk_rows` sorts at once (a block of rows at a time)."""


def topk_rows(m: sp.spmatrix, k: int) -> TopK:
    """The ``k`` largest entries of every row of ``m`` (its diagonal dropped), as a :class:`TopK`; rows are
    sorted a block at a time (about :data:`TOPK_CHUNK_ENTRIES` entries), so the temporaries stay bounded
    on a 1M-item catalogue."""
    m = sp.csr_matrix(m)
    m.sum_duplicates()
    n = m.shape[0]
    idx = np.zeros((n, k), dtype=np.int32)
    val = np.zeros((n, k), dtype=np.float32)
    per_row = max(1, m.nnz // max(n, 1))
    step = max(1, TOPK_CHUNK_ENTRIES // per_row)
    for start in range(0, n, step):
        topk_block(m[start : start + step].tocoo(), start, k, idx, val)
    return TopK(idx, val)


def topk_block(
    coo: sp.coo_matrix, offset: int, k: int, idx: np.ndarray, val: np.ndarray, magnitude: bool = False
) -> None:
    """Fill rows ``offset + coo.row`` of ``idx`` / ``val`` with each row's k largest off-diagonal entries
    (``magnitude``: largest ``|value|``, signs kept)."""
    keep = (coo.row + offset != coo.col) & (coo.data != 0)
    rows, cols, vals = coo.row[keep], coo.col[keep], coo.data[keep].astype(np.float32)
    order = np.lexsort((-np.abs(vals) if magnitude else -vals, rows))  # by row, then strongest first
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(rows, minlength=coo.shape[0])
    rank = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]
    kept = rank < k
    idx[offset + rows[kept], rank[kept]] = cols[kept]
    val[offset + rows[kept], rank[kept]] = vals[kept]


def cosine(log: UserLog, n_items: int, k: int) -> sp.csr_matrix:
    """Cosine item-kNN similarities of the binarised log, k + 1 per row (the item itself among them)."""
    from implicit.nearest_neighbours import CosineRecommender  # lazy: implicit is a heavy import

    x = log.to_csr(n_items, values="binary")
    model = CosineRecommender(K=k + 1, num_threads=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(x, show_progress=False)
    return model.similarity.tocsr().astype(np.float32)


def popular_ease(log: UserLog, n_items: int, p: int, lam: float, k: int) -> sp.csr_matrix:
    """EASE on the ``p`` most popular items of ``log`` (ties: lower index), each row pruned to its k
    largest entries, embedded in the [n_items, n_items] catalogue (other rows and columns empty)."""
    counts = np.bincount(log.items, minlength=n_items)
    pop = np.sort(np.argsort(-counts, kind="stable")[: min(p, n_items)])
    x = log.to_csr(n_items, values="binary")[:, pop].astype(np.float64)
    gram = np.asarray((x.T @ x).toarray())
    gram[np.diag_indices(len(pop))] += lam
    inv = np.linalg.inv(gram)
    del gram
    inv /= np.diag(inv).copy()[None, :]  # inv is now -B: in place, one p x p array at a time
    np.fill_diagonal(inv, np.inf)  # never a neighbour of itself
    kk = min(k, len(pop) - 1)
    cols = np.argpartition(inv, kk, axis=1)[:, :kk] if kk > 0 else np.zeros((len(pop), 0), np.int64)
    vals = -np.take_along_axis(inv, cols, axis=1).astype(np.float32)
    rows = np.repeat(pop, cols.shape[1])
    return sp.csr_matrix((vals.ravel(), (rows, pop[cols.ravel()])), shape=(n_items, n_items))


def support_rows(support: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Binary users x items CSR of padded support lists [U, S] (-1: padding)."""
    rows, cols = np.nonzero(support >= 0)
    m = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, support[rows, cols])), shape=(support.shape[0], n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def spread(m: sp.spmatrix, support: np.ndarray | None) -> float:
    """Standard deviation of users' item-item scores ``x @ m`` over the whole catalogue (zeros included),
    computed from the sparse product; without support rows, of the matrix's absolute column sums."""
    n = m.shape[0]
    if support is None or len(support) == 0:
        return float(np.asarray(abs(m).sum(0)).ravel().std()) or 1.0
    y = support_rows(support, n) @ m
    size = float(y.shape[0]) * n
    data = np.asarray(y.data, dtype=np.float64)
    mean = data.sum() / size
    return float(np.sqrt(max((data**2).sum() / size - mean**2, 0.0))) or 1.0


def scores_dense(m: sp.spmatrix, support: np.ndarray) -> np.ndarray:
    """Users' item-item scores [U, n_items] (float32) for a chunk of padded support lists."""
    return np.asarray((support_rows(support, m.shape[0]) @ m).toarray(), dtype=np.float32)
