"""The item-item matrix blended into the hybrid head's ranking scores.

Fitted on the training users' interactions; its kind and parameter are chosen on the validation users
(catalogue Recall@20 with 5 support items), never on new users. Two out-of-fold copies (each fitted on
half of the training users) serve the training tasks, so the blend is learned on item-item scores that
did not see the task's own user.

Two storages, by catalogue size (``model.hybrid.item_item_dense_items``, default 4,000):

* **dense** (``n_items <= dense limit``): an ``n_items x n_items`` matrix; the candidates are EASE
  (Steck 2019) at four regularisation strengths — for explicit ratings each fitted on every rating and
  on the liked ones only (``ease-liked``, the positives the ranking path learns from) — plus cosine item-kNN at 100 or 400 neighbours with
  ``item_item_kinds = "ease+cosine"``. Six O(n^3) inversions (four candidates, two folds) and n^2
  memory per copy: at 4,000 items about 7 s per inversion on this 2-core machine, at 17,600 items the
  whole default fit took 27 min and 7 GB, which is why the dense limit sits at 4,000.
* **sparse top-k** (above it; :mod:`recsys.models.item_item_sparse`): per item its
  ``model.hybrid.item_item_neighbours`` (default 100) strongest neighbours, O(n_items * k) memory. The
  candidates are ``cosine`` (item-kNN, time about linear in the interactions) and ``ease-pop`` (EASE on
  the dense-limit's number of most popular items, one p x p inversion, added to the cosine matrix, each
  at unit spread, then pruned), chosen on validation users like the dense ones. On ML-1M (3,706 items,
  where both are possible) the measured validation Recall@20 of each is in the README's "Speed and
  scale" section (``benchmarks/item_item_sparse.py``).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsys.data.tasks import TaskSet, UserLog, sample_tasks
from recsys.metrics.task_metrics import support_arrays, user_metrics
from recsys.metrics.topk import exclusion_mask
from recsys.models import item_item_sparse as sparse
from recsys.models.classical import BASELINES
from recsys.models.item_item_sparse import TopK
from recsys.models.scorer import Scores

log = logging.getLogger(__name__)

LAMBDAS = (500.0, 2000.0, 8000.0, 32000.0)
NEIGHBOURS = (100, 400)
CANDIDATES = tuple(("ease", lam) for lam in LAMBDAS) + tuple(("cosine", k) for k in NEIGHBOURS)
DEFAULT = ("ease", 8000.0)
DENSE_ITEMS = 4_000
"""Default dense limit (``model.hybrid.item_item_dense_items``)."""
TOP_K = 100
"""Default neighbours per item of the sparse kind (``model.hybrid.item_item_neighbours``)."""
SPARSE_CANDIDATES = (("cosine", 0.0), ("ease-pop", 8000.0))
SPARSE_DEFAULT = ("cosine", 0.0)
EVAL_CHUNK = 512
"""Validation users scored at once for the sparse kind ([chunk, n_items] dense scores)."""


def _fit(log_: UserLog, n_items: int, kind: tuple[str, float], threshold: float | None = None) -> np.ndarray:
    """The dense item-item matrix of one candidate, fitted on ``log_`` (``ease-liked``: on the ratings at
    or above ``threshold`` only)."""

    name, value = kind
    if name == "ease":
        return BASELINES["ease"](lam=value).fit(log_, n_items).B
    if name == "ease-liked":
        return BASELINES["ease"](lam=value, positives="liked", threshold=threshold).fit(log_, n_items).B
    similarity = BASELINES["item-knn"](K=int(value)).fit(log_, n_items).similarity
    return np.asarray(similarity.toarray(), dtype=np.float32)


def _spread(matrix: np.ndarray, support_items: np.ndarray | None) -> float:
    """Standard deviation of users' item-item scores (over the catalogue), to put B on a unit scale."""
    if support_items is None or len(support_items) == 0:
        return float(np.abs(matrix).sum(0).std()) or 1.0
    x = exclusion_mask(support_items, matrix.shape[0]).astype(np.float32)  # the binary support rows
    return float((x @ matrix).std()) or 1.0


