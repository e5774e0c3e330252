"""The support summary the hybrid head's ridge fold-in reads to set a user's own shrinkage."""

from __future__ import annotations

import torch

SUPPORT_STATS = 4
"""Scalar statistics in :func:`support_summary` (before the mean item factors)."""


def support_summary(phi: torch.Tensor, resid: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """What the fold-in's trust sees of one user's support: [log n, n / (n + 10), residual mean,
    residual spread, mean item factors]. ``phi`` [S, d + 1] (item factors and a 1, zero on padding),
    ``resid`` [S] (rating minus item baseline, zero on padding), ``m`` [S] mask; padding is inert."""
    n = m.sum().clamp_min(1.0)
    mean = resid.sum() / n
    spread = ((((resid - mean) * m) ** 2).sum() / n + 1e-6).sqrt()
    stats = torch.stack([torch.log(n), n / (n + 10.0), mean, spread])
    return torch.cat([stats, phi[..., :-1].sum(-2) / n])
