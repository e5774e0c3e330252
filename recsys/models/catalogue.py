"""A head's per-item buffers when items are appended to the catalogue after training.

Items added to a trained model have no training interactions. The evaluation path scores held-out
new items exactly so (they are catalogue items without interactions: their item-id field is the
unknown token), and the data-driven buffers a head takes from the training log give such items:

* ``item_offset`` (``item_offsets`` heads): the damped mean rating offset of no ratings, 0;
* ``trend`` (``trend_prior`` heads): the standardised prior of no interactions (``trend_fill``: see
  :func:`recsys.models.trend.no_interactions_value`; 0 when the model has no prior);
* the MF rating fallback (``path_weights`` heads built with it): what a biased MF gives an item without
  ratings, no factors (its design row ``[1, 0, ...]``) and the MF's global mean as base, and not seen
  (``mf_seen`` 0): the item keeps the head's own, content-based prediction;
* the implicit-ALS ranking path (``path_weights`` heads built with it): no factors (zero rows), which
  is what ALS gives an item without interactions;
* the classical item-item path (``path_weights`` heads built with it): no row and no column, as for
  the item-item matrix below;
* the item-item matrix (``item_item_blend`` heads, when active): no row and no column (zeros), which
  is what EASE and the cosine kNN give an item without interactions; the sparse top-k storage gets
  empty neighbour lists for the new rows (no existing list names a new item). The out-of-fold copies
  serve training only and are dropped.

:func:`grow_catalogue` pads exactly these, by the head's declared capabilities, and returns their names.
"""

from __future__ import annotations

import torch

from recsys.models.als_path import ALS_WIDTH
from recsys.models.heads import Head


def grow_catalogue(head: Head, n_new: int, *, trend_fill: float = 0.0) -> list[str]:
    """Pad ``head``'s per-item buffers for ``n_new`` items appended to the catalogue (see the module
    docstring); buffers sized 0 (switched off) stay so. Returns the names of the buffers padded."""
    caps = head.capabilities
    padded = []
    fills = (("item_offset", caps.item_offsets, 0.0), ("trend", caps.trend_prior, trend_fill))
    for name, declared, fill in fills:
        if not declared:  # a declared capability's buffer exists (the head contract)
            continue
        buffer = head.get_buffer(name)
        if buffer.numel():
            setattr(head, name, torch.cat([buffer, buffer.new_full((n_new,), float(fill))]))
            padded.append(name)
    if caps.path_weights and head.mf_design.numel():  # the MF fallback: no factors, its global mean
        rows = head.mf_design.new_zeros((n_new, head.mf_design.shape[1]))
        rows[:, 0] = 1.0
        head.mf_design = torch.cat([head.mf_design, rows])
        head.mf_base = torch.cat([head.mf_base, head.mf_base.new_full((n_new,), float(head.mf_mu))])
        head.mf_seen = torch.cat([head.mf_seen, head.mf_seen.new_zeros(n_new)])
        padded += ["mf_design", "mf_base", "mf_seen"]
    if caps.path_weights and head.als_factors.numel():  # the ALS path: no factors
        head.als_factors = torch.cat([head.als_factors, head.als_factors.new_zeros((n_new, ALS_WIDTH))])
        padded.append("als_factors")
    if caps.path_weights and head.cf_matrix.numel():  # the classical item-item path: no row or column
        old = head.cf_matrix
        head.cf_matrix = old.new_zeros((old.shape[0] + n_new, old.shape[1] + n_new))
        head.cf_matrix[: old.shape[0], : old.shape[1]] = old
        padded.append("cf_matrix")
    if caps.item_item_blend and head.item_item_active:
        padded += _grow_item_item(head, n_new)
    return padded


def _grow_item_item(head: Head, n_new: int) -> list[str]:
    """The blend's matrix with empty rows (and, dense, columns) for the new items."""
    if head.item_item_sparse:  # neighbour lists [n, k]: new rows hold no neighbour (value 0)
        idx, val = head.item_item_idx, head.item_item_val
        n, k = idx.shape[0] + n_new, idx.shape[1]
        head.item_item_idx = torch.cat([idx, idx.new_zeros((n_new, k))])
        head.item_item_val = torch.cat([val, val.new_zeros((n_new, k))])
        head.item_item_folds_idx = idx.new_zeros((0, n, k))  # training only (not saved)
        head.item_item_folds_val = val.new_zeros((0, n, k))
        return ["item_item_idx", "item_item_val"]
    old = head.item_item
    n = old.shape[0] + n_new
    grown = old.new_zeros((n, n))
    grown[: old.shape[0], : old.shape[1]] = old
    head.item_item = grown
    head.item_item_folds = old.new_zeros((0, n, n))  # training only (not saved)
    return ["item_item"]
