"""Onboarding: which items to ask a new user to rate first.

A new user's first answers are only worth asking for if (a) the user is likely to know the item and
(b) the answer teaches the model something it does not know yet. Strategies:

* ``evidence`` (default) — expected information, greedily: every candidate item has a design
  vector from the trained model's item side (what the fold-in regresses the user's ratings on: the
  rating path's item factors and the ranking path's support encoding), and a chance of being known,
  its share of training interactions relative to the most popular item. Items are chosen one at a
  time maximising ``p_i * log(1 + v_i^T A^-1 v_i)``, the expected gain in log-determinant of the
  fold-in's posterior precision ``A`` (Bayesian D-optimal design), and ``A`` is updated with
  ``p_i v_i v_i^T`` so that later questions cover directions earlier ones did not. This is the
  Bayesian-linear counterpart of MeLU's evidence candidates (gradient norm weighted by popularity).
* ``popular`` — the most rated items.
* ``random`` — items drawn at random among the items seen in training (seeded).

With user features and a head that ranks (``hybrid``), the candidate pool is the items the model
ranks highest for that user before any rating, instead of the most popular ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recsys.errors import ScoringInputError, shown

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

STRATEGIES = ("evidence", "popular", "random")


def design_vectors(rec: ColdStartRecommender) -> np.ndarray:
    """[n_items, d] vectors a new user's ratings are regressed on, each part scaled to unit mean norm."""
    side = rec._catalogue_cache().side
    parts = [side[k] for k in ("q1", "psi_in") if k in side] or [side[k] for k in ("h", "x") if k in side]
    if not parts:
        raise ScoringInputError(f"no item design vectors for head {type(rec.learner.head).__name__}")
    known = torch.from_numpy(rec.space.popularity > 0).to(parts[0].device)
    scaled = []
    for part in parts:
        norms = part[known].norm(dim=-1) if bool(known.any()) else part.norm(dim=-1)
        scaled.append(part / norms.mean().clamp_min(1e-8))
    return torch.cat(scaled, dim=-1).double().cpu().numpy()


def _zero_shot_ranking(rec: ColdStartRecommender, user_features: dict[str, Any]) -> np.ndarray:
    """The model's catalogue ranking scores for a user with these features and no ratings yet."""
    return rec.score_padded(np.full((1, 1), -1), np.zeros((1, 1)), [user_features], what="rank")[0]


def onboarding_order(
    rec: ColdStartRecommender,
    n: int,
    *,
    user_features: dict[str, Any] | None = None,
    strategy: str = "evidence",
    pool: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Catalogue indices of the ``n`` items to ask about, in the order to ask them.

    ``pool``: how many candidates ``evidence`` chooses from (the most popular, or with user features
    the model's top-ranked); past the pool it continues by popularity. ``seed``: for ``random``.
    """
    rec._require_fitted()
    if strategy not in STRATEGIES:
        raise ScoringInputError(
            f"unknown onboarding strategy {shown(strategy)}; expected one of {STRATEGIES}"
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ScoringInputError(f"n must be a positive integer, got {shown(n)}")
    popularity = rec.space.popularity.astype(np.float64)
    seen = np.nonzero(popularity > 0)[0]
    if len(seen) == 0:
        raise ScoringInputError("the model saw no training interactions: nothing to ask about")
    n = min(int(n), len(seen))
    if strategy == "random":
        return np.random.default_rng(seed).permutation(seen)[:n]
    by_popularity = seen[np.argsort(-popularity[seen], kind="stable")]
    if strategy == "popular":
        return by_popularity[:n]
    if user_features is not None and rec.learner.head.has_rank:
        prior = _zero_shot_ranking(rec, user_features)
        candidates = seen[np.argsort(-prior[seen], kind="stable")][:pool]
    else:
        candidates = by_popularity[:pool]
    weights = popularity[candidates] / popularity.max()
    chosen = candidates[_greedy_d_optimal(design_vectors(rec)[candidates], weights, n)]
    if len(chosen) < n:  # beyond the pool: the remaining items by popularity
        rest = by_popularity[~np.isin(by_popularity, chosen)]
        chosen = np.concatenate([chosen, rest[: n - len(chosen)]])
    return chosen


def _greedy_d_optimal(v: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    """Positions in ``v`` [m, d] chosen greedily by expected log-det gain ``p * log(1 + v A^-1 v)``."""
    m, d = v.shape
    a_inv = np.eye(d)
    chosen: list[int] = []
    available = np.ones(m, dtype=bool)
    for _ in range(min(n, m)):
        av = v @ a_inv  # [m, d]
        gain = p * np.log1p(np.einsum("md,md->m", av, v))
        gain[~available] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(j)
        available[j] = False
        # Sherman-Morrison update of A^-1 for A += p_j v_j v_j^T
        u = a_inv @ v[j]
        a_inv -= p[j] * np.outer(u, u) / (1.0 + p[j] * v[j] @ u)
    return np.asarray(chosen, dtype=np.int64)