def _dense_candidates(kinds: str, threshold: float | None, implicit: bool) -> list[tuple[str, float]]:
    """The dense candidates of ``item_item_kinds``; for explicit ratings with a relevance threshold every
    EASE strength twice: fitted on every rating (``ease``) and on the liked ones only (``ease-liked``,
    scored from the liked support items), as the fair EASE baseline tunes its positives."""
    chosen = [c for c in CANDIDATES if c[0] in kinds.split("+")]
    if implicit or threshold is None:
        return chosen
    return chosen + [("ease-liked", lam) for name, lam in chosen if name == "ease"]


def _validation_tasks(
    validation: UserLog | None,
    rng: np.random.Generator | None,
    threshold: float | None = None,
    order: tuple[str, str] = ("random", "random"),
) -> tuple[TaskSet | None, np.ndarray | None, np.ndarray | None]:
    """Validation tasks with 5 support items and a query (None without such users), their support, and
    the support with the items rated below ``threshold`` as padding (-1); ``order``: the tasks'
    (support, query) order (:func:`~recsys.data.tasks.sample_tasks`)."""
    eligible = np.nonzero(validation.counts > 5)[0] if validation is not None else np.zeros(0, np.int64)
    if not len(eligible):
        return None, None, None
    rng = rng if rng is not None else np.random.default_rng(0)
    support_order, query_order = order
    tasks = sample_tasks(
        validation,
        eligible,
        rng,
        support_size=5,
        query_size=10,
        support_order=support_order,  # type: ignore[arg-type]
        query_order=query_order,  # type: ignore[arg-type]
    )
    support, ratings = support_arrays(validation, tasks)
    liked = support if threshold is None else np.where(ratings >= threshold, support, -1)
    return tasks, support, liked


def _recall20(
    scores: np.ndarray, validation: UserLog, tasks: TaskSet, threshold: float | None, implicit: bool
):
    return user_metrics(
        Scores.of_ranking(scores),
        validation,
        tasks,
        predicts_ratings=False,
        implicit=implicit,
        threshold=threshold if threshold is not None else -np.inf,
        scale=None,
    )["recall@20"]


def _mean_recall(recall: np.ndarray) -> float:
    """Mean validation Recall@20 over the tasks that have relevant items; -inf when none has (the
    candidate is then not chosen over the default)."""
    finite = recall[np.isfinite(recall)]
    return float(finite.mean()) if len(finite) else -np.inf


def fit_item_item(
    train: UserLog,
    validation: UserLog | None,
    n_items: int,
    *,
    threshold: float | None,
    implicit: bool,
    rng: np.random.Generator | None = None,
    kinds: str = "ease",
    dense_items: int = DENSE_ITEMS,
    neighbours: int = TOP_K,
    task_order: tuple[str, str] = ("random", "random"),
) -> tuple[np.ndarray | TopK, np.ndarray | TopK, str]:
    """(B, out-of-fold B, the chosen kind), float32, scaled so that users' item-item scores have unit
    spread. Dense (``n_items <= dense_items``): B [n_items, n_items], folds [2, n_items, n_items], kind
    ``ease:LAMBDA`` or ``cosine:K``. Sparse: :class:`TopK` [n_items, k] and [2, n_items, k] with
    ``k = min(neighbours, n_items - 1)``, kind ``cosine top-K`` or ``ease-pop:LAMBDA+cosine top-K``.

    Out-of-fold matrix ``f`` is fitted on the training users whose log row parity is not ``f``, so a
    training task of a user in fold ``f`` never sees its own interactions through ``B``.

    ``rng`` draws the validation tasks the kind is chosen on (training passes the ``item-item`` stream
    of :class:`recsys.utils.seeds.Seeds`; None: a generator seeded 0); ``task_order``: their (support,
    query) order, as :func:`~recsys.data.tasks.sample_tasks` takes them.
    """
    tasks, support, liked_support = _validation_tasks(validation, rng, threshold, task_order)
    if n_items > dense_items:
        k = max(1, min(neighbours, n_items - 1))
        return _fit_sparse(train, validation, n_items, tasks, support, threshold, implicit, k, dense_items)
    kind, full = DEFAULT, None
    if tasks is not None:  # validation users with 5 support items and a query: choose on them
        best = -np.inf
        for candidate in _dense_candidates(kinds, threshold, implicit):
            matrix = _fit(train, n_items, candidate, threshold)
            rows = liked_support if candidate[0] == "ease-liked" else support
            x = exclusion_mask(rows, n_items).astype(np.float32)  # the binary support rows
            value = _mean_recall(_recall20(x @ matrix, validation, tasks, threshold, implicit))
            if value > best:
                best, kind, full = value, candidate, matrix
        log.info("item-item blend: %s %g (validation Recall@20 %.4f)", *kind, best)
    if full is None:
        full = _fit(train, n_items, kind, threshold)
    scale = 1.0 / _spread(full, support)
    rows = np.arange(train.n_users)
    folds = np.empty((2, n_items, n_items), dtype=np.float32)
    for fold in (0, 1):
        folds[fold] = _fit(train.subset(rows[rows % 2 != fold]), n_items, kind, threshold) * scale
    return (full * scale).astype(np.float32), folds, f"{kind[0]}:{kind[1]:g}"


