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
spread over the fit's (on the first chunk of validation tasks), so the weights mean the same on every log. The best
Recall@20 + nDCG@10 on the validation tasks (supports of ``train.support_min`` to ``support_max``
ratings, the trained range) chooses the fit and its weight, the model without the path ("off") winning
ties. The weights of the other support-size bands (:mod:`recsys.models.support_bands`) are chosen apart,
for that fit (any fit where the path is off so far):

* supports of 1-2 ratings on :func:`short_tasks` (one per validation user), moving away from the trained
  range's choice only where the paired per-user difference's 95 % interval lies above 0
  (:data:`SHORT_BAND_MARGIN_SE`): the ALS path helps Gowalla's one-item supports and hurts from three
  on, while a free choice on small bands fits the noise of a few validation users;
* supports above 20 ratings on :func:`long_tasks` (21-100 ratings of the validation users who have
  them), so a user who brings 50 ratings gets the weight chosen for users like them rather than the one
  chosen for 5-rating supports.
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
from recsys.models.rating_mix import clears_noise
from recsys.models.support_bands import BAND_NAMES, N_BANDS
from recsys.utils.seeds import LONG_VALIDATION_TASKS, SHORT_VALIDATION_TASKS, Seeds

log = logging.getLogger(__name__)

WEIGHTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
"""Candidate weights of an added path, in units of the model's score spread over the path's."""
ALS_FITS = ({"alpha": 1.0}, {"alpha": 4.0})
"""Candidate fits of the ALS path (64 factors, penalty 20, as the ``implicit-als`` baseline's defaults),
each with every rating and, for explicit ratings, the liked ones as positives. The baseline's whole grid
(32 or 64 factors, penalty 5 or 20) was tried on 2026-12-06 and not kept: no suite part gained, and it
fitted four times as many ALS models (``docs/experiments/2026-12-06-als-grid``)."""
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


SHORT_BAND_MARGIN_SE = 1.96
"""How many standard errors (of the mean paired per-user difference on :func:`short_tasks`) the short
band's best candidate must beat the trained range's choice by to be taken (its 95 % interval above 0): the
best of up to 13 candidates on a few validation users clears one standard error easily (ML-100k
temporal's 94 moved it in 3 of 3 trainings, for no resolved gain on its test users); the suite's other
logs choose the same under either margin (``docs/experiments/2026-12-06-short-band``)."""

FITS_AT_ONCE = 4
"""How many candidate fits :func:`choose_addition` scores together (each a [chunk, n_items] array of up
to 128 MB and a catalogue cache beside the model's), so memory does not grow with the number of fits:
16 ALS fits at once (a grid tried on 2026-12-06) took 2.2 GB of scores a chunk and failed a
100,000-item catalogue's 6 GB address-space cap. The values do not depend on the grouping; the model's
scores are recomputed once a group (twice for the classical item-item path's 6 fits)."""

TRAINED = "1-20"
"""The report's name of the trained range's validation tasks (the middle band's weight and the fit)."""


def choose_addition(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    val_log: UserLog,
    tasks: TaskSet,
    weight: torch.Tensor,
    fits: list[Callable[[], None]],
) -> tuple[Any, dict[str, Any]]:
    """Choose one added path's fit and its weight in each support-size band (see the module): ``weight``
    is the path's weight buffer [N_BANDS], ``fits[k]()`` sets candidate ``k`` on the head; ``tasks``: the
    validation tasks (:func:`short_tasks` and :func:`long_tasks` are added here). Leaves the best set
    (every band 0 where "off" wins); returns it ("off" or (fit index, weights in spread units, one per
    band)) and the report's values: every candidate's validation value on each band's tasks and the
    number of those tasks."""
    head = learner.head
    mix = head.rank_mix.tolist()
    others = [b for b in (head.als_weight, head.cf_weight) if b is not weight]
    kept = [b.clone() for b in others]

    def use(k: int) -> None:  # k = 0: the model as chosen so far, without the path; else fit k alone
        head.set_rank_mix(*(mix if k == 0 else (0.0, 0.0)))
        for buffer, value in zip(others, kept, strict=True):
            buffer.copy_(value if k == 0 else torch.zeros_like(value))
        weight.fill_(0.0 if k == 0 else 1.0)
        if k:
            fits[k - 1]()

    short, long = short_tasks(val_log, config), long_tasks(val_log, config)
    part = np.repeat([1, 0, 2], [len(tasks), len(short), len(long)])  # each task's band of choice
    all_tasks = concat_tasks(concat_tasks(tasks, short), long)
    per, ratios = _candidate_values(learner, space, config, val_log, all_tasks, len(tasks), use, len(fits))
    per_task = {key: q["recall@20"] + q["cat_ndcg@10"] for key, q in per.items()}
    values: dict[str, dict[Any, float]] = {TRAINED: {key: _mean(v[part == 1]) for key, v in per_task.items()}}
    best = _best(values[TRAINED])
    chosen = {1: best}
    for band in (0, 2):  # the fit chosen so far (any, while every band is off) and its weight in the band
        if not (part == band).any():  # no validation user has supports of that size: the trained range's
            chosen[band] = best
            continue
        fit = _first_fit(chosen)
        keys = [key for key in per_task if fit is None or key == "off" or key[0] == fit]
        values[BAND_NAMES[band]] = {key: _mean(per_task[key][part == band]) for key in keys}
        chosen[band] = _best(values[BAND_NAMES[band]])
        if band == 0:  # the short band keeps the trained range's choice unless its tasks show better
            behind = per_task[best][part == 0] - per_task[chosen[0]][part == 0]  # beyond noise
            chosen[0] = chosen[0] if clears_noise(behind, SHORT_BAND_MARGIN_SE) else best
    use(0)
    report = {
        "values": {band: {str(key): round(v, 5) for key, v in vals.items()} for band, vals in values.items()},
        "tasks": {BAND_NAMES[b]: int((part == b).sum()) for b in range(N_BANDS)},
    }
    k = _first_fit(chosen)
    if k is None:
        return "off", report
    fits[k - 1]()
    weights = tuple(0.0 if chosen[b] == "off" else chosen[b][1] for b in range(N_BANDS))
    weight.copy_(torch.tensor([w * ratios[k - 1] for w in weights]))
    return (k, weights), report


