"""Step 7 of the training recipe (:mod:`recsys.training`): the weights the trained model's paths get,
chosen on the validation users (never on new users), each only where validation shows it helps.

In the order :func:`choose_after_training` runs them:

1. :func:`choose_rank_mix`: the weights of the ranking paths (support encoder, item-item);
2. :mod:`recsys.added_paths`: the classical ranking paths added to the model's scores (a liked-only
   item-item fold-in, then the implicit-ALS fold-in), each fit and weight;
3. :func:`choose_fold_in_weight`: the weight of the rating fold-in (0: the item's baseline alone);
4. :func:`choose_mf_fallback`: how far the rating prediction moves towards a biased MF's fold-in;
5. :func:`choose_rating_mix`: the rating combiner, each user's weights of the two fold-ins and a rating
   item-kNN read from the support (:mod:`recsys.models.rating_mix`, :mod:`recsys.models.rating_knn`),
   kept where a cross-fit shows a lower MAE;
6. :func:`choose_trend`: the trend prior's half-life, weight and its decay with the support's size.

The weights live in the head's buffers (:mod:`recsys.models.path_weights`, :mod:`recsys.models.als_path`)
and are saved with the model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from recsys import added_paths
from recsys.config import RecommenderConfig
from recsys.data.tasks import TaskSet, UserLog
from recsys.features.space import FeatureSpace
from recsys.meta.maml import MetaLearner
from recsys.meta.scoring import CatalogueCache, predict_tasks
from recsys.meta.validation import Combine, catalogue_scores, catalogue_values, evaluate_rating_tasks
from recsys.metrics.task_metrics import support_arrays
from recsys.models import rating_knn, rating_mix, trend
from recsys.models.classical.mf import BiasedMF, FittedMFs
from recsys.models.heads import Head
from recsys.utils.collectives import rank0_alone

log = logging.getLogger(__name__)


@rank0_alone
def choose_after_training(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    train_log: UserLog,
    val_log: UserLog,
    tasks: TaskSet,
    mfs: FittedMFs | None = None,
) -> dict[str, Any]:
    """Step 7: every choice the head and the config call for, in order; the model's ``info`` entries
    (``rank_mix``, ``classical_item_item``, ``als_path``, ``fold_in_weight``, ``mf_fallback``,
    ``rating_mix``, ``trend``) of those made. ``mfs``: the training
    log's biased MFs fitted so far (the ALS start's). Under torch.distributed rank 0 chooses alone and
    the other ranks take its weights and entries (:func:`~recsys.utils.collectives.rank0_alone`)."""
    head = learner.head
    info: dict[str, Any] = {}
    if wants_rank_mix(head, config):
        info["rank_mix"] = choose_rank_mix(learner, space, config, val_log, tasks)
    if added_paths.wants_cf_path(head, config):
        info["classical_item_item"] = added_paths.choose_cf_path(
            learner, space, config, train_log, val_log, tasks
        )
    if added_paths.wants_als_path(head, config):
        info["als_path"] = added_paths.choose_als_path(learner, space, config, train_log, val_log, tasks)
    if wants_fold_in_weight(head, config, space):
        info["fold_in_weight"] = choose_fold_in_weight(learner, space, config, val_log, tasks)
    if wants_mf_fallback(head, space):
        mfs = _training_mfs(mfs, train_log, head, config)
        info["mf_fallback"] = choose_mf_fallback(learner, space, config, train_log, val_log, tasks, mfs)
        if config.model.hybrid.rating_mix:
            info["rating_mix"] = choose_rating_mix(learner, space, config, train_log, val_log, tasks, mfs)
    if wants_trend(head, config):
        info["trend"] = choose_trend(learner, space, config, train_log, val_log, tasks)
    return info


# ---- 7.1 the ranking paths' weights -------------------------------------------------------------
RANK_MIXES = ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (1.0, 0.5), (1.0, 2.0), (0.5, 1.0), (1.0, 4.0))
"""Candidate (support encoder, item-item) weights; the first is the model as trained."""


def wants_rank_mix(head: Head, config: RecommenderConfig) -> bool:
    """Whether the head has ranking paths to weigh and the config asks for it (``model.hybrid.rank_mix``)."""
    return bool(head.capabilities.path_weights and head.item_item_active and config.model.hybrid.rank_mix)


def choose_rank_mix(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    val_log: UserLog,
    tasks: TaskSet,
) -> dict[str, Any]:
    """Step 7.1: the weights of the support-encoder and item-item ranking paths that rank the validation
    users' held-out items best (Recall@20 + nDCG@10) among :data:`RANK_MIXES`; the model as trained
    (both 1) wins ties, so the weights move only where validation users show it helps. Returns the
    choice for ``info["rank_mix"]``."""
    head = learner.head
    cache = CatalogueCache(learner, space, torch.device("cpu"))  # the mix leaves the item side as it is

    def score(chunk: TaskSet) -> list[np.ndarray]:  # each path's scores once; a mix is their weighted sum
        paths = []
        for weights in ((1.0, 0.0), (0.0, 1.0)):
            head.set_rank_mix(*weights)
            paths.append(catalogue_scores(learner, space, val_log, chunk, cache=cache))
        return paths

    def mix(w: tuple[float, float]) -> Combine:
        return lambda p, out: torch.mul(p[0], w[0], out=out).add_(p[1], alpha=w[1])

    mixes = {w: mix(w) for w in RANK_MIXES}
    quality = catalogue_values(score, mixes, space, val_log, tasks, config.meta.rank_threshold)
    values = {w: q["recall@20"] + q["cat_ndcg@10"] for w, q in quality.items()}
    best = max(RANK_MIXES, key=lambda w: (values[w], w == RANK_MIXES[0]))
    head.set_rank_mix(*best)
    log.info(
        "ranking paths: support encoder x %g, item-item x %g (validation Recall@20 + nDCG@10 %.4f; "
        "as trained %.4f, encoder alone %.4f, item-item alone %.4f)",
        *best,
        values[best],
        values[(1.0, 1.0)],
        values[(1.0, 0.0)],
        values[(0.0, 1.0)],
    )
    return {
        "support_encoder": best[0],
        "item_item": best[1],
        "validation_recall20_plus_ndcg10": {f"{e:g},{i:g}": round(v, 5) for (e, i), v in values.items()},
    }


# ---- 7.3 the rating fold-in's weight -------------------------------------------------------------
FOLD_IN_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)
"""Candidate weights of the rating fold-in; the first is the model as trained."""


def wants_fold_in_weight(head: Head, config: RecommenderConfig, space: FeatureSpace) -> bool:
    """Whether the head's fold-in weight is to be chosen (``model.hybrid.fold_in_weight``; ratings only)."""
    return bool(head.capabilities.path_weights and config.model.hybrid.fold_in_weight and not space.implicit)


