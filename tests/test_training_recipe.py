"""The training recipe (recsys.training): named random streams of one seed, steps callable on their own,
and ``ColdStartRecommender.fit`` equal to running the steps in order."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from recsys import added_paths, post_training, training
from recsys.config import RecommenderConfig
from recsys.data.synthetic import make_synthetic
from recsys.meta.maml import MetaLearner
from recsys.models.classical.mf import FittedMFs
from recsys.recommender import ColdStartRecommender
from recsys.utils.seeds import ITEM_ITEM, VALIDATION_TASKS, VALIDATION_USERS, Seeds

TINY = {
    "train.epochs": 2,
    "train.patience": 0,
    "train.meta_batch_size": 16,
    "model.embedding_dim": 8,
    "model.factor_dim": 8,
    "model.hidden": (16, 16),
}


@pytest.fixture(scope="module")
def tiny():
    ds = make_synthetic(n_users=80, n_items=40, n_interactions=2400, seed=3)
    return ds, RecommenderConfig().override(**TINY)


def _validation_users(ds, config: RecommenderConfig, seed: int) -> list:
    data = training.prepare_log(ds.interactions, ds.users, ds.items, config)
    _, val = training.split_validation(
        data.interactions, None, config.train, Seeds(seed).rng(VALIDATION_USERS)
    )
    return sorted(val["user_id"].unique().to_list())


def _item_item_choice(ds, config: RecommenderConfig, seed: int) -> tuple[str, np.ndarray]:
    seeds = Seeds(seed)
    data = training.prepare_log(ds.interactions, ds.users, ds.items, config)
    train, val = training.split_validation(data.interactions, None, config.train, seeds.rng(VALIDATION_USERS))
    space = training.fit_space(train, data, config.model)
    train_log, val_log = training.user_logs(train, val, space)
    learner = training.build_learner(config, space, training.log_info(train_log, val_log)["rating_mean"])
    chosen = training.fit_item_item_blend(
        learner.head, train_log, val_log, space, config, seeds.rng(ITEM_ITEM)
    )
    return chosen, learner.head.item_item.numpy().copy()


# ---- the named streams -------------------------------------------------------------------------------
def test_a_named_stream_is_the_same_for_the_same_seed_and_name_and_independent_of_other_names() -> None:
    first = Seeds(5).rng(VALIDATION_USERS).random(8)
    assert np.array_equal(first, Seeds(5).rng(VALIDATION_USERS).random(8))  # rebuilt from seed + name
    others = [Seeds(5).rng(name).random(8) for name in (VALIDATION_TASKS, ITEM_ITEM)] + [
        Seeds(6).rng(VALIDATION_USERS).random(8)
    ]
    for other in others:
        assert not np.allclose(first, other)
    # drawing from one stream does not move another: each is its own child of the seed
    seeds = Seeds(5)
    seeds.rng(ITEM_ITEM).random(1000)
    assert np.array_equal(seeds.rng(VALIDATION_USERS).random(8), first)


def test_the_same_seed_gives_the_same_validation_users_and_a_different_seed_others(tiny) -> None:
    ds, config = tiny
    users = _validation_users(ds, config, 0)
    assert 0 < len(users) < ds.interactions["user_id"].n_unique()
    assert users == _validation_users(ds, config, 0)
    assert users != _validation_users(ds, config, 1)


def test_the_same_seed_gives_the_same_item_item_choice(tiny) -> None:
    ds, config = tiny
    chosen, matrix = _item_item_choice(ds, config, 0)
    again, matrix_again = _item_item_choice(ds, config, 0)
    assert chosen == again and ":" in chosen
    assert np.array_equal(matrix, matrix_again)


def test_fit_draws_its_validation_users_from_the_validation_users_stream_of_its_seed(tiny) -> None:
    ds, config = tiny
    for seed in (0, 1):
        rec = ColdStartRecommender(config.override(**{"train.seed": seed, "train.epochs": 1}))
        rec.fit(ds.interactions, ds.users, ds.items)
        assert rec.info["validation_users"] == len(_validation_users(ds, config, seed))


# ---- the steps, one at a time --------------------------------------------------------------------------
def test_each_recipe_step_runs_on_its_own_on_a_tiny_log(tiny) -> None:
    ds, config = tiny
    seeds = Seeds(config.train.seed)
    frame = ds.interactions.vstack(ds.interactions.head(5))  # five duplicate pairs
    data = training.prepare_log(frame, ds.users, ds.items, config)
    assert data.interactions.height == ds.interactions.height and not data.implicit
    assert data.rating_scale == (1.0, 5.0)
    assert {f.name for f in data.item_fields} >= {"genre"}  # inferred from the items table

    train, val = training.split_validation(data.interactions, [1, 2, 3], config.train, seeds.rng("unused"))
    assert sorted(val["user_id"].unique().to_list()) == [1, 2, 3]
    assert train.height + val.height == data.interactions.height

    space = training.fit_space(train, data, config.model)
    train_log, val_log = training.user_logs(train, val, space)
    info = training.log_info(train_log, val_log)
    assert info["validation_users"] == 3 and info["train_interactions"] == train.height

    learner = training.build_learner(config, space, info["rating_mean"])
    assert isinstance(learner, MetaLearner)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    extra = training.prepare_head(
        learner, space, train_log, val_log, config, seeds, rating_mean=info["rating_mean"]
    )
    assert set(extra) == {"item_id_init", "item_item"}  # the default hybrid head with ALS ids
    after = learner.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # ids, offsets, item-item set

    tasks = training.validation_tasks_of(val_log, config.train, seeds)
    assert tasks is not None and len(tasks) == 3
    assert training.validation_tasks_of(None, config.train, seeds) is None
    state = training.meta_train(learner, space, config, info, train_log, val_log, tasks)
    assert len(state.history) == config.train.epochs and "val_mae" in state.history[0]

    assert post_training.wants_rank_mix(learner.head, config)
    mix = post_training.choose_rank_mix(learner, space, config, val_log, tasks)
    assert learner.head.rank_mix.tolist() == [mix["support_encoder"], mix["item_item"]]
    assert post_training.wants_fold_in_weight(learner.head, config, space)
    fold_in = post_training.choose_fold_in_weight(learner, space, config, val_log, tasks)
    assert float(learner.head.fold_in_weight) == fold_in["weight"]
    assert post_training.wants_trend(learner.head, config)
    trend = post_training.choose_trend(learner, space, config, train_log, val_log, tasks)
    assert float(learner.head.trend_weight) == trend["weight"]

    summary = training.summarise(learner, space, config, train_log, val_log, tasks, state, 1.0)
    assert summary.validation_users == 3 and math.isfinite(summary.mae_adapted)
    assert summary.mae_item_mean > 0 and summary.seconds == 1.0


def test_prepare_log_turns_a_single_rating_value_into_implicit_feedback(tiny) -> None:
    ds, config = tiny
    flat = ds.interactions.with_columns(pl.lit(4.0).alias("rating"))
    data = training.prepare_log(flat, None, None, config)
    assert data.implicit and data.rating_scale is None
    assert data.config.meta.rating_weight == 0.0 and data.config.meta.rank_weight > 0


# ---- fit is the steps in order ---------------------------------------------------------------------------
def test_fit_equals_running_the_steps_in_order(tiny) -> None:
    ds, config = tiny
    rec = ColdStartRecommender(config).fit(ds.interactions, ds.users, ds.items)

    seeds = Seeds(config.train.seed)
    data = training.prepare_log(ds.interactions, ds.users, ds.items, config)
    train, val = training.split_validation(data.interactions, None, config.train, seeds.rng(VALIDATION_USERS))
    space = training.fit_space(train, data, config.model)
    train_log, val_log = training.user_logs(train, val, space)
    info = training.log_info(train_log, val_log)
    learner = training.build_learner(data.config, space, info["rating_mean"])
    info |= training.prepare_head(
        learner, space, train_log, val_log, config, seeds, rating_mean=info["rating_mean"]
    )
    tasks = training.validation_tasks_of(val_log, config.train, seeds)
    state = training.meta_train(learner, space, config, info, train_log, val_log, tasks)
    info["rank_mix"] = post_training.choose_rank_mix(learner, space, config, val_log, tasks)
    info["classical_item_item"] = added_paths.choose_cf_path(
        learner, space, config, train_log, val_log, tasks
    )
    info["als_path"] = added_paths.choose_als_path(learner, space, config, train_log, val_log, tasks)
    info["fold_in_weight"] = post_training.choose_fold_in_weight(learner, space, config, val_log, tasks)
    mfs = FittedMFs(train_log, learner.head.mf_design.shape[0], config.train.seed)
    info["mf_fallback"] = post_training.choose_mf_fallback(
        learner, space, config, train_log, val_log, tasks, mfs
    )
    info["rating_mix"] = post_training.choose_rating_mix(
        learner, space, config, train_log, val_log, tasks, mfs
    )
    info["trend"] = post_training.choose_trend(learner, space, config, train_log, val_log, tasks)
    summary = training.summarise(learner, space, config, train_log, val_log, tasks, state, 0.0)

    assert rec.info == info
    assert space.signature() == rec.space.signature()
    fitted = rec.learner.state_dict()
    assert fitted.keys() == learner.state_dict().keys()
    for key, value in learner.state_dict().items():
        assert torch.equal(value, fitted[key]), key
    untimed = [
        [{k: v for k, v in h.items() if k != "seconds"} for h in hist]
        for hist in (rec.history, state.history)
    ]
    assert untimed[0] == untimed[1]
    assert {**rec.summary.__dict__, "seconds": 0.0} == summary.__dict__


@pytest.mark.parametrize(
    ("tasks_per_epoch", "planned"),
    [(754, 50), (5_436, 50), (10_000, 50), (10_001, 50), (26_872, 19), (146_000, 4), (600_000, 1)],
)
def test_the_task_budget_plans_fewer_epochs_only_for_logs_of_more_than_max_tasks_over_epochs_users(
    tasks_per_epoch, planned
) -> None:
    assert RecommenderConfig().train.planned_epochs(tasks_per_epoch) == planned
    assert (
        RecommenderConfig().override(**{"train.max_tasks": None}).train.planned_epochs(tasks_per_epoch) == 50
    )


def test_training_stops_after_the_epochs_its_task_budget_allows_and_says_so_in_each_record(tiny) -> None:
    ds, config = tiny
    # 72 training users (80 less 10% validation): 100 tasks allow 2 epochs of the 5 asked for
    config = config.override(**{"train.epochs": 5, "train.max_tasks": 100})
    rec = ColdStartRecommender(config).fit(ds.interactions, ds.users, ds.items)
    assert rec.info["train_users"] * 2 >= 100 > rec.info["train_users"]
    assert [h["epoch"] for h in rec.history] == [1, 2]
    assert {h["epochs_planned"] for h in rec.history} == {2}


def test_an_explicit_epochs_flag_lifts_the_task_budget() -> None:
    from recsys.workflows import build_config

    assert build_config(epochs=7).train.max_tasks is None
    assert build_config(epochs=7).train.planned_epochs(1_000_000) == 7
    assert build_config().train.max_tasks == RecommenderConfig().train.max_tasks