def _candidate_values(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    val_log: UserLog,
    all_tasks: TaskSet,
    n_trained: int,
    use: Callable[[int], None],
    n_fits: int,
) -> tuple[dict[Any, dict[str, np.ndarray]], list[float]]:
    """Each candidate's per-task validation values ("off" and ``(fit k, weight w)``: the model plus ``w``
    times fit ``k``'s scores in units of the model's score spread over the fit's) and those units, one
    per fit, from the first chunk's first ``n_trained`` tasks (the trained range). ``use(k)`` sets the
    head to the model (0) or to fit ``k`` alone. Fits are scored :data:`FITS_AT_ONCE` at a time beside
    the model, whose catalogue cache serves every group."""
    caches: dict[int, CatalogueCache] = {}
    ratios = [0.0] * n_fits

    def scorer(group: list[int]) -> Callable[[TaskSet], list[np.ndarray]]:
        """Each chunk's scores of the model (path 0) and of the group's fits alone, in that order."""
        first = [True]

        def score(chunk: TaskSet) -> list[np.ndarray]:
            paths = []
            for k in (0, *group):
                use(k)
                if k not in caches:
                    caches[k] = CatalogueCache(learner, space, torch.device("cpu"))
                paths.append(catalogue_scores(learner, space, val_log, chunk, cache=caches[k]))
            if first[0]:  # the weights' unit, from the first chunk's validation tasks (the trained range)
                first[0] = False
                rows = slice(0, n_trained) if n_trained else slice(None)
                spread = [float(p[rows].std()) for p in paths]
                for k, s in zip(group, spread[1:], strict=True):
                    ratios[k - 1] = spread[0] / max(s, 1e-12)
            return paths

        return score

    def add(position: int, k: int, w: float) -> Combine:
        return lambda p, out: torch.add(p[0], p[position], alpha=w * ratios[k - 1], out=out)

    per: dict[Any, dict[str, np.ndarray]] = {}
    for start in range(0, max(n_fits, 1), FITS_AT_ONCE):
        group = list(range(start + 1, min(n_fits, start + FITS_AT_ONCE) + 1))
        candidates: dict[Any, Combine] = {"off": lambda p, out: out.copy_(p[0])} if start == 0 else {}
        candidates |= {(k, w): add(i + 1, k, w) for i, k in enumerate(group) for w in WEIGHTS}
        per |= catalogue_task_values(
            scorer(group), candidates, space, val_log, all_tasks, config.meta.rank_threshold
        )
        for k in group:
            caches.pop(k, None)
    return per, ratios


def _first_fit(chosen: dict[int, Any]) -> int | None:
    """The fit of the first band (in choosing order) whose choice is not "off"; None while all are."""
    return next((b[0] for b in chosen.values() if b != "off"), None)


def _best(values: dict[Any, float]) -> Any:
    """The candidate with the best value, "off" winning ties."""
    return max(values, key=lambda key: (values[key], key == "off"))


