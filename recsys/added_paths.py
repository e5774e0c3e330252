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
spread over the fit's (on the first chunk of tasks), so the weights mean the same on every log. The best
Recall@20 + nDCG@10 on the validation tasks (supports of ``train.support_min`` to ``support_max``
ratings, the trained range) chooses the fit and its weight, the model without the path ("off") winning
ties. The weight of supports above 20 ratings (:mod:`recsys.models.support_bands`) is chosen apart, for
that fit (any fit where the path is off for short supports), on :func:`long_tasks`: supports of 21-100
ratings of the validation users who have them, so a user who brings 50 ratings gets the weight chosen
for users like them rather than the one chosen for 5-rating supports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from recsys.config import RecommenderConfig
from recsys.data.tasks import TaskSet, UserLog, concat_tasks, sample_tasks
from recsys.features.space import FeatureSpace
from recsys.meta.maml import MetaLearner
from recsys.meta.scoring import CatalogueCache
from recsys.meta.validation import Combine, catalogue_scores, catalogue_task_values
from recsys.models.als_path import ALS_WIDTH
from recsys.models.classical import BASELINES, ImplicitALS
from recsys.models.heads import Head
from recsys.models.support_bands import BAND_NAMES, N_BANDS, bands_of
from recsys.utils.seeds import LONG_VALIDATION_TASKS, Seeds

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
) -> tuple[Any, dict[str, dict[str, float]]]:
    """Choose one added path's fit and its weight in each support-size band (see the module): ``weight``
    is the path's weight buffer [N_BANDS], ``fits[k]()`` sets candidate ``k`` on the head; ``tasks``:
    the validation tasks followed by :func:`long_tasks`. Leaves the best set (every band 0 where "off"
    wins); returns it ("off" or (fit index, weights in spread units, one per band)) and every
    candidate's validation value in each band."""
    head = learner.head
    mix = head.rank_mix.tolist()
    others = [b for b in (head.als_weight, head.cf_weight) if b is not weight]
    kept = [b.clone() for b in others]
    caches: dict[int, CatalogueCache] = {}
    ratios: list[float] = []

    def use(k: int) -> None:  # k = 0: the model as chosen so far, without the path; else fit k alone
        head.set_rank_mix(*(mix if k == 0 else (0.0, 0.0)))
        for buffer, value in zip(others, kept, strict=True):
            buffer.copy_(value if k == 0 else torch.zeros_like(value))
        weight.fill_(0.0 if k == 0 else 1.0)
        if k:
            fits[k - 1]()

    def score(chunk: TaskSet) -> list[np.ndarray]:
        paths = []
        for k in range(len(fits) + 1):
            use(k)
            cache = caches.setdefault(k, CatalogueCache(learner, space, torch.device("cpu")))
            paths.append(catalogue_scores(learner, space, val_log, chunk, cache=cache))
        if not ratios:  # the weights' unit, from the first chunk's supports of the trained range
            rows = bands_of(chunk.support_sizes) == 0
            rows = rows if rows.any() else slice(None)
            spread = [float(p[rows].std()) for p in paths]
            ratios.extend(spread[0] / max(s, 1e-12) for s in spread[1:])
        return paths

    def add(k: int, w: float) -> Combine:
        return lambda p, out: torch.add(p[0], p[k], alpha=w * ratios[k - 1], out=out)

    candidates: dict[Any, Combine] = {"off": lambda p, out: out.copy_(p[0])}
    candidates |= {(k, w): add(k, w) for k in range(1, len(fits) + 1) for w in WEIGHTS}
    per = catalogue_task_values(score, candidates, space, val_log, tasks, config.meta.rank_threshold)
    per_task = {key: q["recall@20"] + q["cat_ndcg@10"] for key, q in per.items()}
    long = bands_of(tasks.support_sizes) > 0
    values = {BAND_NAMES[0]: {key: _mean(v[~long]) for key, v in per_task.items()}}
    best = _best(values[BAND_NAMES[0]])
    if long.any():  # the fit chosen above (any, where it was off) and its weight on the long supports
        keys = [key for key in per_task if best == "off" or key == "off" or key[0] == best[0]]
        values[BAND_NAMES[1]] = {key: _mean(per_task[key][long]) for key in keys}
        best_long = _best(values[BAND_NAMES[1]])
    else:  # no validation user has that many ratings: the trained range's choice
        best_long = best
    use(0)
    report = {band: {str(key): round(v, 5) for key, v in vals.items()} for band, vals in values.items()}
    if best == best_long == "off":
        return "off", report
    k = best[0] if best != "off" else best_long[0]
    fits[k - 1]()
    chosen = tuple(0.0 if b == "off" else b[1] for b in (best, best_long))
    weight.copy_(torch.tensor([w * ratios[k - 1] for w in chosen]))
    return (k, chosen), report


def _best(values: dict[Any, float]) -> Any:
    """The candidate with the best value, "off" winning ties."""
    return max(values, key=lambda key: (values[key], key == "off"))


