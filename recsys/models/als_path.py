"""The implicit-ALS fold-in as a ranking path of a head, its weight chosen after training.

Implicit-feedback ALS (Hu, Koren & Volinsky 2008) folds a new user in by one exact least-squares solve
against fixed item factors ``Y``: with confidence ``alpha`` on the user's positives (``implicit``'s
convention: observed entries get ``alpha * 1``, missing ones 1) and penalty ``lambda``,

    x = (Y'Y + (alpha - 1) sum_s y_s y_s' + lambda I)^-1  alpha sum_s y_s,     score_i = y_i . x

(what ``implicit``'s ``recalculate_user`` computes, and the ``implicit-als`` baseline scores with; a
user without a positive in the support gets ``x = 0`` here, the baseline's average user there). A
head that mixes in :class:`AlsPath` keeps ``Y`` and the solve's constants as buffers saved with the
model and adds ``als_weight * score_i`` to its ranking scores:

* ``als_factors`` [n_catalogue, ALS_WIDTH]: the item factors (zero-padded to :data:`ALS_WIDTH` columns;
  zero rows for items without training interactions, which the solve gives them anyway); [0, ALS_WIDTH]
  until a fit is set and again where validation chose the path off, so a model without it saves no
  per-item factors (:data:`recsys.persistence.SIZED_WHEN_CHOSEN`);
* ``als_gram`` [ALS_WIDTH, ALS_WIDTH]: ``Y'Y`` over the training catalogue;
* ``als_reg`` [], ``als_alpha`` []: ``lambda`` and ``alpha``;
* ``als_threshold`` []: the support ratings that count as positives (at or above it; :data:`EVERY`:
  every one, as on implicit feedback), the positive definition the fit was chosen with;
* ``als_weight`` [N_BANDS]: the path's weight in the ranking scores, one per band of the support's size
  (:mod:`recsys.models.support_bands`); 0 (off) while training and in the bands where validation users
  show it does not help.

A head built without the path (``model.hybrid.als_path = false``: ``als_enabled`` false) never fills them. The fit and the weight are chosen by :func:`recsys.post_training.choose_als_path`.
"""

from __future__ import annotations

import torch

from recsys.models.support_bands import N_BANDS, band_weight

ALS_WIDTH = 64
"""Columns of the ALS path's item factors: up to 64 factors (fewer: zero-padded, their solution is 0)."""
EVERY = float(torch.finfo(torch.float32).min)
"""``als_threshold`` of "every support rating is a positive" (finite: saved models hold finite tensors)."""


class AlsPath:
    """The buffers and hooks of the implicit-ALS ranking path (a mixin of :class:`torch.nn.Module`)."""

    als_factors: torch.Tensor
    als_gram: torch.Tensor
    als_reg: torch.Tensor
    als_alpha: torch.Tensor
    als_threshold: torch.Tensor
    als_weight: torch.Tensor

    def _init_als_path(self, on: bool) -> None:
        self.als_enabled = on
        reg = self.register_buffer  # type: ignore[attr-defined]
        reg("als_factors", torch.zeros(0, ALS_WIDTH))
        reg("als_gram", torch.zeros(ALS_WIDTH, ALS_WIDTH))
        reg("als_reg", torch.ones(()))
        reg("als_alpha", torch.ones(()))
        reg("als_threshold", torch.full((), EVERY))
        reg("als_weight", torch.zeros(N_BANDS))

    @property
    def als_active(self) -> bool:
        """Whether the ranking scores mix in the ALS path (its factors filled, a band's weight not 0)."""
        return bool(self.als_factors.numel()) and bool(self.als_weight.any())

    def set_als(self, factors: torch.Tensor, reg: float, alpha: float, threshold: float | None) -> None:
        """The item factors [n_catalogue, <= ALS_WIDTH] of an implicit ALS fitted on the training users,
        its penalty and confidence, and the rating threshold of its positives (None: every rating)."""
        self.als_factors = self.als_gram.new_zeros(factors.shape[0], ALS_WIDTH)
        self.als_factors[:, : factors.shape[1]] = factors
        self.als_gram.copy_(self.als_factors.T @ self.als_factors)
        self.als_reg.fill_(reg)
        self.als_alpha.fill_(alpha)
        self.als_threshold.fill_(EVERY if threshold is None else threshold)

    def set_als_weight(self, weight: float | list[float]) -> None:
        """The ALS path's weight in the ranking scores (0: off): one for every band, or one per band."""
        self.als_weight.copy_(torch.as_tensor(weight, dtype=self.als_weight.dtype))

    def drop_als(self) -> None:
        """The path off, its per-item factors dropped (nothing of it saved with the model)."""
        self.als_factors = self.als_gram.new_zeros(0, ALS_WIDTH)
        self.als_weight.zero_()

    def als_item_side(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"als_y": Y[index]}`` for catalogue items ``index``; empty while the path is off."""
        return {"als_y": self.als_factors[index]} if self.als_active else {}

    def als_fold_in(self, s_side: dict, sy: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"fast.als": x, "fast.als_w": weight}``: the implicit-ALS fold-in of one user's support (mask
        ``m``; only ratings at or above ``als_threshold`` are positives) and the weight of the support's
        size band; empty while the path is off."""
        if "als_y" not in s_side:
            return {}
        w = m * (sy >= self.als_threshold).to(m.dtype)
        y = s_side["als_y"] * w.unsqueeze(-1)
        eye = torch.eye(ALS_WIDTH, dtype=y.dtype, device=y.device)
        a = self.als_gram + (self.als_alpha - 1.0) * (y.transpose(-1, -2) @ y) + self.als_reg * eye
        rhs = self.als_alpha * y.sum(-2)
        x = torch.linalg.solve_ex(a, rhs, check_errors=False).result
        return {"fast.als": x, "fast.als_w": band_weight(self.als_weight, m)}

    def als_part(self, p: dict, side: dict) -> dict[str, torch.Tensor]:
        """``{"als": weight * y_i . x}``, the path's term of the ranking scores (empty while off)."""
        if "fast.als" not in p or "als_y" not in side:
            return {}
        return {"als": p["fast.als_w"] * (side["als_y"] @ p["fast.als"])}
