"""The training recipe behind :meth:`recsys.recommender.ColdStartRecommender.fit`, one step a function.

The steps, in the order ``fit`` runs them:

1. :func:`prepare_log`: check the frames, drop duplicate pairs, fall back to implicit feedback when the
   ratings carry no signal, infer the feature fields, fix the rating scale;
2. :func:`split_validation`: hold validation users out of training (model selection);
3. :func:`fit_space`: the feature space of the training users' log, and :func:`user_logs` of both sides;
4. :func:`build_learner`: the network and meta-learner (seeded);
5. :func:`prepare_head`: what the head takes from the training log before meta-training (the ALS start
   of the item ids, :func:`set_item_offsets`, :func:`fit_item_item_blend`);
6. :func:`meta_train`: the outer loop (:class:`recsys.meta.trainer.MetaTrainer`), validated on the fixed
   :func:`validation_tasks_of` the validation users;
7. :func:`recsys.post_training.choose_after_training`: the weights of the ranking paths, of the rating
   fold-in and of the trend prior, chosen on the validation users (for heads that take them);
8. :func:`summarise`: the validation figures printed at the end (:class:`FitSummary`).

Randomness: every draw of the recipe comes from a named stream of ONE
:class:`~recsys.utils.seeds.Seeds` of ``train.seed`` created by ``fit`` and handed down (the
``validation-users``, ``validation-tasks`` and ``item-item`` streams); the network's initialisation is
seeded by ``torch.manual_seed(train.seed)`` and the epochs' tasks by the trainer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.config import ModelConfig, RecommenderConfig, TrainConfig
from recsys.data.frames import to_polars
from recsys.data.ids import coerce_ids
from recsys.data.log_checks import (
    check_trainable,
    check_training_frame,
    choose_validation_users,
    drop_constant_timestamps,
    single_rating_value,
)
from recsys.data.schema import ITEM, RATING, USER
from recsys.data.spec import FieldKind, FieldSpec
from recsys.data.tables import dedupe_interactions
from recsys.data.tasks import TaskSet, UserLog
from recsys.errors import FeatureMismatchError, ScoringInputError
from recsys.features.space import FeatureSpace
from recsys.meta.maml import MetaLearner
from recsys.meta.trainer import MetaTrainer, TrainState
from recsys.meta.validation import (
    evaluate_rating_tasks,
    validation_tasks,
)
from recsys.metrics.core import mae
from recsys.models.classical.mf import FittedMFs
from recsys.models.heads import Head
from recsys.models.item_init import init_item_ids_from_als
from recsys.models.item_item import fit_item_item
from recsys.models.item_item_sparse import TopK
from recsys.models.network import ColdStartNet
from recsys.utils.collectives import rank0_alone
from recsys.utils.seeds import ITEM_ITEM, VALIDATION_TASKS, Seeds, deterministic_algorithms

log = logging.getLogger(__name__)


# ---- the fields of the tables, the summary of a fit ---------------------------------------------------
def infer_fields(frame: pl.DataFrame, key: str) -> list[FieldSpec]:
    """Field kinds from column types: lists -> multi, strings -> categorical, numbers -> numeric."""
    out = []
    for name, dtype in frame.schema.items():
        if name == key:
            continue
        if isinstance(dtype, pl.List):
            out.append(FieldSpec(name, FieldKind.MULTI))
        elif dtype.is_numeric():
            out.append(FieldSpec(name, FieldKind.NUMERIC))
        else:
            out.append(FieldSpec(name, FieldKind.CATEGORICAL))
    return out


@dataclass
class FitSummary:
    """Validation-user figures printed at the end of training."""

    validation_users: int
    support_size: int | None
    inner_steps: int
    mae_adapted: float
    mae_no_adaptation: float
    mae_item_mean: float
    rmse_adapted: float
    ndcg3_adapted: float
    best_epoch: int
    epochs_run: int
    seconds: float
    recall20_adapted: float = math.nan
    """Catalogue Recall@20 after adaptation (implicit feedback, where there are no ratings to predict)."""
    recall20_no_adaptation: float = math.nan

    def lines(self) -> list[str]:
        head = [
            f"validation users: {self.validation_users} (support "
            + (f"{self.support_size} ratings" if self.support_size else "sizes drawn as in training")
            + ", query up to 10)"
        ]
        if math.isnan(self.mae_adapted) and not math.isnan(self.recall20_adapted):  # implicit feedback
            body = [
                f"  Recall@20 adapted to the support           {self.recall20_adapted:.4f}",
                f"  Recall@20 no adaptation (support ignored)   {self.recall20_no_adaptation:.4f}",
            ]
        else:
            body = [
                f"  MAE adapted to the support           {self.mae_adapted:.4f}",
                f"  MAE no adaptation (support ignored)   {self.mae_no_adaptation:.4f}",
                f"  MAE item mean                         {self.mae_item_mean:.4f}",
            ]
        return head + body + [f"best epoch {self.best_epoch} of {self.epochs_run}, {self.seconds:.0f} s"]


# ---- 1. the log ----------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """The checked log and what ``fit`` was told (or inferred) about it."""

    interactions: pl.DataFrame
    users: pl.DataFrame | None
    items: pl.DataFrame | None
    user_fields: list[FieldSpec] | None
    item_fields: list[FieldSpec] | None
    rating_scale: tuple[float, float] | None
    config: RecommenderConfig
    """The config to train with: the caller's, switched to the ranking objective for implicit feedback."""

    @property
    def implicit(self) -> bool:
        return RATING not in self.interactions.columns


