"""Weights a head's paths get after training, chosen on validation users (not learned by gradient).

A head mixes in :class:`PathWeights` and calls :meth:`PathWeights._init_path_weights` in its
constructor; the buffers are saved with the model (files saved before a buffer existed load with its
default: :data:`recsys.persistence.OPTIONAL_WEIGHTS`):

* ``trend`` [n_catalogue], ``trend_weight`` [] and ``trend_decay`` []: a time-decayed popularity prior
  (:mod:`recsys.models.trend`) added to the ranking scores at a weight that shrinks with the support's
  size by ``trend_decay`` (:func:`recsys.models.trend.user_weight`; 0: the same for every user);
  weight 0 (no prior) while training;
* ``rank_mix`` [2]: the weights of the ranking paths ``[support encoder, item-item]``, (1, 1) while
  training, so the model can fall back to either path alone where the other does not help;
* ``fold_in_weight`` []: the weight of the user's fold-in term in the rating prediction, 1 while
  training; 0 reduces the prediction to the item's baseline (global mean + item bias: a damped item mean).
* the classical rating fallback (heads built with ``mf=True``): a biased MF's item side ``mf_design``
  [n_catalogue, MF_WIDTH] (``[1, q_i]``, zero-padded), ``mf_base`` [n_catalogue] (``mu + b_i``), ``mf_seen``
  [n_catalogue] (1 for items with training ratings: only their predictions move), its ridge
  penalties ``mf_reg`` [MF_WIDTH], its global mean ``mf_mu`` [] and ``mf_weight`` []: the prediction moves that far from the head's own
  towards the MF's ridge fold-in of the support ratings (items it has seen rated); 0 (off) while training. Without ``mf`` the
  per-item buffers are empty ([0, MF_WIDTH], [0]).
* ``rate_mix`` [2, N_FEATURES]: the rating combiner's coefficients (:mod:`recsys.models.rating_mix`)
  of the fold-in and MF terms, and ``rate_knn`` [N_FEATURES] those of its item-kNN term; all zero (off)
  while training and where validation did not keep it. On, it replaces the fold-in weight and MF
  fallback for items the MF saw rated: each user's weights of the terms read from the support. The
  item-kNN's neighbour lists ``knn_idx`` (int32) / ``knn_val`` [n_catalogue, NEIGHBOURS]
  (:mod:`recsys.models.rating_knn`) are empty [0, NEIGHBOURS] unless the combiner kept the term.

The choices are made by :mod:`recsys.post_training` (``choose_rank_mix``, ``choose_fold_in_weight``,
``choose_mf_fallback``, ``choose_rating_mix``, ``choose_trend``).
"""

from __future__ import annotations

import torch

from recsys.models import rating_knn
from recsys.models.item_item_sparse import TopK
from recsys.models.rating_mix import N_FEATURES, support_features, user_weights

MF_WIDTH = 33
"""Columns of the MF fallback's item side: a bias column and up to 32 factors (fewer: zero-padded)."""


