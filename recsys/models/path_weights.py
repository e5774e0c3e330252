"""Weights a head's paths get after training, chosen on validation users (not learned by gradient).

A head mixes in :class:`PathWeights` and calls :meth:`PathWeights._init_path_weights` in its
constructor; the buffers are saved with the model (files saved before a buffer existed load with its
default: :data:`recsys.persistence.OPTIONAL_WEIGHTS`):

* ``trend`` [n_catalogue] and ``trend_weight`` []: a time-decayed popularity prior
  (:mod:`recsys.models.trend`) added to the ranking scores; weight 0 (no prior) while training;
* ``rank_mix`` [2]: the weights of the ranking paths ``[support encoder, item-item]``, (1, 1) while
  training, so the model can fall back to either path alone where the other does not help;
* ``fold_in_weight`` []: the weight of the user's fold-in term in the rating prediction, 1 while
  training; 0 reduces the prediction to the item's baseline (global mean + item bias: a damped item mean).

The choices are made by :mod:`recsys.post_training` (``choose_rank_mix``, ``choose_fold_in_weight``,
``choose_trend``).
"""

from __future__ import annotations

import torch


class PathWeights:
    """The buffers and setters of the post-training path weights (a mixin of :class:`torch.nn.Module`)."""

    trend: torch.Tensor
    trend_weight: torch.Tensor
    rank_mix: torch.Tensor
    fold_in_weight: torch.Tensor

    def _init_path_weights(self, n_catalogue: int) -> None:
        self.register_buffer("trend", torch.zeros(n_catalogue))  # type: ignore[attr-defined]
        self.register_buffer("trend_weight", torch.zeros(()))  # type: ignore[attr-defined]
        self.register_buffer("rank_mix", torch.ones(2))  # type: ignore[attr-defined]
        self.register_buffer("fold_in_weight", torch.ones(()))  # type: ignore[attr-defined]

    def set_trend(self, prior: torch.Tensor, weight: float) -> None:
        self.trend.copy_(prior)
        self.trend_weight.fill_(weight)

    def set_fold_in_weight(self, weight: float) -> None:
        """Weight of the user's fold-in term in the rating prediction (see ``fold_in_weight``)."""
        self.fold_in_weight.fill_(weight)

    def set_rank_mix(self, encoder: float, item_item: float) -> None:
        """Weights of the support-encoder and item-item ranking paths (see ``rank_mix``)."""
        self.rank_mix.copy_(torch.tensor([encoder, item_item], dtype=self.rank_mix.dtype))
