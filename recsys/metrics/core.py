"""Per-user metrics, vectorised over users with padded arrays and masks.

Conventions: every function takes arrays with one row per user and returns one value per user (NaN
where the metric is undefined for that user, e.g. no relevant items); averaging over users, with
bootstrap intervals, is done by the caller. Ties in scores are broken by position (stable sort), so
a constant scorer ranks candidates in catalogue order.
"""

from __future__ import annotations

import numpy as np


def _masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, values, 0.0)


def mae(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(1)
    out = _masked(np.abs(pred - target), mask).sum(1) / np.maximum(n, 1)
    return np.where(n > 0, out, np.nan)


def rmse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(1)
    out = np.sqrt(_masked((pred - target) ** 2, mask).sum(1) / np.maximum(n, 1))
    return np.where(n > 0, out, np.nan)


def query_ndcg(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """nDCG@k of the query items ranked by ``pred`` (MeLU's protocol), gain 2^rating - 1.

    Padding is ranked last and carries no gain. The ideal ranking sorts by the true ratings.
    """
    neg_inf = -np.inf
    order = np.argsort(-np.where(mask, pred, neg_inf), axis=1, kind="stable")
    gains = np.where(mask, 2.0**target - 1.0, 0.0)
    ranked = np.take_along_axis(gains, order, axis=1)[:, :k]
    ideal = -np.sort(-gains, axis=1)[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))
    dcg = (ranked * discounts).sum(1)
    idcg = (ideal * discounts[: ideal.shape[1]]).sum(1)
    return np.where((mask.sum(1) > 0) & (idcg > 0), dcg / np.where(idcg > 0, idcg, 1.0), np.nan)


def catalogue_metrics(
    ranked: np.ndarray,
    relevant: np.ndarray,
    candidates: np.ndarray | None = None,
    ks: tuple[int, ...] = (10, 20),
) -> dict[str, np.ndarray]:
    """Recall@k, nDCG@k, MAP@k and hit rate@k per user from top lists.

    Recall@k divides the hits by ``min(k, |relevant|)`` (Liang et al., WWW 2018), so it reaches 1 for
    a perfect top-k whatever the number of relevant items.

    ``ranked``: [n, K] item indices in rank order (K >= max(ks); items excluded from ranking must
    already be absent). ``relevant``: bool [n, n_items]. ``candidates``: bool [n, n_items] of rankable
    items (for users with fewer candidates than k, ranked lists may hold excluded items: those are
    ignored). Users with no relevant item get NaN.
    """
    n = len(ranked)
    hits = np.take_along_axis(relevant, ranked, axis=1).astype(np.float64)
    if candidates is not None:
        hits *= np.take_along_axis(candidates, ranked, axis=1)
    n_rel = relevant.sum(1).astype(np.float64)
    valid = n_rel > 0
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        found = h.sum(1)
        # Recall@k normalised by min(k, |relevant|) (Liang et al., 2018), so a perfect top-k scores 1
        out[f"recall@{k}"] = np.where(valid, found / np.maximum(np.minimum(n_rel, k), 1), np.nan)
        out[f"hit@{k}"] = np.where(valid, (found > 0).astype(np.float64), np.nan)
        disc = 1.0 / np.log2(np.arange(2, h.shape[1] + 2))
        dcg = (h * disc).sum(1)
        ideal_len = np.minimum(n_rel, h.shape[1]).astype(int)
        cum = np.concatenate([[0.0], np.cumsum(disc)])
        idcg = cum[ideal_len]
        out[f"ndcg@{k}"] = np.where(valid, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)
        precision_at = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
        ap = (precision_at * h).sum(1) / np.maximum(np.minimum(n_rel, h.shape[1]), 1)
        out[f"map@{k}"] = np.where(valid, ap, np.nan)
    del n
    return out


def coverage(ranked: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top-k."""
    return float(len(np.unique(ranked[:, :k])) / max(1, n_items))


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) over users, ignoring NaN; percentile bootstrap over users."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(1)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))