def choose_fold_in_weight(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    val_log: UserLog,
    tasks: TaskSet,
) -> dict[str, Any]:
    """Step 7.3: the weight of the user's fold-in term in the rating prediction with the lowest
    validation MAE among :data:`FOLD_IN_WEIGHTS` (as trained, 1, wins ties). Returns the choice for
    ``info["fold_in_weight"]``."""
    head = learner.head
    values = {}
    for weight in FOLD_IN_WEIGHTS:
        head.set_fold_in_weight(weight)
        values[weight] = evaluate_rating_tasks(learner, space, val_log, tasks)["mae"]
    best = min(FOLD_IN_WEIGHTS, key=lambda w: (values[w], w != FOLD_IN_WEIGHTS[0]))
    head.set_fold_in_weight(best)
    log.info(
        "rating fold-in weight: %g (validation MAE %.4f; as trained %.4f, item baseline alone %.4f)",
        best,
        values[best],
        values[1.0],
        values[0.0],
    )
    return {"weight": best, "validation_mae": {f"{w:g}": round(v, 5) for w, v in values.items()}}


# ---- 7.4 the classical rating fallback ------------------------------------------------------------
MF_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Candidate weights of the MF fallback in the rating prediction; the first (off) is the model as trained."""
MF_CANDIDATES = ({"factors": 8}, {"factors": 32})
"""The biased MFs fitted for the fallback (the ``mf-als`` baseline's grid of factors; its other defaults)."""


def wants_mf_fallback(head: Head, space: FeatureSpace) -> bool:
    """Whether the head keeps the MF fallback's buffers (``model.hybrid.mf_fallback``; ratings only)."""
    return bool(head.capabilities.path_weights and head.mf_design.numel() and not space.implicit)


def choose_mf_fallback(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    train_log: UserLog,
    val_log: UserLog,
    tasks: TaskSet,
    mfs: FittedMFs | None = None,
) -> dict[str, Any]:
    """Step 7.4: fit each of :data:`MF_CANDIDATES` on the training users (or take it from ``mfs``) and
    keep the (MF, weight) of :data:`MF_WEIGHTS` with the lowest validation MAE; weight 0 (the model as
    trained) wins ties. Returns the choice for ``info["mf_fallback"]``."""
    head = learner.head
    mfs = _training_mfs(mfs, train_log, head, config)
    head.set_mf_weight(0.0)
    own = evaluate_rating_tasks(learner, space, val_log, tasks)["mae"]
    best: tuple[float, float, dict[str, Any] | None, BiasedMF | None] = (own, 0.0, None, None)
    values: dict[str, float] = {"0": round(own, 5)}
    for params in MF_CANDIDATES:
        mf = mfs.get(**params)
        _set_mf(head, mf)
        for weight in MF_WEIGHTS[1:]:
            head.set_mf_weight(weight)
            mae = evaluate_rating_tasks(learner, space, val_log, tasks)["mae"]
            values[f"{params['factors']} factors x {weight:g}"] = round(mae, 5)
            if mae < best[0]:
                best = (mae, weight, params, mf)
    mae, weight, params, mf = best
    if mf is not None:
        _set_mf(head, mf)
    head.set_mf_weight(weight)
    chosen = f"{params['factors']} factors, weight {weight:g}" if params else "off"
    log.info("rating MF fallback: %s (validation MAE %.4f; the model as trained %.4f)", chosen, mae, own)
    return {
        "weight": weight,
        "factors": params["factors"] if params else None,
        "chosen": chosen,
        "validation_mae": values,
    }


def _training_mfs(
    mfs: FittedMFs | None, train_log: UserLog, head: Head, config: RecommenderConfig
) -> FittedMFs:
    """``mfs`` where they are the training log's (the ALS start's), else a fresh set for it."""
    n = head.mf_design.shape[0]
    return (
        mfs
        if mfs is not None and mfs.of(train_log, n, config.train.seed)
        else FittedMFs(train_log, n, config.train.seed)
    )


def _set_mf(head: Head, mf: BiasedMF) -> None:
    head.set_mf_fallback(
        torch.from_numpy(mf._item_design()).to(head.mf_design),
        torch.from_numpy(mf.mu + mf.item_bias).to(head.mf_base),
        torch.from_numpy(mf._reg).to(head.mf_reg),
        mf.mu,
        torch.from_numpy(mf.item_counts > 0).to(head.mf_seen),
    )


# ---- 7.5 the rating combiner -----------------------------------------------------------------------
def rating_parts(
    learner: MetaLearner, space: FeatureSpace, val_log: UserLog, tasks: TaskSet
) -> dict[str, np.ndarray]:
    """The rating combiner's inputs, one entry per query rating of ``tasks`` (flat): ``task`` (its task),
    ``y`` (the rating minus the item's baseline), ``fold`` (the head's fold-in term), ``mf`` (the MF
    fold-in minus the baseline; 0 where the MF never saw the item rated), ``knn`` (the item-kNN term:
    0 while the head has no neighbour lists), ``seen``, ``now`` (the
    prediction minus the baseline with the fold-in weight and fallback as they stand, the combiner off)
    and ``features`` [n, N_FEATURES] (the task's support, :func:`~recsys.models.rating_mix.support_features`).
    The head is left as it was."""
    head = learner.head
    weights = float(head.fold_in_weight), float(head.mf_weight)
    coef = head.rate_coef.clone()
    head.set_rate_mix(torch.zeros_like(coef))

    def predict(fold_in: float, mf: float) -> np.ndarray:
        head.set_fold_in_weight(fold_in)
        head.set_mf_weight(mf)
        return predict_tasks(learner, space, val_log, tasks).astype(np.float64)

    try:
        base = predict(0.0, 0.0)
        parts = {"fold": predict(1.0, 0.0) - base, "mf": predict(0.0, 1.0) - base}
    finally:
        head.set_fold_in_weight(weights[0])
        head.set_mf_weight(weights[1])
        head.set_rate_mix(coef)
    mask = tasks.query >= 0
    query = tasks.query[mask]
    items, ratings = support_arrays(val_log, tasks)
    features = torch.vmap(rating_mix.support_features, in_dims=(0, 0, None))(
        torch.from_numpy(ratings).double(), torch.from_numpy(items >= 0), head.mf_mu.double()
    ).numpy()
    task = np.nonzero(mask)[0]
    fold, mf = parts["fold"][mask], parts["mf"][mask]
    seen = head.mf_seen[torch.from_numpy(val_log.items[query])].numpy() > 0
    w, m = weights  # the head's prediction as it stands (mf_mix): own + m (mf - own) on seen items
    return {
        "task": task,
        "y": val_log.ratings[query] - base[mask],
        "seen": seen,
        "features": features[task],
        "fold": fold,
        "mf": mf,
        "knn": knn_part(head, val_log, tasks),
        "now": w * fold + m * seen * (mf - w * fold),
    }


def knn_part(head: Head, log: UserLog, tasks: TaskSet, chunk: int = 256) -> np.ndarray:
    """The item-kNN term of each query rating of ``tasks`` (flat, as :func:`rating_parts`), by the
    head's own :meth:`~recsys.models.path_weights.PathWeights.knn_term` (zeros without its lists)."""
    mask = tasks.query >= 0
    if not head.knn_idx.numel():
        return np.zeros(int(mask.sum()))
    items, ratings = support_arrays(log, tasks)
    out = np.zeros(tasks.query.shape)
    with torch.no_grad():
        for start in range(0, len(tasks), chunk):
            rows = slice(start, start + chunk)
            it = torch.from_numpy(items[rows])
            sy = torch.from_numpy(ratings[rows]).to(head.knn_val)
            base = head.mf_base[it.clamp_min(0)]
            terms = torch.vmap(head.knn_term)(it, base, sy, it >= 0)  # [chunk, n_catalogue]
            query = torch.from_numpy(log.items[np.maximum(tasks.query[rows], 0)])
            out[rows] = terms.gather(1, query).double().numpy()
    return out[mask]


def choose_rating_mix(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    train_log: UserLog,
    val_log: UserLog,
    tasks: TaskSet,
    mfs: FittedMFs,
) -> dict[str, Any]:
    """Step 7.5: fit the rating item-kNN's neighbour lists on ``train_log``, then the rating combiner
    (its three terms) on the validation tasks plus the long ones
    (:func:`~recsys.added_paths.with_long_tasks`) with the MF the fallback chose (each of
    :data:`MF_CANDIDATES` where it chose none), starting from the fold-in weight and fallback as chosen;
    keep the one whose cross-fitted MAE (:func:`~recsys.models.rating_mix.cross_fit_task_mae`) is lowest
    if it is below the start's by more than the noise (:func:`~recsys.models.rating_mix.clears_noise`),
    refitted on every validation user. Returns the choice for ``info["rating_mix"]``."""
    head = learner.head
    tasks = added_paths.with_long_tasks(val_log, tasks, config)
    start = rating_mix.start_coef(float(head.fold_in_weight), float(head.mf_weight))
    chosen_mf = float(head.mf_weight) > 0
    head.set_rating_knn(rating_knn.fit_rating_knn(train_log, head.mf_design.shape[0]))
    best: tuple[float, np.ndarray | None, Any, bool] = (np.inf, None, None, False)
    values: dict[str, float] = {}
    own = np.zeros(0)
    for params in [None] if chosen_mf else MF_CANDIDATES:
        if params is not None:
            _set_mf(head, mfs.get(**params))
        parts = rating_parts(learner, space, val_log, tasks)
        own = rating_mix.per_user_mae(parts["now"], parts["y"], parts["task"], len(tasks))
        crossed = rating_mix.cross_fit_task_mae(parts, tasks.users, start, config.train.seed)
        mae = float(np.nanmean(crossed))
        values["as chosen" if params is None else f"{params['factors']} factors"] = round(mae, 5)
        if mae < best[0]:
            every = np.ones(len(parts["y"]), dtype=bool)
            best = (
                mae,
                rating_mix.fit_parts(parts, every, start),
                params,
                rating_mix.clears_noise(crossed - own),
            )
    mae, coef, params, keep = best
    if keep and params is not None:  # the fallback is off (weight 0): its buffers take the MF kept
        _set_mf(head, mfs.get(**params))
    if not keep or not coef[2].any():
        head.set_rating_knn(None)  # the lists are saved with the model only where the term is used
    head.set_rate_mix(torch.from_numpy(coef if keep else np.zeros_like(start)).to(head.rate_mix))
    chosen = "off" if not keep else "on" + (f" (MF {params['factors']} factors)" if params else "")
    log.info(
        "rating combiner: %s (validation MAE cross-fitted %.4f; fold-in weight and fallback as chosen %.4f)",
        chosen,
        mae,
        float(np.nanmean(own)),
    )
    return {
        "chosen": chosen,
        "coefficients": coef.round(5).tolist() if keep else None,
        "features": list(rating_mix.FEATURES),
        "parts": list(rating_mix.PARTS),
        "item_knn_neighbours": rating_knn.NEIGHBOURS,
        "validation_mae_cross_fitted": values,
        "validation_mae_start": round(float(np.nanmean(own)), 5),
        "validation_tasks": len(tasks),
    }


# ---- 7.6 the trend prior ---------------------------------------------------------------------------
def trend_logs(train_log: UserLog, space: FeatureSpace, config: RecommenderConfig) -> dict[str, UserLog]:
    """The interactions a trend prior may count: every one (``"all"``) and, for explicit ratings with a
    relevance threshold, the liked ones (``"liked"``: rated at or above it), the positive definitions
    the ``popularity`` / ``trending`` baselines choose between."""
    threshold = config.meta.rank_threshold
    logs = {"all": train_log}
    if not space.implicit and threshold is not None:
        logs["liked"] = train_log.keep(train_log.ratings >= threshold)
    return logs


def wants_trend(head: Head, config: RecommenderConfig) -> bool:
    """Whether the head takes a trend prior and the config asks for one (``model.hybrid.trend``)."""
    return bool(head.capabilities.trend_prior and config.model.hybrid.trend)


def choose_trend(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    train_log: UserLog,
    val_log: UserLog,
    tasks: TaskSet,
) -> dict[str, Any]:
    """Step 7.6: pick the trend prior's half-life, positives (:func:`trend_logs`) and weight (weight 0:
    none) on the validation users' catalogue Recall@20 + nDCG@10, then, for the best prior, its weight's
    decay with the support's size (:data:`~recsys.models.trend.DECAYS`; decay 0 and no prior stay
    candidates, and win ties), and set it on the head. Returns the choice for ``info["trend"]``."""
    head = learner.head
    n = space.n_items
    none = np.zeros(n, dtype=np.float32)
    # the prior adds weight(n) * prior[item] to every user's ranking scores: score once without it
    head.set_trend(torch.from_numpy(none), 0.0)
    logs = trend_logs(train_log, space, config)
    priors = {
        (half_life, positives): trend.trend_prior(positives_log, n, half_life)
        for positives, positives_log in logs.items()
        for half_life in trend.candidates(train_log)
    }
    cache = CatalogueCache(learner, space, torch.device("cpu"))
    tensors = {key: torch.from_numpy(prior) for key, prior in priors.items()}

    def score(chunk: TaskSet) -> list[np.ndarray]:  # the model's scores and each task's support size
        sizes = chunk.support_sizes[:, None].astype(np.float32)
        return [catalogue_scores(learner, space, val_log, chunk, cache=cache), sizes]

    def add(prior: torch.Tensor, weight: float, decay: float) -> Combine:
        if not decay:
            return lambda p, out: torch.add(p[0], prior, alpha=weight, out=out)
        w, d = torch.tensor(weight), torch.tensor(decay)
        return lambda p, out: torch.addcmul(p[0], trend.user_weight(w, d, p[1]), prior, out=out)

    def run(candidates: dict[Any, Combine]) -> dict[Any, float]:
        quality = catalogue_values(score, candidates, space, val_log, tasks, config.meta.rank_threshold)
        return {key: q["recall@20"] + q["cat_ndcg@10"] for key, q in quality.items()}

    values = run(
        {"off": lambda p, out: out.copy_(p[0])}
        | {(key, w, 0.0): add(t, w, 0.0) for key, t in tensors.items() for w in trend.WEIGHTS}
    )
    top = max(tensors, key=lambda key: max(values[(key, w, 0.0)] for w in trend.WEIGHTS))
    decays = [d for d in trend.DECAYS if d]
    values |= run({(top, w, d): add(tensors[top], w, d) for d in decays for w in trend.WEIGHTS})
    baseline = values["off"]
    best = max(values, key=lambda key: (values[key], key == "off"))  # equal values: the first, or off
    (half_life, positives), weight, decay = best if best != "off" else ((None, "all"), 0.0, 0.0)
    head.set_trend(torch.from_numpy(priors[(half_life, positives)] if weight else none), weight, decay)
    chosen = trend.describe(half_life, weight, decay) + (
        f" ({positives} positives)" if weight and len(logs) > 1 else ""
    )
    best_value = values[best]
    log.info(
        "trend prior: %s (validation Recall@20 + nDCG@10 %.4f, without %.4f)", chosen, best_value, baseline
    )
    return {
        "half_life_days": half_life,
        "positives": positives,
        "weight": weight,
        "decay": decay,
        "chosen": chosen,
        "validation_recall20_plus_ndcg10": round(best_value, 5),
        "validation_without": round(baseline, 5),
        # the prior of an item without training interactions: what items added later get
        "no_interactions": trend.no_interactions_value(logs[positives], n, half_life) if weight else 0.0,
    }
