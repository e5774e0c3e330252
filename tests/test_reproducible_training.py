"""Training is reproducible: the same config and data give the same weights, bit for bit, also on several
CPU threads (``train.deterministic``, on by default). Without torch's deterministic kernels the backward
pass of the meta-batch's indexed item reads adds gradients with parallel atomic adds in a varying order,
and two trainings of one command differed (ML-100k: up to 1e-2 in the weights after 2 epochs)."""

from __future__ import annotations

import copy
import functools

import torch

from recsys import training
from recsys.config import RecommenderConfig
from recsys.data.synthetic import make_synthetic
from recsys.utils.seeds import VALIDATION_USERS, Seeds, deterministic_algorithms


@functools.cache
def _prepared(deterministic: bool):
    ds = make_synthetic(n_users=400, n_items=300, n_interactions=24000, seed=5)
    config = RecommenderConfig.from_dict(
        {"train": {"epochs": 2, "num_threads": 2, "deterministic": deterministic}}
    )
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
    return learner, (space, config, info, train_log, val_log, tasks)


def _trained(deterministic: bool) -> dict[str, torch.Tensor]:
    learner, (space, config, info, train_log, val_log, tasks) = _prepared(deterministic)
    learner = copy.deepcopy(learner)
    threads = torch.get_num_threads()
    try:
        training.meta_train(learner, space, config, dict(info), train_log, val_log, tasks)
    finally:
        torch.set_num_threads(threads)
    return learner.state_dict()


def test_two_trainings_on_two_threads_give_identical_weights() -> None:
    first, second = _trained(True), _trained(True)
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"weights differ between two trainings: {different[:5]}"


def test_the_deterministic_block_restores_torch_setting() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    with deterministic_algorithms(False):
        assert torch.are_deterministic_algorithms_enabled() == before


def test_deterministic_training_is_the_default() -> None:
    assert RecommenderConfig().train.deterministic is True
