"""The item-item matrix blended into the hybrid head's ranking scores.

Two kinds: EASE (Steck 2019) at a few regularisation strengths, and item-kNN cosine similarities
(implicit's ``CosineRecommender``) at a few neighbourhood sizes. Fitted on the training users'
interactions; the kind and its parameter are chosen on the validation users (catalogue Recall@20
with 5 support items), never on new users. Two out-of-fold copies (each fitted
on half of the training users) serve the training tasks, so the blend is learned on item-item scores
that did not see the task's own user.
"""

from __future__ import annotations

import logging

import numpy as np

from recsys.data.tasks import UserLog, sample_tasks
from recsys.metrics.task_metrics import support_arrays, user_metrics
from recsys.metrics.topk import exclusion_mask
from recsys.models.classical import BASELINES
from recsys.models.scorer import Scores

log = logging.getLogger(__name__)

LAMBDAS = (500.0, 2000.0, 8000.0, 32000.0)
NEIGHBOURS = (100, 400)
CANDIDATES = tuple(("ease", lam) for lam in LAMBDAS) + tuple(("cosine", k) for k in NEIGHBOURS)
DEFAULT = ("ease", 8000.0)


def _fit(log_: UserLog, n_items: int, kind: tuple[str, float]) -> np.ndarray:
    """The dense item-item matrix of one candidate, fitted on ``log_``."""

    name, value = kind
    if name == "ease":
        return BASELINES["ease"](lam=value).fit(log_, n_items).B
    similarity = BASELINES["item-knn"](K=int(value)).fit(log_, n_items).similarity
    return np.asarray(similarity.toarray(), dtype=np.float32)


def _spread(matrix: np.ndarray, support_items: np.ndarray | None) -> float:
    """Standard deviation of users' item-item scores (over the catalogue), to put B on a unit scale."""
    if support_items is None or len(support_items) == 0:
        return float(np.abs(matrix).sum(0).std()) or 1.0
    x = exclusion_mask(support_items, matrix.shape[0]).astype(np.float32)  # the binary support rows
    return float((x @ matrix).std()) or 1.0


def fit_item_item(
    train: UserLog,
    validation: UserLog | None,
    n_items: int,
    *,
    threshold: float | None,
    implicit: bool,
    rng: np.random.Generator | None = None,
    kinds: str = "ease",
) -> tuple[np.ndarray, np.ndarray, str]:
    """(B [n_items, n_items], out-of-fold B [2, n_items, n_items], the chosen kind as ``ease:LAMBDA`` or
    ``cosine:K``), float32, scaled so that users' item-item scores have unit spread.

    Out-of-fold matrix ``f`` is fitted on the training users whose log row parity is not ``f``, so a
    training task of a user in fold ``f`` never sees its own interactions through ``B``.

    ``rng`` draws the validation tasks the kind is chosen on (training passes the ``item-item`` stream
    of :class:`recsys.utils.seeds.Seeds`; None: a generator seeded 0).
    """

    support = None
    kind, full = DEFAULT, None
    eligible = np.nonzero(validation.counts > 5)[0] if validation is not None else np.zeros(0, np.int64)
    if len(eligible):  # validation users with 5 support items and a query: choose on them
        rng = rng if rng is not None else np.random.default_rng(0)
        tasks = sample_tasks(validation, eligible, rng, support_size=5, query_size=10)
        support, _ = support_arrays(validation, tasks)
        best = -np.inf
        for candidate in (c for c in CANDIDATES if c[0] in kinds.split("+")):
            matrix = _fit(train, n_items, candidate)
            x = exclusion_mask(support, n_items).astype(np.float32)  # the binary support rows
            m = user_metrics(
                Scores.of_ranking(x @ matrix),
                validation,
                tasks,
                predicts_ratings=False,
                implicit=implicit,
                threshold=threshold if threshold is not None else -np.inf,
                scale=None,
            )
            value = float(np.nanmean(m["recall@20"]))
            if value > best:
                best, kind, full = value, candidate, matrix
        log.info("item-item blend: %s %g (validation Recall@20 %.4f)", *kind, best)
    if full is None:
        full = _fit(train, n_items, kind)
    scale = 1.0 / _spread(full, support)
    rows = np.arange(train.n_users)
    folds = np.empty((2, n_items, n_items), dtype=np.float32)
    for fold in (0, 1):
        folds[fold] = _fit(train.subset(rows[rows % 2 != fold]), n_items, kind) * scale
    return (full * scale).astype(np.float32), folds, f"{kind[0]}:{kind[1]:g}"
