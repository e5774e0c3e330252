"""A classical item-item fold-in (EASE or item-kNN on the liked ratings) as a ranking path of a head,
its matrix and weight chosen after training.

The ``ease`` and ``item-knn`` baselines score a new user as ``sum_s C[s, i]`` over the support items
that count as positives (the liked ones, rated at or above the relevance threshold, or every one), with
``C`` fitted on the training users' positives. A head that mixes in :class:`ClassicalItemItem` keeps
``C`` as a buffer saved with the model and adds ``cf_weight * sum_s C[s, i]`` to its ranking scores:

* ``cf_matrix`` [n_catalogue, n_catalogue]: ``C`` (dense; zero rows and columns for items without
  training interactions, which EASE and the cosine kNN give them); [0, 0] until a matrix is set and
  again where validation chose the path off, so a model without it saves no matrix;
* ``cf_threshold`` []: the support ratings that count (at or above it;
  :data:`recsys.models.als_path.EVERY`: every one);
* ``cf_weight`` [N_BANDS]: the path's weight in the ranking scores, one per band of the support's size
  (:mod:`recsys.models.support_bands`); 0 (off) while training and in the bands where validation users
  show it does not help.

It differs from the item-item blend (:mod:`recsys.models.item_item_blend`), whose matrix the network
learns to weigh per user and rating during training: this path is the classical fold-in itself, so where
a liked-only estimator ranks better than the learned paths (a time-shifted log, a small one) the model
can move towards it. Dense catalogues only (``model.hybrid.item_item_dense_items``); a head built
without it (larger catalogues, or ``model.hybrid.classical_item_item = false``: ``cf_enabled`` false)
never fills it. The
matrix and weight are chosen by :func:`recsys.post_training.choose_classical_item_item`.
"""

from __future__ import annotations

import torch

from recsys.models.als_path import EVERY
from recsys.models.support_bands import N_BANDS, band_weight


class ClassicalItemItem:
    """The buffers and hooks of the classical item-item path (a mixin of :class:`torch.nn.Module`)."""

    cf_matrix: torch.Tensor
    cf_threshold: torch.Tensor
    cf_weight: torch.Tensor

    def _init_cf_path(self, on: bool) -> None:
        """Register the buffers (the matrix empty until one is set); ``on``: the head may take one."""
        self.cf_enabled = on
        reg = self.register_buffer  # type: ignore[attr-defined]
        reg("cf_matrix", torch.zeros(0, 0))
        reg("cf_threshold", torch.full((), EVERY))
        reg("cf_weight", torch.zeros(N_BANDS))

    @property
    def cf_active(self) -> bool:
        """Whether the ranking scores mix in the classical item-item path (matrix kept, a band's weight
        not 0)."""
        return bool(self.cf_matrix.numel()) and bool(self.cf_weight.any())

    def set_cf(self, matrix: torch.Tensor, threshold: float | None) -> None:
        """The matrix [n, n] fitted on the training users and the rating threshold of the support's
        positives (None: every rating)."""
        self.cf_matrix = matrix.to(self.cf_weight)
        self.cf_threshold.fill_(EVERY if threshold is None else threshold)

    def set_cf_weight(self, weight: float | list[float]) -> None:
        """The path's weight in the ranking scores (0: off): one for every band, or one per band."""
        self.cf_weight.copy_(torch.as_tensor(weight, dtype=self.cf_weight.dtype))

    def drop_cf(self) -> None:
        """The path off, its matrix dropped (nothing of it saved with the model)."""
        self.cf_matrix = self.cf_weight.new_zeros(0, 0)
        self.cf_weight.zero_()

    def cf_fold_in(self, s_side: dict, sy: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"fast.cf": sum_s C[s, :], "fast.cf_w": weight}`` over one user's positive support items
        (mask ``m``) and the weight of the support's size band; empty while the path is off."""
        if "idx" not in s_side or not self.cf_active:
            return {}
        w = m * (sy >= self.cf_threshold).to(m.dtype)
        return {"fast.cf": w @ self.cf_matrix[s_side["idx"]], "fast.cf_w": band_weight(self.cf_weight, m)}

    def cf_part(self, p: dict, side: dict) -> dict[str, torch.Tensor]:
        """``{"classical_item_item": weight * sum_s C[s, i]}``, the path's ranking term (empty while off)."""
        if "fast.cf" not in p or "idx" not in side:
            return {}
        return {"classical_item_item": p["fast.cf_w"] * p["fast.cf"][side["idx"]]}