class PathWeights:
    """The buffers and setters of the post-training path weights (a mixin of :class:`torch.nn.Module`)."""

    trend: torch.Tensor
    trend_weight: torch.Tensor
    trend_decay: torch.Tensor
    rank_mix: torch.Tensor
    fold_in_weight: torch.Tensor

    mf_design: torch.Tensor
    mf_base: torch.Tensor
    mf_reg: torch.Tensor
    mf_weight: torch.Tensor
    rate_mix: torch.Tensor
    rate_knn: torch.Tensor
    knn_idx: torch.Tensor
    knn_val: torch.Tensor

    def _init_path_weights(self, n_catalogue: int, mf: bool = False) -> None:
        reg = self.register_buffer  # type: ignore[attr-defined]
        reg("trend", torch.zeros(n_catalogue))
        reg("trend_weight", torch.zeros(()))
        reg("trend_decay", torch.zeros(()))
        reg("rank_mix", torch.ones(2))
        reg("fold_in_weight", torch.ones(()))
        n = n_catalogue if mf else 0
        reg("mf_design", torch.zeros(n, MF_WIDTH))
        reg("mf_base", torch.zeros(n))
        reg("mf_seen", torch.zeros(n))
        reg("mf_reg", torch.ones(MF_WIDTH))
        reg("mf_mu", torch.zeros(()))
        reg("mf_weight", torch.zeros(()))
        reg("rate_mix", torch.zeros(2, N_FEATURES))
        reg("rate_knn", torch.zeros(N_FEATURES))
        reg("knn_idx", torch.zeros(0, rating_knn.NEIGHBOURS, dtype=torch.int32))
        reg("knn_val", torch.zeros(0, rating_knn.NEIGHBOURS))

    @property
    def mf_active(self) -> bool:
        """Whether the rating prediction mixes in the MF fallback (its buffers filled, its weight above 0
        or the rating combiner on)."""
        return bool(self.mf_design.numel()) and (float(self.mf_weight) > 0.0 or self.rate_mix_active)

    @property
    def rate_mix_active(self) -> bool:
        """Whether the rating combiner is on (its coefficients not all zero)."""
        return bool(self.rate_mix.any())

    @property
    def rate_coef(self) -> torch.Tensor:
        """The rating combiner's coefficients as one [len(PARTS), N_FEATURES] matrix (rows: fold-in, MF,
        item-kNN; :mod:`recsys.models.rating_mix`)."""
        return torch.cat([self.rate_mix, self.rate_knn.unsqueeze(0)])

    @property
    def rate_knn_active(self) -> bool:
        """Whether the rating combiner weighs the item-kNN term (on, its lists filled and weights set)."""
        return self.rate_mix_active and bool(self.knn_idx.numel()) and bool(self.rate_knn.any())

    def set_mf_fallback(
        self, design: torch.Tensor, base: torch.Tensor, reg: torch.Tensor, mu: float, seen: torch.Tensor
    ) -> None:
        """The MF's item side ``[1, q_i]`` [n_catalogue, <= MF_WIDTH] (zero-padded here), ``mu + b_i``, the
        ridge penalties of its columns (padding columns get 1: their solution is 0), its global mean
        ``mu`` (the base of items added later, which have no factors) and which items it has seen rated
        (``seen`` [n_catalogue], 1/0): only those move towards it; an item without training ratings, which
        the MF knows nothing of, keeps the head's prediction (from its content)."""
        self.mf_design.zero_()
        self.mf_design[:, : design.shape[1]] = design
        self.mf_base.copy_(base)
        self.mf_seen.copy_(seen)
        self.mf_mu.fill_(mu)
        self.mf_reg.fill_(1.0)
        self.mf_reg[: len(reg)] = reg

    def mf_item_side(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The MF fallback's part of the item side of catalogue items ``index`` (empty when it is off):
        ``mf_x`` (its design rows), ``mf_b`` (``mu + b_i``), ``mf_seen`` (1 for items it saw rated),
        ``mf_on`` (each item's fallback weight: 0 for items it never saw rated)."""
        if not self.mf_active:
            return {}
        seen = self.mf_seen[index]
        return {
            "mf_x": self.mf_design[index],
            "mf_b": self.mf_base[index],
            "mf_seen": seen,
            "mf_on": self.mf_weight * seen,
        }

    def mf_fold_in(self, s_side: dict, sy: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"fast.mf": x}``: the MF's ridge fold-in of one user's support ratings ``sy`` (mask ``m``),
        ``argmin_x sum_s m_s (y_s - mu - b_s - [1, q_s].x)^2 + x.diag(mf_reg).x``; empty when it is off.
        With the rating combiner on also ``{"fast.rate_a": a_u}``, the user's weights [3] of the fold-in,
        MF and kNN terms (:func:`~recsys.models.rating_mix.user_weights`), and with its kNN term on
        ``{"fast.knn": k_u}``, the kNN term of every catalogue item [n_catalogue]
        (:func:`~recsys.models.rating_knn.knn_scores`; needs the support's catalogue indices ``idx``)."""
        if "mf_x" not in s_side:
            return {}
        x = s_side["mf_x"] * m.unsqueeze(-1)
        a = x.transpose(-1, -2) @ x + torch.diag(self.mf_reg)
        rhs = x.transpose(-1, -2) @ ((sy - s_side["mf_b"]) * m)
        fast = {"fast.mf": torch.linalg.solve_ex(a, rhs, check_errors=False).result}
        if self.rate_mix_active:
            fast["fast.rate_a"] = user_weights(self.rate_coef, support_features(sy, m, self.mf_mu))
        if self.rate_knn_active and "idx" in s_side:
            fast["fast.knn"] = self.knn_term(s_side["idx"], s_side["mf_b"], sy, m)
        return fast

    def knn_term(
        self, items: torch.Tensor, base: torch.Tensor, sy: torch.Tensor, m: torch.Tensor
    ) -> torch.Tensor:
        """One user's item-kNN term [n_catalogue] from the support's catalogue indices ``items`` [S], their
        baselines ``base``, ratings ``sy`` and mask ``m`` (:mod:`recsys.models.rating_knn`)."""
        safe = items.clamp_min(0)
        d = rating_knn.support_residuals(sy, base, m)
        return rating_knn.knn_scores(
            self.knn_idx[safe].long(), self.knn_val[safe], d, m, self.knn_idx.shape[0]
        )

    def mf_mix(self, base: torch.Tensor, fold: torch.Tensor, p: dict, side: dict) -> torch.Tensor:
        """The rating prediction from the item baseline ``base`` and the user's fold-in term ``fold``: the
        head's own (``base + fold_in_weight * fold``) moved by each item's ``mf_on`` towards the MF's
        fold-in; with the rating combiner on, ``base + a_u[0] fold + a_u[1] (mf - base) + a_u[2] knn`` for
        items the MF saw rated (the others keep the head's own)."""
        own = base + self.fold_in_weight * fold
        if "fast.mf" not in p or "mf_x" not in side:
            return own
        mf = side["mf_b"] + side["mf_x"] @ p["fast.mf"]
        if "fast.rate_a" in p:
            a = p["fast.rate_a"]
            mixed = a[0] * fold + a[1] * (mf - base)
            if "fast.knn" in p and "idx" in side:
                mixed = mixed + a[2] * p["fast.knn"][side["idx"]]
            return own + side["mf_seen"] * (mixed - self.fold_in_weight * fold)
        return own + side["mf_on"] * (mf - own)

    def set_rate_mix(self, coef: torch.Tensor) -> None:
        """The rating combiner's coefficients [len(PARTS), N_FEATURES] (all zero: off); a [2, N_FEATURES]
        one leaves the kNN term off."""
        self.rate_mix.copy_(coef[:2])
        self.rate_knn.copy_(coef[2] if len(coef) > 2 else torch.zeros_like(self.rate_knn))

    def set_rating_knn(self, lists: TopK | None) -> None:
        """The item-kNN's neighbour lists [n_catalogue, NEIGHBOURS] (None: empty, the term off)."""
        n = 0 if lists is None else lists.idx.shape[0]
        self.knn_idx = self.knn_idx.new_zeros(n, rating_knn.NEIGHBOURS)
        self.knn_val = self.knn_val.new_zeros(n, rating_knn.NEIGHBOURS)
        if lists is not None:
            width = lists.idx.shape[1]
            self.knn_idx[:, :width] = torch.from_numpy(lists.idx)
            self.knn_val[:, :width] = torch.from_numpy(lists.val)

    def set_mf_weight(self, weight: float) -> None:
        """How far the rating prediction moves towards the MF fallback's (0: the head's own)."""
        self.mf_weight.fill_(weight)

    def set_trend(self, prior: torch.Tensor, weight: float, decay: float = 0.0) -> None:
        self.trend.copy_(prior)
        self.trend_weight.fill_(weight)
        self.trend_decay.fill_(decay)

    def set_fold_in_weight(self, weight: float) -> None:
        """Weight of the user's fold-in term in the rating prediction (see ``fold_in_weight``)."""
        self.fold_in_weight.fill_(weight)

    def set_rank_mix(self, encoder: float, item_item: float) -> None:
        """Weights of the support-encoder and item-item ranking paths (see ``rank_mix``)."""
        self.rank_mix.copy_(torch.tensor([encoder, item_item], dtype=self.rank_mix.dtype))
