"""Outer-loop options: per-path gradient clipping and the moving average of the meta-parameters."""

from __future__ import annotations

import pytest
import torch

from recsys.config import MetaConfig, ModelConfig, TrainConfig
from recsys.meta.trainer import MetaTrainer
from tests.helpers import make_batch, make_learner, space_and_log

HYBRID = ModelConfig(embedding_dim=8, hidden=(16,), head="hybrid", factor_dim=6)


@pytest.fixture(scope="module")
def data(synthetic_small):
    return space_and_log(synthetic_small)


def _trainer(data, **train) -> MetaTrainer:
    space, _ = data
    learner = make_learner(space, MetaConfig(inner_steps=0), HYBRID)
    return MetaTrainer(learner, space, TrainConfig(**train))


def _path_params(trainer: MetaTrainer) -> dict[str, list[torch.nn.Parameter]]:
    named = dict(trainer.learner.named_parameters())
    groups = trainer.learner.net.param_groups()
    return {g: [named[f"net.{n}"] for n in names] for g, names in groups.items()}


def _set_grads(trainer: MetaTrainer, rating: float, ranking: float) -> dict[str, list[torch.nn.Parameter]]:
    paths = _path_params(trainer)
    for p in trainer.dense_params:
        p.grad = torch.zeros_like(p)
    for value, params in ((rating, paths["rating"]), (ranking, paths["ranking"])):
        for p in params:
            p.grad = torch.full_like(p, value)
    return paths


def _norm(params) -> float:
    return torch.nn.utils.get_total_norm([p.grad for p in params]).item()


def test_per_path_groups_cover_every_dense_parameter_once(data) -> None:
    trainer = _trainer(data, grad_clip_scope="per-path")
    seen = [id(p) for g in trainer.clip_groups for p in g]
    assert len(trainer.clip_groups) >= 2
    assert sorted(seen) == sorted(id(p) for p in trainer.dense_params)
    paths = _path_params(trainer)
    rating = {id(p) for p in paths["rating"]}
    assert any({id(p) for p in g} == rating for g in trainer.clip_groups)


def test_per_path_clipping_leaves_a_small_ranking_gradient_alone(data) -> None:
    """A huge rating-path gradient is clipped without shrinking the ranking path's small one."""
    per_path = _trainer(data, grad_clip_scope="per-path", grad_clip=1.0)
    paths = _set_grads(per_path, rating=100.0, ranking=1e-3)
    before = _norm(paths["ranking"])
    per_path._clip_gradients()
    assert _norm(paths["rating"]) == pytest.approx(1.0, rel=1e-4)
    assert _norm(paths["ranking"]) == pytest.approx(before, rel=1e-6)

    shared = _trainer(data, grad_clip_scope="global", grad_clip=1.0)
    paths = _set_grads(shared, rating=100.0, ranking=1e-3)
    shared._clip_gradients()
    assert _norm(paths["ranking"]) < before / 100  # one global norm shrinks both paths


def test_per_path_clipping_reports_a_non_finite_gradient_in_any_path(data) -> None:
    trainer = _trainer(data, grad_clip_scope="per-path", grad_clip=1.0)
    _set_grads(trainer, rating=1.0, ranking=float("nan"))
    assert not torch.isfinite(trainer._clip_gradients())


def test_weight_average_follows_the_warm_up_decay_after_one_step(data) -> None:
    space, log = data
    trainer = _trainer(data, weight_average=0.99)
    start = {n: p.detach().clone() for n, p in trainer.averaged}
    trainer._step(make_batch(space, log, n_tasks=8, rank=True))
    assert trainer.state.global_step == 0  # _update_average used t = 0: decay min(0.99, 1/10)
    for (name, p), avg in zip(trainer.averaged, trainer.average, strict=True):
        expected = start[name] + 0.9 * (p.detach() - start[name])
        torch.testing.assert_close(avg, expected, msg=name)
    assert any(not torch.equal(p, start[n]) for n, p in trainer.averaged)  # the step moved something


def test_weight_average_is_what_training_validates_and_keeps(synthetic_small, monkeypatch) -> None:
    """With averaging, the validated and the returned weights are the averaged ones, not the live ones."""
    from recsys import ColdStartRecommender

    seen: dict[str, dict[str, torch.Tensor]] = {}
    original = MetaTrainer._after_epoch

    def spy(self, record):
        seen["live"] = {k: v.clone() for k, v in self.learner.state_dict().items()}
        seen["average"] = {k: v.clone() for k, v in self.evaluated_state().items()}
        original(self, record)

    monkeypatch.setattr(MetaTrainer, "_after_epoch", spy)
    rec = ColdStartRecommender(
        **{
            "train.epochs": 1,
            "train.meta_batch_size": 16,
            "model.embedding_dim": 8,
            "model.hidden": (16,),
            "train.weight_average": 0.9,
        }
    ).fit_dataset(synthetic_small)
    kept = rec.learner.state_dict()
    name = "net.head.prior.0.weight"
    torch.testing.assert_close(kept[name], seen["average"][name])
    assert not torch.allclose(kept[name], seen["live"][name])


def test_validation_users_with_a_single_rating_each_train_as_without_validation(data) -> None:
    """No validation user can give a task (one rating each): the trainer trains as without validation
    users (no ``val_`` figures, no best-epoch choice on an empty set) rather than averaging over none."""
    import numpy as np

    _, log = data
    first = np.zeros(len(log.items), dtype=bool)
    first[log.indptr[:-1][np.diff(log.indptr) > 0]] = True  # each user's first rating only
    trainer = _trainer(data, epochs=1)
    state = trainer.fit(log, log.keep(first))
    assert state.history and not any(key.startswith("val_") for key in state.history[-1])