def _fit_topk(
    log_: UserLog,
    n_items: int,
    kind: tuple[str, float],
    k: int,
    popular: int,
    support: np.ndarray | None,
    mix: tuple[float, float] | None = None,
    cos: sp.csr_matrix | None = None,
) -> tuple[TopK, tuple[float, float]]:
    """One sparse candidate fitted on ``log_``, and the (EASE, cosine) weights of its parts: each part at
    unit spread on ``support`` (``mix`` given: those weights, so the folds mix like the full matrix).
    ``cos``: ``log_``'s cosine similarities when already computed (every candidate has them)."""
    cos = sparse.cosine(log_, n_items, k) if cos is None else cos
    if kind[0] == "cosine":
        return sparse.topk_rows(cos, k), (0.0, 1.0)
    ease = sparse.popular_ease(log_, n_items, popular, kind[1], k)
    if mix is None:
        mix = (1.0 / sparse.spread(ease, support), 1.0 / sparse.spread(cos, support))
    return sparse.topk_rows(mix[0] * ease + mix[1] * cos, k), mix


def _name(kind: tuple[str, float], k: int) -> str:
    return f"cosine top-{k}" if kind[0] == "cosine" else f"{kind[0]}:{kind[1]:g}+cosine top-{k}"


def _fit_sparse(
    train: UserLog,
    validation: UserLog | None,
    n_items: int,
    tasks: TaskSet | None,
    support: np.ndarray | None,
    threshold: float | None,
    implicit: bool,
    k: int,
    popular: int,
) -> tuple[TopK, TopK, str]:
    """The sparse top-k kind of :func:`fit_item_item`: candidates chosen on the validation tasks, scored
    :data:`EVAL_CHUNK` users at a time (never a dense [users, n_items] of every validation user)."""
    kind, full, mix = SPARSE_DEFAULT, None, None
    if tasks is not None and validation is not None:
        best = -np.inf
        cos = sparse.cosine(train, n_items, k)  # every candidate's part: computed once
        for candidate in SPARSE_CANDIDATES:
            topk, parts = _fit_topk(train, n_items, candidate, k, popular, support, cos=cos)
            m = topk.to_csr()
            recall = np.concatenate(
                [
                    _recall20(
                        sparse.scores_dense(m, support[i : i + EVAL_CHUNK]),
                        validation,
                        tasks.take(np.arange(i, min(i + EVAL_CHUNK, len(tasks)))),
                        threshold,
                        implicit,
                    )
                    for i in range(0, len(tasks), EVAL_CHUNK)
                ]
            )
            value = _mean_recall(recall)
            log.info("item-item candidate %s: validation Recall@20 %.4f", _name(candidate, k), value)
            if value > best:
                best, kind, full, mix = value, candidate, topk, parts
        log.info("item-item blend: %s (validation Recall@20 %.4f)", _name(kind, k), best)
        del cos
    if full is None:
        full, mix = _fit_topk(train, n_items, kind, k, popular, support)
    scale = 1.0 / sparse.spread(full.to_csr(), support)
    rows = np.arange(train.n_users)
    stacked = TopK(np.empty((2, *full.shape), np.int32), np.empty((2, *full.shape), np.float32))
    for fold in (0, 1):  # filled in place: no third copy of the two folds
        topk = _fit_topk(train.subset(rows[rows % 2 != fold]), n_items, kind, k, popular, support, mix)[0]
        stacked.idx[fold] = topk.idx
        stacked.val[fold] = topk.val * np.float32(scale)
    return full.scaled(scale), stacked, _name(kind, k)
