"""The sampled ranking softmax: above ``meta.rank_negatives`` catalogue items a meta-batch ranks its own
items plus uniformly drawn negatives, with the log(N / M) importance correction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.config import MetaConfig, ModelConfig, TrainConfig
from recsys.data.tasks import sample_tasks
from recsys.meta.batches import build_batch
from recsys.meta.trainer import MetaTrainer
from tests.helpers import make_learner, space_and_log

HYBRID = ModelConfig(embedding_dim=8, hidden=(16,), head="hybrid", factor_dim=6)


@pytest.fixture(scope="module")
def data(synthetic_small):
    return space_and_log(synthetic_small)


def _tasks(log, n_tasks=6, seed=0):
    return sample_tasks(
        log, np.arange(n_tasks), np.random.default_rng(seed), support_size=(2, 6), query_size=5
    )


def _batch(space, log, tasks, negatives=None, dtype=torch.float64):
    kw = {} if negatives is None else {"negatives": negatives, "n_catalogue": space.n_items}
    b = build_batch(log, space, tasks, rank_positives=True, rank_threshold=4.0, **kw)
    for name in ("support_ratings", "query_ratings", "item_dense", "user_dense"):
        setattr(b, name, getattr(b, name).to(dtype))
    return b


def test_drawing_every_item_gives_exactly_the_full_catalogue_softmax(data) -> None:
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=0), HYBRID, dtype=torch.float64)
    tasks = _tasks(log)
    full = _batch(space, log, tasks)
    every = _batch(space, log, tasks, negatives=np.arange(space.n_items))
    assert not full.sampled and every.sampled
    assert torch.equal(every.batch_items, torch.arange(space.n_items))
    assert torch.all(every.candidate_logw == 0)  # N draws out of N: weight 1 everywhere
    losses, grads = [], []
    for batch in (full, every):
        learner.zero_grad(set_to_none=True)
        loss = learner.meta_loss(batch)
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None})
    assert losses[1] == pytest.approx(losses[0], rel=1e-10)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-8, atol=1e-10)


def test_sampled_normaliser_is_an_unbiased_estimate_of_the_full_one(data) -> None:
    """The mean over draws of each task's sum of exp(score + log weight) over the batch's candidates
    (support excluded) is the full catalogue's sum (within Monte Carlo error)."""
    space, log = data
    n, m = space.n_items, 15
    tasks = _tasks(log, n_tasks=4)
    scores = torch.from_numpy(np.random.default_rng(1).normal(0, 1.0, n))
    draws, plain = [], []
    for seed in range(3000):
        negatives = np.random.default_rng(seed).choice(n, size=m, replace=False)
        b = _batch(space, log, tasks, negatives=negatives)
        for logw, out in ((b.candidate_logw.double(), draws), (0.0, plain)):
            weighted = (scores[b.batch_items] + logw).exp().expand(len(tasks), -1).clone()
            weighted.scatter_(
                1, b.support_pos, torch.where(b.support_mask, 0.0, weighted.gather(1, b.support_pos))
            )
            out.append(weighted.sum(1))
    b = _batch(space, log, tasks)
    full = scores.exp().expand(len(tasks), -1).clone()
    full.scatter_(1, b.support_items, torch.where(b.support_mask, 0.0, full.gather(1, b.support_items)))
    estimate = torch.stack(draws).mean(0)
    np.testing.assert_allclose(estimate.numpy(), full.sum(1).numpy(), rtol=0.03)
    # a plain softmax over the same candidates (no correction) misses much of the normaliser
    assert (torch.stack(plain).mean(0) < 0.9 * full.sum(1)).all()


def test_sampled_batch_ranks_its_items_and_the_draws_only(data) -> None:
    """The ranking loss's gradient reaches only the batch's items' embeddings: the training cost of a
    step follows the batch, not the catalogue."""
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=0), HYBRID)
    tasks = _tasks(log)
    negatives = np.random.default_rng(0).choice(space.n_items, size=10, replace=False)
    batch = _batch(space, log, tasks, negatives=negatives, dtype=torch.float32)
    assert set(negatives) <= set(batch.batch_items.tolist())
    positives = batch.rank_items[batch.rank_mask]
    assert torch.equal(batch.batch_items[batch.rank_pos][batch.rank_mask], positives)
    assert len(batch.batch_items) < space.n_items
    learner.zero_grad(set_to_none=True)
    learner.meta_loss(batch).backward()
    weight = learner.net.item_embedding.bag.weight
    grad = weight.grad.to_dense() if weight.grad.is_sparse else weight.grad
    touched = set(torch.nonzero(grad.abs().sum(1))[:, 0].tolist())
    item_rows = space.item_table.gather(batch.batch_items.numpy()).indices
    assert touched and touched <= set(item_rows.tolist())


def test_catalogue_within_the_limit_keeps_the_full_softmax(data) -> None:
    space, _ = data
    learner = make_learner(space, MetaConfig(inner_steps=0, rank_negatives=space.n_items), HYBRID)
    trainer = MetaTrainer(learner, space, TrainConfig())
    assert trainer._negatives(0, 0) == {}
    learner = make_learner(space, MetaConfig(inner_steps=0, rank_negatives=0), HYBRID)
    assert MetaTrainer(learner, space, TrainConfig())._negatives(0, 0) == {}


def test_negatives_are_drawn_again_identically_on_resume(data) -> None:
    space, _ = data
    learner = make_learner(space, MetaConfig(inner_steps=0, rank_negatives=20), HYBRID)
    trainer = MetaTrainer(learner, space, TrainConfig(seed=3))
    first, again, other = trainer._negatives(2, 5), trainer._negatives(2, 5), trainer._negatives(2, 6)
    assert len(first["negatives"]) == 20 and len(set(first["negatives"].tolist())) == 20
    assert np.array_equal(first["negatives"], again["negatives"])
    assert not np.array_equal(first["negatives"], other["negatives"])


def test_training_with_sampled_negatives_learns_to_rank(data) -> None:
    """Two epochs with 20 negatives on a 120-item catalogue: finite losses, and validation ranking
    better than the untrained network's."""
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=0, rank_negatives=20), HYBRID)
    users = np.arange(log.n_users)
    train, val = log.subset(users[users % 5 != 0]), log.subset(users[users % 5 == 0])
    trainer = MetaTrainer(learner, space, TrainConfig(epochs=3, meta_batch_size=16, patience=0))
    before = trainer._validate(val, _tasks(val, n_tasks=val.n_users))
    state = trainer.fit(train, val)
    assert all(np.isfinite(r["train_loss"]) for r in state.history)
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    after = max(r["val_recall@20"] for r in state.history)
    assert after > before["recall@20"]