def _mean(values: np.ndarray) -> float:
    """The mean over tasks with relevant items (NaN-free; -inf with none, so it never wins)."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else -np.inf


LONG_SUPPORT = (21, 100)
"""Support sizes of :func:`long_tasks` (drawn log-uniformly; at most all but the query)."""
LONG_TASKS = 1000
"""The most validation users :func:`long_tasks` takes (a random subset beyond that)."""


def long_tasks(val_log: UserLog, config: RecommenderConfig) -> TaskSet:
    """Validation tasks with supports in the last band (:data:`LONG_SUPPORT`): for each validation user
    with more ratings than its lower end plus the query (up to :data:`LONG_TASKS` of them), drawn as the
    validation tasks are (their order, their query), from the ``long-validation-tasks`` stream of the
    training seed. None qualify on a log of short users: no tasks."""
    cfg = config.train
    rng = Seeds(cfg.seed).rng(LONG_VALIDATION_TASKS)
    eligible = np.nonzero(val_log.counts >= LONG_SUPPORT[0] + cfg.validation_query)[0]
    if len(eligible) > LONG_TASKS:
        eligible = np.sort(rng.choice(eligible, LONG_TASKS, replace=False))
    return sample_tasks(
        val_log,
        eligible,
        rng,
        support_size=LONG_SUPPORT,
        query_size=cfg.validation_query,
        support_order=cfg.support_order if cfg.validation_order == "auto" else cfg.validation_order,
        query_order=cfg.query_order,
        log_uniform=True,
        min_query=cfg.validation_query,
    )


def with_long_tasks(val_log: UserLog, tasks: TaskSet, config: RecommenderConfig) -> TaskSet:
    """``tasks`` followed by :func:`long_tasks` (one padded task set)."""
    return concat_tasks(tasks, long_tasks(val_log, config))


def _positives(space: FeatureSpace, config: RecommenderConfig) -> tuple[str, float | None]:
    """The positives of a classical path's fit: the liked ratings (at or above the relevance
    threshold), every interaction on implicit feedback or without a threshold."""
    threshold = config.meta.rank_threshold
    return ("all", None) if space.implicit or threshold is None else ("liked", threshold)


def _report(
    name: str, chosen: str, values: dict[str, dict[str, float]], weight: torch.Tensor, tasks: TaskSet
) -> dict[str, Any]:
    short, long = values[BAND_NAMES[0]], values.get(BAND_NAMES[1], {})
    log.info(
        "%s: %s (validation Recall@20 + nDCG@10, supports 1-20: %.4f, without %.4f; above 20: %s)",
        name,
        chosen,
        max(short.values()),
        short["off"],
        f"{max(long.values()):.4f}, without {long['off']:.4f}" if long else "no validation user",
    )
    sizes = np.bincount(bands_of(tasks.support_sizes), minlength=N_BANDS)
    return {
        "chosen": chosen,
        "weight": dict(zip(BAND_NAMES, weight.tolist(), strict=True)),
        "validation_tasks": dict(zip(BAND_NAMES, sizes.tolist(), strict=True)),
        "validation_recall20_plus_ndcg10": short,
        "validation_recall20_plus_ndcg10_long_supports": long,
    }


def _describe(best: Any) -> str:
    """`` x w1/w2 (support 1-20/21+)``: each band's weight (in spread units) of a chosen fit."""
    return " x " + "/".join(f"{w:g}" for w in best[1]) + f" (support {'/'.join(BAND_NAMES)})"


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
    tasks = with_long_tasks(val_log, tasks, config)
    best, values = choose_addition(learner, space, config, val_log, tasks, head.cf_weight, fits)
    if best == "off":
        head.drop_cf()
    chosen = (
        "off" if best == "off" else f"{CF_FITS[best[0] - 1][0]}:{CF_FITS[best[0] - 1][1]:g}{_describe(best)}"
    )
    name = "classical item-item path"
    return _report(name, f"{chosen} ({positives} positives)", values, head.cf_weight, tasks)


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
    tasks = with_long_tasks(val_log, tasks, config)
    best, values = choose_addition(learner, space, config, val_log, tasks, head.als_weight, fits)
    if best == "off":
        head.drop_als()
    chosen = "off" if best == "off" else f"{names[best[0] - 1]},{_describe(best)}"
    return _report("ALS ranking path", chosen, values, head.als_weight, tasks)


def _fit_als(
    log_: UserLog, n_items: int, seed: int, positives: str, threshold: float | None, params: dict[str, Any]
) -> torch.Tensor:
    """The item factors [n_items, ALS_WIDTH] of implicit ALS fitted on ``log_``'s positives."""
    kwargs = {"threshold": threshold} if threshold is not None else {}
    als = ImplicitALS(seed=seed, factors=ALS_WIDTH, positives=positives, **kwargs, **params).fit(
        log_, n_items
    )
    return torch.from_numpy(als.item_factors)
