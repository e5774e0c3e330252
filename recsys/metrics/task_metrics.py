"""Per-user metrics of one scorer on one set of tasks (ratings, query ranking, catalogue ranking)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsys.data.tasks import TaskSet, UserLog
from recsys.metrics import core as M
from recsys.metrics.topk import exclusion_mask, top_n

if TYPE_CHECKING:
    from recsys.models.scorer import Scores


def support_arrays(log: UserLog, tasks: TaskSet) -> tuple[np.ndarray, np.ndarray]:
    s = tasks.support
    items = np.where(s >= 0, log.items[np.maximum(s, 0)], -1)
    ratings = np.where(s >= 0, log.ratings[np.maximum(s, 0)], 0.0).astype(np.float32)
    return items, ratings


def catalogue_truth(
    log: UserLog, tasks: TaskSet, n_items: int, *, implicit: bool, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(excluded, relevant), each bool [n_tasks, n_items], of the catalogue ranking: every item except
    the task's support is ranked; relevant = the user's other items rated at or above ``threshold``
    (every interaction for implicit feedback)."""
    s_items, _ = support_arrays(log, tasks)
    exclude = exclusion_mask(s_items, n_items)
    relevant = np.zeros((len(tasks), n_items), dtype=bool)
    owner, pos = log.positions(tasks.users)
    liked = np.ones(len(pos), dtype=bool) if implicit else log.ratings[pos] >= threshold
    relevant[owner[liked], log.items[pos[liked]]] = True
    relevant &= ~exclude
    return exclude, relevant


def user_metrics(
    scores: Scores,
    log: UserLog,
    tasks: TaskSet,
    *,
    predicts_ratings: bool,
    implicit: bool,
    threshold: float,
    scale: tuple[float, float] | None,
) -> dict[str, np.ndarray]:
    """Per-user metrics of one method on one task set.

    ``scores``: the method's :class:`~recsys.models.scorer.Scores`. Query nDCG (MeLU's protocol) ranks the
    query items by predicted rating (by the ranking scores for a ranking-only method).
    """
    ranking = scores.ranking
    scores = scores.ratings if scores.ratings is not None else ranking
    n_items = scores.shape[1]
    out: dict[str, np.ndarray] = {}
    q = tasks.query
    qmask = q >= 0
    q_items = log.items[np.maximum(q, 0)]
    q_true = log.ratings[np.maximum(q, 0)]
    q_pred = np.take_along_axis(scores, q_items, axis=1)
    if predicts_ratings and not implicit:
        pred = np.clip(q_pred, *scale) if scale else q_pred
        out["mae"] = M.mae(pred, q_true, qmask)
        out["rmse"] = M.rmse(pred, q_true, qmask)
    if not implicit:
        for k in (1, 3, 5):
            out[f"query_ndcg@{k}"] = M.query_ndcg(q_pred, q_true, qmask, k)
    exclude, relevant = catalogue_truth(log, tasks, n_items, implicit=implicit, threshold=threshold)
    top, _ = top_n(ranking, 20, exclude)
    out.update(M.catalogue_metrics(top, relevant, ~exclude, ks=(10, 20)))
    out["_top10"] = top[:, :10]
    return out
