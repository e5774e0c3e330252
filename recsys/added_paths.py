"""Step 7.2 of the training recipe (:mod:`recsys.post_training`): the classical ranking paths added to
the trained model's scores, each only where validation users show it helps.

In order:

1. :func:`choose_cf_path`: a classical item-item fold-in on the liked ratings
   (:mod:`recsys.models.cf_path`): EASE at four strengths or cosine item-kNN at two neighbourhood sizes,
   fitted on the training users' positives;
2. :func:`choose_als_path`: the implicit-ALS fold-in (:mod:`recsys.models.als_path`), its confidence
   and positives.

Both are chosen the same way (:func:`choose_addition`): the model's ranking scores on the validation
users' tasks (with what was chosen before), each candidate fit's scores alone, and the candidates
``model + weight * ratio * fit`` for the weights :data:`WEIGHTS`, where ``ratio`` is the model's score
spread over the fit's (on the first chunk of tasks), so the weights mean the same on every log; the
best Recall@20 + nDCG@10 wins, the model without the path ("off") winning ties.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from recsys.config import RecommenderConfig
from recsys.data.tasks import TaskSet, UserLog
from recsys.features.space import FeatureSpace
from recsys.meta.maml import MetaLearner
from recsys.meta.scoring import CatalogueCache
from recsys.meta.validation import Combine, catalogue_scores, catalogue_values
from recsys.models.als_path import ALS_WIDTH
from recsys.models.classical import BASELINES, ImplicitALS
from recsys.models.heads import Head

log = logging.getLogger(__name__)

WEIGHTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
"""Candidate weights of an added path, in units of the model's score spread over the path's."""
ALS_FITS = ({"alpha": 1.0}, {"alpha": 4.0})
"""Candidate fits of the ALS path (64 factors, penalty 20, as the ``implicit-als`` baseline's defaults),
each with every rating and, for explicit ratings, the liked ones as positives."""
CF_FITS = (
    ("ease", 500.0),
    ("ease", 2000.0),
    ("ease", 8000.0),
    ("ease", 32000.0),
    ("item-knn", 100),
    ("item-knn", 400),
)
"""Candidate matrices of the classical item-item path: the ``ease`` and ``item-knn`` baselines' grids
(their regularisation, their neighbourhood sizes), fitted on the liked ratings (every one on implicit
feedback)."""


def choose_addition(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    val_log: UserLog,
    tasks: TaskSet,
    weight: torch.Tensor,
    fits: list[Callable[[], None]],
) -> tuple[Any, dict[str, float]]:
    """Choose one added path's fit and weight (see the module): ``weight`` is the path's weight buffer,
    ``fits[k]()`` sets candidate ``k`` on the head. Leaves the best set (weight 0 when "off" wins);
    returns it ("off" or (fit index, weight in spread units)) and every candidate's validation value."""
    head = learner.head
    mix = head.rank_mix.tolist()
    others = [b for b in (head.als_weight, head.cf_weight) if b is not weight]
    kept = [float(b) for b in others]
    caches: dict[int, CatalogueCache] = {}
    ratios: list[float] = []

    def use(k: int) -> None:  # k = 0: the model as chosen so far, without the path; else fit k alone
        head.set_rank_mix(*(mix if k == 0 else (0.0, 0.0)))
        for buffer, value in zip(others, kept, strict=True):
            buffer.fill_(value if k == 0 else 0.0)
        weight.fill_(0.0 if k == 0 else 1.0)
        if k:
            fits[k - 1]()

    def score(chunk: TaskSet) -> list[np.ndarray]:
        paths = []
        for k in range(len(fits) + 1):
            use(k)
            cache = caches.setdefault(k, CatalogueCache(learner, space, torch.device("cpu")))
            paths.append(catalogue_scores(learner, space, val_log, chunk, cache=cache))
        if not ratios:  # the weights' unit, from the first chunk
            ratios.extend(float(paths[0].std()) / max(float(p.std()), 1e-12) for p in paths[1:])
        return paths

    def add(k: int, w: float) -> Combine:
        return lambda p, out: torch.add(p[0], p[k], alpha=w * ratios[k - 1], out=out)

    candidates: dict[Any, Combine] = {"off": lambda p, out: out.copy_(p[0])}
    candidates |= {(k, w): add(k, w) for k in range(1, len(fits) + 1) for w in WEIGHTS}
    threshold = config.meta.rank_threshold
    quality = catalogue_values(score, candidates, space, val_log, tasks, threshold)
    values = {key: q["recall@20"] + q["cat_ndcg@10"] for key, q in quality.items()}
    best = max(values, key=lambda key: (values[key], key == "off"))
    use(0)
    if best != "off":
        k, w = best
        fits[k - 1]()
        weight.fill_(w * ratios[k - 1])
    return best, {str(key): round(v, 5) for key, v in values.items()}


def _positives(space: FeatureSpace, config: RecommenderConfig) -> tuple[str, float | None]:
    """The positives of a classical path's fit: the liked ratings (at or above the relevance
    threshold), every interaction on implicit feedback or without a threshold."""
    threshold = config.meta.rank_threshold
    return ("all", None) if space.implicit or threshold is None else ("liked", threshold)


def _report(name: str, chosen: str, values: dict[str, float], weight: torch.Tensor) -> dict[str, Any]:
    best = max(values.values())
    log.info("%s: %s (validation Recall@20 + nDCG@10 %.4f; without %.4f)", name, chosen, best, values["off"])
    return {"chosen": chosen, "weight": float(weight), "validation_recall20_plus_ndcg10": values}


# ---- the classical item-item path ------------------------------------------------------------------
def wants_cf_path(head: Head, config: RecommenderConfig) -> bool:
    """Whether the head keeps the classical item-item path's matrix (``model.hybrid.classical_item_item``;
    dense catalogues only)."""
    return bool(
        head.capabilities.path_weights and head.cf_enabled and config.model.hybrid.classical_item_item
    )


def choose_cf_path(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    train_log: UserLog,
    val_log: UserLog,
    tasks: TaskSet,
) -> dict[str, Any]:
    """Fit each of :data:`CF_FITS` on the training users' positives and choose the path's matrix and
    weight (:func:`choose_addition`). Returns the choice for ``info["classical_item_item"]``."""
    head = learner.head
    positives, threshold = _positives(space, config)
    n = space.n_items
    params = {"positives": positives} | ({"threshold": threshold} if threshold is not None else {})
    tensors = []
    for kind, value in CF_FITS:
        if kind == "ease":
            matrix = BASELINES["ease"](lam=value, **params).fit(train_log, n).B
        else:
            matrix = BASELINES["item-knn"](K=int(value), **params).fit(train_log, n).similarity.toarray()
        tensors.append(torch.from_numpy(np.asarray(matrix, dtype=np.float32)))
    fits = [lambda t=t: head.set_cf(t, threshold) for t in tensors]
    best, values = choose_addition(learner, space, config, val_log, tasks, head.cf_weight, fits)
    if best == "off":
        head.drop_cf()
    chosen = (
        "off" if best == "off" else f"{CF_FITS[best[0] - 1][0]}:{CF_FITS[best[0] - 1][1]:g} x {best[1]:g}"
    )
    return _report("classical item-item path", f"{chosen} ({positives} positives)", values, head.cf_weight)


# ---- the implicit-ALS path -------------------------------------------------------------------------
def wants_als_path(head: Head, config: RecommenderConfig) -> bool:
    """Whether the head keeps the ALS path's buffers (``model.hybrid.als_path``)."""
    return bool(head.capabilities.path_weights and head.als_enabled and config.model.hybrid.als_path)


def choose_als_path(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    train_log: UserLog,
    val_log: UserLog,
    tasks: TaskSet,
) -> dict[str, Any]:
    """Fit implicit ALS on the training users for each of :data:`ALS_FITS` with every rating and (explicit
    ratings) the liked ones as positives, and choose the fit and weight (:func:`choose_addition`).
    Returns the choice for ``info["als_path"]``."""
    head = learner.head
    liked, threshold = _positives(space, config)
    kinds = [("all", None)] + ([(liked, threshold)] if liked == "liked" else [])
    fits, names = [], []
    for positives, t in kinds:
        for p in ALS_FITS:
            factors = _fit_als(train_log, space.n_items, config.train.seed, positives, t, p)
            fits.append(lambda f=factors, a=p["alpha"], t=t: head.set_als(f, 20.0, a, t))
            names.append(f"{positives} positives, alpha {p['alpha']:g}")
    best, values = choose_addition(learner, space, config, val_log, tasks, head.als_weight, fits)
    if best == "off":
        head.drop_als()
    chosen = "off" if best == "off" else f"{names[best[0] - 1]}, x {best[1]:g}"
    return _report("ALS ranking path", chosen, values, head.als_weight)


def _fit_als(
    log_: UserLog, n_items: int, seed: int, positives: str, threshold: float | None, params: dict[str, Any]
) -> torch.Tensor:
    """The item factors [n_items, ALS_WIDTH] of implicit ALS fitted on ``log_``'s positives."""
    kwargs = {"threshold": threshold} if threshold is not None else {}
    als = ImplicitALS(seed=seed, factors=ALS_WIDTH, positives=positives, **kwargs, **params).fit(
        log_, n_items
    )
    return torch.from_numpy(als.item_factors)
