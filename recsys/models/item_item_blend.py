"""The item-item blend's storage inside a head: a dense matrix or a sparse top-k one, and the blend.

A head that blends a fixed item-item matrix ``B`` (:class:`recsys.models.heads.HybridHead`) mixes in
:class:`ItemItemBlend`, which keeps one of two storages as buffers saved with the model:

* dense (small catalogues): ``item_item`` [n_items, n_items]; training's out-of-fold copies
  ``item_item_folds`` [2, n_items, n_items] (not saved);
* sparse top-k (large catalogues): ``item_item_idx`` (int32) and ``item_item_val`` [n_items, k], row
  ``i`` holding item ``i``'s k strongest neighbours (empty slots: value 0); training's copies
  ``item_item_folds_idx`` / ``item_item_folds_val`` [2, n_items, k] (not saved). ``item_item`` is then
  empty [0, 0], as it is when the blend is off, so models saved before the sparse kind existed (dense
  ``item_item``, no sparse buffers) load unchanged.

The support items' side of the blend (:meth:`ItemItemBlend.item_item_support`) is dense rows
``ii_rows`` [..., S, n_items] for the dense storage, and the neighbour lists ``ii_idx`` / ``ii_val``
[..., S, k] for the sparse one; :func:`blend` turns one task's side into its [n_items] scores,
``sum_s weight_s * B[s, :]``, the sparse one as a ``scatter_add`` of the S * k neighbour entries (it runs
under ``torch.func.vmap``; no [S, n_items] rows are made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from recsys.config import ModelConfig

Side = dict[str, torch.Tensor]


def item_item_storage(cfg: ModelConfig, n_items: int) -> tuple[int, int]:
    """(catalogue size of the item-item blend, 0 when off; its sparse top-k width, 0 when dense) for a
    hybrid head over ``n_items`` items: dense up to ``item_item_dense_items``, sparse top-k above, off
    above ``item_item_max_items`` or when ``item_item`` is false."""
    hy = cfg.hybrid
    if not hy.item_item or n_items > hy.item_item_max_items:
        return 0, 0
    if n_items <= max(hy.item_item_dense_items, 1):
        return n_items, 0
    return n_items, max(1, min(hy.item_item_neighbours, n_items - 1))


class ItemItemBlend:
    """Mixin for a ``torch.nn.Module`` head: the item-item buffers and their hooks (see the module)."""

    item_item: torch.Tensor
    item_item_folds: torch.Tensor

    def _init_item_item(self, n_items: int, neighbours: int = 0) -> None:
        """Register the buffers: dense [n_items, n_items] when ``neighbours`` is 0, else sparse
        [n_items, neighbours] (``n_items`` 0: no blend)."""
        sparse = bool(neighbours and n_items)
        dense_n = 0 if sparse else n_items
        self.register_buffer("item_item", torch.zeros(dense_n, dense_n))
        self.register_buffer("item_item_folds", torch.zeros(0, dense_n, dense_n), persistent=False)
        self.ii_neighbours = neighbours if sparse else 0
        if sparse:
            self.register_buffer("item_item_idx", torch.zeros(n_items, neighbours, dtype=torch.int32))
            self.register_buffer("item_item_val", torch.zeros(n_items, neighbours))
            shape = (0, n_items, neighbours)
            self.register_buffer(
                "item_item_folds_idx", torch.zeros(shape, dtype=torch.int32), persistent=False
            )
            self.register_buffer("item_item_folds_val", torch.zeros(shape), persistent=False)

    @property
    def item_item_active(self) -> bool:
        return self.item_item.numel() > 0 or self.ii_neighbours > 0

    @property
    def item_item_catalogue(self) -> int:
        """The number of items the blend's matrix covers (0: no blend)."""
        return int(self.item_item_idx.shape[0]) if self.item_item_sparse else int(self.item_item.shape[0])

    @property
    def item_item_sparse(self) -> bool:
        """Whether the blend's matrix is stored as sparse top-k neighbour lists."""
        return self.ii_neighbours > 0

    def set_item_item(
        self,
        matrix: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        folds: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Dense storage: ``matrix`` [n, n], ``folds`` [2, n, n]. Sparse: ``(idx, val)`` [n, k] and
        ``(idx, val)`` [2, n, k]."""
        if not self.item_item_sparse:
            self.item_item.copy_(matrix)
            if folds is not None:
                self.item_item_folds = folds.to(self.item_item.device)
            return
        idx, val = matrix
        self.item_item_idx.copy_(idx)
        self.item_item_val.copy_(val)
        if folds is not None:
            device = self.item_item_val.device
            self.item_item_folds_idx = folds[0].to(device=device, dtype=torch.int32)
            self.item_item_folds_val = folds[1].to(device=device, dtype=self.item_item_val.dtype)

    def _uses_folds(self, fold: torch.Tensor | None, n_folds: int) -> bool:
        return fold is not None and n_folds > 0 and bool(self.training)

    def item_item_topk(
        self, items: torch.Tensor, fold: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse storage: the neighbour lists (idx int64, val) [..., k] of ``items`` [T, S] (-1:
        padding, read as item 0; training tasks with a ``fold`` [T] use their out-of-fold copy)."""
        safe = items.clamp_min(0)
        if self._uses_folds(fold, self.item_item_folds_idx.shape[0]):
            f = fold.clamp_min(0)[:, None]
            return self.item_item_folds_idx[f, safe].long(), self.item_item_folds_val[f, safe]
        return self.item_item_idx[safe].long(), self.item_item_val[safe]

    def item_item_rows(self, items: torch.Tensor, fold: torch.Tensor | None) -> torch.Tensor:
        """Dense rows of B [..., n_items] for a few ``items`` [T, S] (training tasks use their
        out-of-fold matrix); for the sparse storage, the top-k entries scattered into zeros."""
        if self.item_item_sparse:
            idx, val = self.item_item_topk(items, fold)
            n = self.item_item_idx.shape[0]
            return val.new_zeros(*idx.shape[:-1], n).scatter_add_(-1, idx, val)
        safe = items.clamp_min(0)
        if self._uses_folds(fold, self.item_item_folds.shape[0]):
            return self.item_item_folds[fold.clamp_min(0)[:, None], safe]
        return self.item_item[safe]

    def item_item_support(self, items: torch.Tensor, fold: torch.Tensor | None) -> Side:
        """The support side of the blend for support items [T, S]: ``ii_rows`` (dense) or
        ``ii_idx`` / ``ii_val`` (sparse); :func:`blend` reads either."""
        if self.item_item_sparse:
            idx, val = self.item_item_topk(items, fold)
            return {"ii_idx": idx, "ii_val": val}
        return {"ii_rows": self.item_item_rows(items, fold)}

    def item_item_neighbours(self, item: int, n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``item``'s ``n`` strongest neighbours by ``B[item, j]`` (indices, values), strongest
        first; never the item itself."""
        row = self.item_item_rows(torch.tensor([[item]]), None)[0, 0].clone()
        row[item] = -torch.inf
        values, indices = torch.topk(row, min(n, row.numel() - 1))
        keep = torch.isfinite(values) & (values != 0)
        return indices[keep], values[keep]


def blend(s_side: Side, weight: torch.Tensor, n_items: int) -> torch.Tensor | None:
    """One task's item-item scores [n_items], ``sum_s weight[s] * B[s, :]`` (``weight`` [S]; zero for
    padding), from the side :meth:`ItemItemBlend.item_item_support` made; None without one."""
    if "ii_rows" in s_side:
        return weight @ s_side["ii_rows"]
    if "ii_idx" not in s_side:
        return None
    contrib = (weight.unsqueeze(-1) * s_side["ii_val"]).reshape(-1)
    zeros = torch.zeros(n_items, dtype=contrib.dtype, device=contrib.device)
    # scatter_add, not index_add: under vmap, index_add with a per-task index loops over the tasks
    # (and so does its backward); scatter_add is one batched kernel (2x faster on a 32-task batch)
    return zeros.scatter_add(0, s_side["ii_idx"].reshape(-1), contrib)


def dense_rows(s_side: Side, n_items: int) -> torch.Tensor:
    """The support items' rows of B [..., S, n_items] from either side (sparse: the kept entries
    scattered into zeros); for a few items (explanations), never on the training path."""
    if "ii_rows" in s_side:
        return s_side["ii_rows"]
    idx, val = s_side["ii_idx"], s_side["ii_val"]
    return val.new_zeros(*idx.shape[:-1], n_items).scatter_add_(-1, idx, val)
