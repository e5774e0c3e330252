"""Training is reproducible: the same config and data give the same weights, bit for bit, also on several
CPU threads (``train.deterministic``, on by default). Without torch's deterministic kernels the backward
pass of the meta-batch's indexed item reads adds gradients with parallel atomic adds in a varying order,
and two trainings of one command differed (ML-100k: up to 1e-2 in the weights after 2 epochs)."""

from __future__ import annotations

import torch

from recsys.config import RecommenderConfig
from recsys.data.synthetic import make_synthetic
from recsys.recommender import ColdStartRecommender
from recsys.utils.seeds import deterministic_algorithms


def _trained(deterministic: bool) -> dict[str, torch.Tensor]:
    """A model fitted on 2 threads (the recipe sets torch's thread count: restored after)."""
    ds = make_synthetic(n_users=400, n_items=300, n_interactions=24000, seed=5)
    config = {"train": {"epochs": 2, "num_threads": 2, "deterministic": deterministic}}
    threads = torch.get_num_threads()
    try:
        return ColdStartRecommender(config).fit_dataset(ds).learner.state_dict()
    finally:
        torch.set_num_threads(threads)


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
