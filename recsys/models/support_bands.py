"""Weights by support size: one weight per band of the number of ratings a user's support holds.

How far to trust a classical fold-in depends on how much the user has rated: with two ratings the
learned prior knows more than an ALS solve or an item-item sum does; with fifty the fold-in has the
evidence and the meta-learned paths (trained on supports of ``train.support_min`` to ``support_max``
ratings) extrapolate. A path weight kept per band (a buffer [:data:`N_BANDS`]) lets validation users
choose each band's weight on the tasks of that size (:func:`recsys.added_paths.choose_addition`), the
first step of a per-user combiner that reads the support.

Bands, by the support's number of ratings ``n``: ``n <= 2`` (one or two ratings: where a classical
fold-in has least to go on, yet the meta-learned paths are least sure too), ``3 <= n <= 20`` (the rest of
the range the model trains on, the default ``train.support_max``) and ``n > 20`` (:data:`BAND_EDGES`).
The trained range's weight is chosen on its validation tasks as a whole (1-20); the short band moves away
from it only where its own tasks show a difference beyond noise (:func:`recsys.added_paths.choose_addition`).
Three bands (1-5, 6-20, 21+) each chosen freely on its own validation tasks were tried first and chose
worse for test users on ML-100k (the weights of the two short bands fitted the validation users' noise;
see ``docs/experiments/2026-12-04-support-bands``); Gowalla's one-item supports gain from the ALS path
that the band-wide choice turns off (``docs/experiments/2026-12-05-blend-by-support``).
"""

from __future__ import annotations

import numpy as np
import torch

BAND_EDGES = (2, 20)
"""Upper ends (inclusive) of every band but the last, in support ratings."""
N_BANDS = len(BAND_EDGES) + 1
BAND_NAMES = ("1-2", "3-20", "21+")
"""How reports name the bands (support ratings)."""
SAVED_EDGES = {1: (), 2: (20,), N_BANDS: BAND_EDGES}
"""The band edges of model files by their number of weights per path: one number (before the bands),
two (1-20, 21+) and the current bands."""


def bands_of(sizes: np.ndarray) -> np.ndarray:
    """The band (0 … N_BANDS - 1) of each support size."""
    return np.searchsorted(np.asarray(BAND_EDGES), np.asarray(sizes), side="left")


def widen(saved: torch.Tensor) -> torch.Tensor:
    """A path's weights [N_BANDS] from those a model file holds (one number, or one per band of an
    earlier layout, :data:`SAVED_EDGES`): each band takes the weight of the saved band holding its
    smallest support size."""
    saved = saved.reshape(-1)
    lowest = np.array([1, *(e + 1 for e in BAND_EDGES)])
    edges = np.asarray(SAVED_EDGES[len(saved)], dtype=np.int64)
    return saved[torch.from_numpy(np.searchsorted(edges, lowest, side="left"))]


def band_weight(weights: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The weight [] of one user's band from ``weights`` [N_BANDS], the support size being the sum of
    the support mask ``m`` [S] (written without indexing by a data-dependent value: works under vmap)."""
    n = m.sum()
    edges = torch.tensor(BAND_EDGES, dtype=n.dtype, device=n.device)
    band = (n > edges).sum()
    return (weights * (torch.arange(N_BANDS, device=n.device) == band).to(weights.dtype)).sum()