def prepare_log(
    interactions: Any,
    users: Any,
    items: Any,
    config: RecommenderConfig,
    *,
    user_fields: list[FieldSpec] | None = None,
    item_fields: list[FieldSpec] | None = None,
    rating_scale: tuple[float, float] | None = None,
) -> TrainingData:
    """Step 1: the frames as polars, checked (:func:`check_training_frame`, :func:`check_trainable`),
    duplicate (user, item) pairs dropped (the latest kept) and constant timestamps dropped. A log whose
    ratings are all one value trains as implicit feedback (the ranking objective alone); fields not
    given are inferred from the tables' column types (:func:`infer_fields`) and dropped when the model
    does not use that side's features; the rating scale defaults to the log's range."""
    cfg = config
    inter, users, items = to_polars(interactions), to_polars(users), to_polars(items)
    if inter is None or inter.height == 0:
        raise ScoringInputError("no interactions to train on")
    for col in (USER, ITEM):
        if col not in inter.columns:
            raise FeatureMismatchError(f"interactions need a '{col}' column; got {inter.columns}")
    check_training_frame(inter, rating_scale)
    rows = inter.height
    inter = dedupe_interactions(drop_constant_timestamps(inter))
    if inter.height < rows:
        log.warning(
            "interactions: %d duplicate (user, item) row(s) dropped, the latest kept", rows - inter.height
        )
    check_trainable(inter, min_user_ratings=cfg.train.min_user_ratings)
    only = single_rating_value(inter)
    if only is not None:
        log.warning(
            "interactions: every rating is %g, so there is no rating signal to learn; "
            "training on them as implicit feedback (every interaction a positive)",
            only,
        )
        inter, rating_scale = inter.drop(RATING), None
    implicit = RATING not in inter.columns
    if implicit:  # no ratings: train the ranking objective alone, every interaction a positive
        cfg = cfg.replace(
            meta={"rating_weight": 0.0, "rank_threshold": None, "rank_weight": cfg.meta.rank_weight or 1.0}
        )
    if users is not None and user_fields is None:
        user_fields = infer_fields(users, USER)
    if items is not None and item_fields is None:
        item_fields = infer_fields(items, ITEM)
    if not cfg.model.use_user_features:
        user_fields = []
    if not cfg.model.use_item_features:
        item_fields = []
    if rating_scale is None and not implicit:
        rating_scale = (float(inter[RATING].min()), float(inter[RATING].max()))
    return TrainingData(inter, users, items, user_fields, item_fields, rating_scale, cfg)