def _mean(values: np.ndarray) -> float:
    """The mean over tasks with relevant items (NaN-free; -inf with none, so it never wins)."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else -np.inf


SHORT_SUPPORT = (1, 2)
"""Support sizes of :func:`short_tasks` (drawn uniformly)."""
LONG_SUPPORT = (21, 100)
"""Support sizes of :func:`long_tasks` (drawn log-uniformly; at most all but the query)."""
BAND_TASKS = 1000
"""The most validation users :func:`short_tasks` and :func:`long_tasks` take (a random subset beyond)."""


def short_tasks(val_log: UserLog, config: RecommenderConfig) -> TaskSet:
    """Validation tasks with supports in the first band (:data:`SHORT_SUPPORT`), one per validation user
    with at least the band's upper end plus the query (up to :data:`BAND_TASKS` of them), from the
    ``short-validation-tasks`` stream of the training seed."""
    return _band_tasks(val_log, config, SHORT_SUPPORT, SHORT_VALIDATION_TASKS, log_uniform=False)


def long_tasks(val_log: UserLog, config: RecommenderConfig) -> TaskSet:
    """Validation tasks with supports in the last band (:data:`LONG_SUPPORT`), one per validation user
    with more ratings than its lower end plus the query (up to :data:`BAND_TASKS` of them), from the
    ``long-validation-tasks`` stream of the training seed. None qualify on a log of short users."""
    return _band_tasks(val_log, config, LONG_SUPPORT, LONG_VALIDATION_TASKS, log_uniform=True)


def _band_tasks(
    val_log: UserLog, config: RecommenderConfig, sizes: tuple[int, int], stream: str, log_uniform: bool
) -> TaskSet:
    """Validation users' tasks with supports of ``sizes`` ratings, drawn as the validation tasks are
    (their order, their query) from the seed's ``stream``; users need ``sizes[0]`` (log-uniform draws)
    or ``sizes[1]`` ratings besides the query."""
    cfg = config.train
    rng = Seeds(cfg.seed).rng(stream)
    need = (sizes[0] if log_uniform else sizes[1]) + cfg.validation_query
    eligible = np.nonzero(val_log.counts >= need)[0]
    if len(eligible) > BAND_TASKS:
        eligible = np.sort(rng.choice(eligible, BAND_TASKS, replace=False))
    return sample_tasks(
        val_log,
        eligible,
        rng,
        support_size=sizes,
        query_size=cfg.validation_query,
        support_order=cfg.support_order if cfg.validation_order == "auto" else cfg.validation_order,
        query_order=cfg.query_order,
        log_uniform=log_uniform,
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


def _report(name: str, chosen: str, report: dict[str, Any], weight: torch.Tensor) -> dict[str, Any]:
    values = report["values"]
    trained = values[TRAINED]

    def band(label: str) -> str:
        vals = values.get(label)
        return f"{max(vals.values()):.4f}, without {vals['off']:.4f}" if vals else "no validation user"

    log.info(
        "%s: %s (validation Recall@20 + nDCG@10, supports 1-20: %.4f, without %.4f; 1-2: %s; above 20: %s)",
        name,
        chosen,
        max(trained.values()),
        trained["off"],
        band(BAND_NAMES[0]),
        band(BAND_NAMES[-1]),
    )
    return {
        "chosen": chosen,
        "weight": dict(zip(BAND_NAMES, weight.tolist(), strict=True)),
        "validation_tasks": report["tasks"],
        "validation_recall20_plus_ndcg10": trained,
        "validation_recall20_plus_ndcg10_short_supports": values.get(BAND_NAMES[0], {}),
        "validation_recall20_plus_ndcg10_long_supports": values.get(BAND_NAMES[-1], {}),
    }


def _describe(best: Any) -> str:
    """`` x w1/w2/w3 (support 1-2/3-20/21+)``: each band's weight (in spread units) of a chosen fit."""
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
    best, report = choose_addition(learner, space, config, val_log, tasks, head.cf_weight, fits)
    if best == "off":
        head.drop_cf()
    chosen = (
        "off" if best == "off" else f"{CF_FITS[best[0] - 1][0]}:{CF_FITS[best[0] - 1][1]:g}{_describe(best)}"
    )
    name = "classical item-item path"
    return _report(name, f"{chosen} ({positives} positives)", report, head.cf_weight)


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
    best, report = choose_addition(learner, space, config, val_log, tasks, head.als_weight, fits)
    if best == "off":
        head.drop_als()
    chosen = "off" if best == "off" else f"{names[best[0] - 1]},{_describe(best)}"
    return _report("ALS ranking path", chosen, report, head.als_weight)


def _fit_als(
    log_: UserLog, n_items: int, seed: int, positives: str, threshold: float | None, params: dict[str, Any]
) -> torch.Tensor:
    """The item factors [n_items, ALS_WIDTH] of implicit ALS fitted on ``log_``'s positives."""
    kwargs = {"threshold": threshold} if threshold is not None else {}
    als = ImplicitALS(seed=seed, factors=ALS_WIDTH, positives=positives, **kwargs, **params).fit(
        log_, n_items
    )
    return torch.from_numpy(als.item_factors)