# ---- 2. validation users ---------------------------------------------------------------------------
def split_validation(
    inter: pl.DataFrame,
    validation_users: Sequence | pl.Series | None,
    cfg: TrainConfig,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Step 2: (training rows, validation rows) of the log. ``validation_users`` are held out as given;
    None draws a random ``validation_fraction`` of the users with ``min_user_ratings`` ratings from
    ``rng`` (``fit`` passes the ``validation-users`` stream)."""
    if validation_users is None:
        validation_users = choose_validation_users(
            inter, cfg.validation_fraction, rng, min_ratings=cfg.min_user_ratings
        )
    val_ids = pl.Series(
        list(validation_users) if not isinstance(validation_users, pl.Series) else validation_users
    )
    val_ids = coerce_ids(val_ids, inter[USER].dtype)
    is_val = inter[USER].is_in(val_ids.implode())
    return inter.filter(~is_val), inter.filter(is_val)


# ---- 3. the feature space ----------------------------------------------------------------------------
def fit_space(
    train_inter: pl.DataFrame, data: TrainingData, cfg: ModelConfig, title_field: str | None = None
) -> FeatureSpace:
    """Step 3: the feature space (catalogue, encoders, item table) of the training rows and the tables."""
    return FeatureSpace.fit(
        train_inter,
        users=data.users,
        items=data.items,
        user_fields=data.user_fields,
        item_fields=data.item_fields,
        use_item_id=cfg.use_item_id,
        item_id_min_count=cfg.item_id_min_count,
        title_field=title_field,
        rating_scale=data.rating_scale,
        implicit=data.implicit,
    )


def user_logs(
    train_inter: pl.DataFrame, val_inter: pl.DataFrame, space: FeatureSpace
) -> tuple[UserLog, UserLog | None]:
    """The training and validation rows as per-user logs on the space's catalogue (None: no validation)."""
    train_log = UserLog.from_frame(train_inter, space.items)
    val_log = UserLog.from_frame(val_inter, space.items) if val_inter.height else None
    return train_log, val_log


def log_info(train_log: UserLog, val_log: UserLog | None) -> dict[str, Any]:
    """The figures of the split kept in the model's ``info`` (``rating_mean`` sets the network's bias)."""
    return {
        "rating_mean": float(train_log.ratings.mean()) if len(train_log.ratings) else 0.0,
        "train_users": train_log.n_users,
        "validation_users": val_log.n_users if val_log else 0,
        "train_interactions": len(train_log.items),
    }


# ---- 4. the network ------------------------------------------------------------------------------
def build_learner(config: RecommenderConfig, space: FeatureSpace, rating_mean: float) -> MetaLearner:
    """Step 4: the network the config describes for ``space``, in its meta-learner; the initial weights
    are seeded by ``train.seed`` (``torch.manual_seed``)."""
    torch.manual_seed(config.train.seed)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    net = ColdStartNet.for_space(config.model, space, rating_mean=rating_mean)
    return MetaLearner(net, config.meta)


# ---- 5. the head's preparation from the training log ---------------------------------------------------
def set_item_offsets(head: Head, train_log: UserLog, n_items: int, rating_mean: float) -> None:
    """Each item's damped mean rating offset (5 pseudo-ratings at the global mean), set on the head."""
    sums = np.bincount(train_log.items, weights=train_log.ratings, minlength=n_items)
    counts = np.bincount(train_log.items, minlength=n_items)
    damped = (sums + 5.0 * rating_mean) / (counts + 5.0) - rating_mean
    head.set_item_offsets(torch.from_numpy(damped.astype(np.float32)))


def fit_item_item_blend(
    head: Head,
    train_log: UserLog,
    val_log: UserLog | None,
    space: FeatureSpace,
    config: RecommenderConfig,
    rng: np.random.Generator,
) -> str:
    """The item-item matrix (and its out-of-fold copies) of the training log, its kind chosen on
    validation tasks drawn from ``rng`` (``fit`` passes the ``item-item`` stream), set on the head:
    dense up to ``model.hybrid.item_item_dense_items`` items, sparse top-k above. Returns the chosen
    kind and storage, and why (e.g. ``ease:8000 (dense, 3,706 items <= dense limit 4,000)``)."""
    hy = config.model.hybrid
    n = space.n_items
    matrix, folds, chosen = fit_item_item(
        train_log,
        val_log,
        n,
        threshold=config.meta.rank_threshold,
        implicit=space.implicit,
        rng=rng,
        kinds=hy.item_item_kinds,
        dense_items=hy.item_item_dense_items,
        neighbours=hy.item_item_neighbours,
        task_order=(
            (config.train.support_order, config.train.query_order)
            if hy.item_item_tasks == "as-training"
            else ("random", "random")
        ),
    )
    if isinstance(matrix, TopK):
        head.set_item_item(
            (torch.from_numpy(matrix.idx), torch.from_numpy(matrix.val)),
            (torch.from_numpy(folds.idx), torch.from_numpy(folds.val)),
        )
        return f"{chosen} (sparse, {n:,} items > dense limit {hy.item_item_dense_items:,})"
    head.set_item_item(torch.from_numpy(matrix), torch.from_numpy(folds))
    return f"{chosen} (dense, {n:,} items <= dense limit {hy.item_item_dense_items:,})"


def item_item_off(head: Head, n_items: int, config: RecommenderConfig) -> str | None:
    """Why a head that can blend an item-item matrix has none (None: it has one, or cannot)."""
    hy = config.model.hybrid
    if not head.capabilities.item_item_blend or head.item_item_active:
        return None
    if not hy.item_item:
        return "off (model.hybrid.item_item = false)"
    return f"off ({n_items:,} items > model.hybrid.item_item_max_items {hy.item_item_max_items:,})"


@rank0_alone
def prepare_head(
    learner: MetaLearner,
    space: FeatureSpace,
    train_log: UserLog,
    val_log: UserLog | None,
    config: RecommenderConfig,
    seeds: Seeds,
    *,
    rating_mean: float,
    resume: bool = False,
    mfs: FittedMFs | None = None,
) -> dict[str, Any]:
    """Step 5: what the network takes from the training log before meta-training, as its head declares
    (:class:`~recsys.models.heads.HeadCapabilities`): the ALS start of the item ids
    (``model.item_id_init="als"``, not when resuming: the checkpoint has the weights), the items' rating
    offsets, the item-item blend. ``mfs``: the training log's biased MFs, shared with step 7. Returns the
    entries for the model's ``info``. Under torch.distributed rank 0 prepares alone and the other ranks
    take its weights, buffers and ``info``, rank 0 using their threads meanwhile
    (:func:`~recsys.utils.collectives.rank0_alone`)."""
    head = learner.head
    info: dict[str, Any] = {}
    if config.model.item_id_init == "als" and not resume:
        info["item_id_init"] = init_item_ids_from_als(
            learner.net, space, train_log, seed=config.train.seed, mfs=mfs
        )
    if head.capabilities.item_offsets and not space.implicit:
        set_item_offsets(head, train_log, space.n_items, rating_mean)
    if head.item_item_active:
        info["item_item"] = fit_item_item_blend(head, train_log, val_log, space, config, seeds.rng(ITEM_ITEM))
    elif (off := item_item_off(head, space.n_items, config)) is not None:
        info["item_item"] = off
        log.info("item-item blend: %s", off)
    return info


# ---- 6. meta-training --------------------------------------------------------------------------------
def validation_tasks_of(val_log: UserLog | None, cfg: TrainConfig, seeds: Seeds) -> TaskSet | None:
    """The fixed validation tasks (model selection, trend choice, summary) from the ``validation-tasks``
    stream; None without validation users or when none of them can give a task (every one has a single
    rating): training then goes on as without validation users."""
    if val_log is None or not val_log.n_users:
        return None
    tasks = validation_tasks(val_log, cfg, seeds.rng(VALIDATION_TASKS))
    if not len(tasks):
        log.warning("validation: no validation user has ratings for both a support and a query")
        return None
    return tasks


def meta_train(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    info: dict[str, Any],
    train_log: UserLog,
    val_log: UserLog | None,
    val_tasks: TaskSet | None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    callbacks: list | None = None,
) -> TrainState:
    """Step 6: meta-train (checkpointing to ``checkpoint``, continuing from it with ``resume``); the
    learner ends on the CPU with the kept (best) weights."""
    trainer = MetaTrainer(
        learner,
        space,
        config.train,
        checkpoint=checkpoint,
        checkpoint_meta={"config": config.to_dict(), "features": space.to_json(), "info": info},
        checkpoint_tensors={f"features.{k}": torch.from_numpy(v) for k, v in space.arrays().items()},
        on_epoch_end=callbacks,
    )
    with deterministic_algorithms(config.train.deterministic):
        state = trainer.fit(
            train_log, val_log, resume_from=checkpoint if resume else None, val_tasks=val_tasks
        )
    learner.to("cpu")
    return state


# ---- 8. the summary ------------------------------------------------------------------------------
def summarise(
    learner: MetaLearner,
    space: FeatureSpace,
    config: RecommenderConfig,
    train_log: UserLog,
    val_log: UserLog,
    tasks: TaskSet,
    state: TrainState,
    seconds: float,
) -> FitSummary:
    """Step 8: the kept model's validation figures, adapted and with the support ignored, beside the
    item-mean baseline (each query item's mean training rating; the global mean where unrated)."""
    adapted = evaluate_rating_tasks(learner, space, val_log, tasks)
    frozen = evaluate_rating_tasks(learner, space, val_log, tasks, ignore_support=True)
    nan = math.nan
    item_mean_mae = nan
    if not space.implicit:
        sums = np.bincount(train_log.items, weights=train_log.ratings, minlength=space.n_items)
        counts = np.bincount(train_log.items, minlength=space.n_items)
        mean = float(train_log.ratings.mean())
        item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), mean)
        mask = tasks.query >= 0
        target = val_log.ratings[np.maximum(tasks.query, 0)]
        pred = item_mean[val_log.items[np.maximum(tasks.query, 0)]]
        item_mean_mae = float(np.nanmean(mae(pred, target, mask)))
    return FitSummary(
        validation_users=len(tasks),
        support_size=config.train.validation_support,
        inner_steps=config.meta.inner_steps,
        mae_adapted=adapted.get("mae", nan),
        mae_no_adaptation=frozen.get("mae", nan),
        mae_item_mean=item_mean_mae,
        rmse_adapted=adapted.get("rmse", nan),
        ndcg3_adapted=adapted.get("ndcg@3", nan),
        recall20_adapted=adapted.get("recall@20", nan),
        recall20_no_adaptation=frozen.get("recall@20", nan),
        best_epoch=state.best_epoch,
        epochs_run=len(state.history),
        seconds=seconds,
    )
