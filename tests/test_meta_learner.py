"""The meta-learner's math: vectorised == looped, the meta-gradient really is second order, padding is
inert, zero steps is the initialisation, and adaptation helps on planted data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.config import MetaConfig, ModelConfig
from recsys.meta.maml import USER_KEY
from tests.helpers import make_batch, make_learner, meta_grads, pad_batch, space_and_log


@pytest.fixture(scope="module")
def data(synthetic_small):
    return space_and_log(synthetic_small)


@pytest.mark.parametrize(
    "meta",
    [
        MetaConfig(inner_steps=3, inner_lr=0.1),
        MetaConfig(inner_steps=2, inner_lr=0.1, first_order=True),
        MetaConfig(inner_steps=2, inner_lr=0.05, adapt="output", meta_sgd=True),
        MetaConfig(inner_steps=2, inner_lr=0.05, adapt="all"),
    ],
    ids=["second-order", "first-order", "output+meta-sgd", "all"],
)
def test_vectorised_equals_per_user_loop(data, meta) -> None:
    space, log = data
    learner = make_learner(space, meta, dtype=torch.float64)
    batch = make_batch(space, log, n_tasks=9, support=(1, 9), dtype=torch.float64)  # ragged supports
    assert len(set(batch.support_mask.sum(1).tolist())) > 2
    loss_v, g_v = meta_grads(learner, batch)
    loss_l, g_l = meta_grads(learner, batch, loop=True)
    assert abs(loss_v - loss_l) < 1e-5
    assert g_v.keys() == g_l.keys()
    for name in g_v:
        torch.testing.assert_close(g_v[name], g_l[name], atol=1e-5, rtol=1e-5, msg=name)


def test_factorized_head_vectorised_equals_loop(data) -> None:
    space, log = data
    learner = make_learner(
        space,
        MetaConfig(inner_steps=2),
        ModelConfig(embedding_dim=8, hidden=(16,), head="factorized", factor_dim=8),
        dtype=torch.float64,
    )
    batch = make_batch(space, log, n_tasks=6, dtype=torch.float64)
    loss_v, g_v = meta_grads(learner, batch)
    loss_l, g_l = meta_grads(learner, batch, loop=True)
    assert abs(loss_v - loss_l) < 1e-6
    for name in g_v:
        torch.testing.assert_close(g_v[name], g_l[name], atol=1e-6, rtol=1e-6)


def _loss_at(learner, batch, name: str, index: tuple, value: float) -> float:
    param = dict(learner.named_parameters())[name]
    with torch.no_grad():
        old = param[index].item()
        param[index] = value
    try:
        return float(learner.meta_loss(batch).detach())
    finally:
        with torch.no_grad():
            param[index] = old


def test_graph_connection_second_order_matches_finite_differences(data) -> None:
    """The second-order meta-gradient agrees with central differences; first-order does not."""
    space, log = data
    meta = MetaConfig(inner_steps=2, inner_lr=0.3)
    learner = make_learner(
        space, meta, ModelConfig(embedding_dim=4, hidden=(6,), head="melu"), dtype=torch.float64
    )
    batch = make_batch(space, log, n_tasks=4, support=(3, 6), query=5, dtype=torch.float64)
    _, g2 = meta_grads(learner, batch)
    learner.cfg.first_order = True
    _, g1 = meta_grads(learner, batch)
    learner.cfg.first_order = False
    name = "net.head.layers.0.weight"
    eps = 1e-6
    fds, fos = [], []
    for index in [(0, 0), (1, 3), (2, 5), (5, 1), (3, 2), (4, 4)]:
        w = dict(learner.named_parameters())[name][index].item()
        fd = (
            _loss_at(learner, batch, name, index, w + eps) - _loss_at(learner, batch, name, index, w - eps)
        ) / (2 * eps)
        assert abs(fd - g2[name][index].item()) < 1e-6 * max(1.0, abs(fd)), (
            index,
            fd,
            g2[name][index].item(),
        )
        fds.append(fd)
        fos.append(g1[name][index].item())
    # the second-order term is really there: first-order misses it by far more than the FD error
    gap = np.abs(np.array(fds) - np.array(fos)).max()
    assert gap > 1e-4, gap
    assert (g2[name] - g1[name]).norm() > 1e-3 * g2[name].norm()


def test_first_order_is_first_order(data) -> None:
    """FOMAML's meta-gradient of an adapted weight is the query-loss gradient at the adapted weights."""
    space, log = data
    learner = make_learner(
        space, MetaConfig(inner_steps=3, inner_lr=0.2, first_order=True), dtype=torch.float64
    )
    batch = make_batch(space, log, n_tasks=5, dtype=torch.float64)
    _, g_fo = meta_grads(learner, batch)
    tt = learner.task_tensors(batch)
    s_side = {k: v.detach() for k, v in tt.support.items()}
    fast = learner.adapt(tt.user.detach(), s_side, tt.support_y, tt.support_m, 3)
    fast = {k: v.detach().requires_grad_(True) for k, v in fast.items()}
    _, frozen = learner.split_params()
    preds = torch.stack(
        [
            learner.head.predict(
                {**frozen, **{k: v[t] for k, v in fast.items()}},
                tt.user[t],
                {k: v[t] for k, v in tt.query.items()},
            )
            for t in range(tt.user.shape[0])
        ]
    )
    loss = learner.query_loss(preds, tt)
    grads = torch.autograd.grad(loss, list(fast.values()))
    for (name, _), g in zip(fast.items(), grads, strict=True):
        torch.testing.assert_close(g_fo[f"net.head.{name}"], g.sum(0), atol=1e-10, rtol=1e-8)


def test_padding_is_inert(data) -> None:
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=3, inner_lr=0.1), dtype=torch.float64)
    batch = make_batch(space, log, n_tasks=6, dtype=torch.float64)
    loss_a, g_a = meta_grads(learner, batch)
    loss_b, g_b = meta_grads(learner, pad_batch(batch, extra_support=5, extra_query=4))
    assert abs(loss_a - loss_b) < 1e-12
    for name in g_a:
        torch.testing.assert_close(g_a[name], g_b[name], atol=1e-12, rtol=1e-10)


def test_zero_local_steps_is_the_initialisation(data) -> None:
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=5))
    batch = make_batch(space, log, n_tasks=7)
    tt = learner.task_tensors(batch)
    with torch.no_grad():
        preds = learner.query_predictions(tt, steps=0)
        direct = learner.head.predict(dict(learner.head.named_parameters()), tt.user, tt.query)
        adapted = learner.query_predictions(tt, steps=5)
    assert torch.equal(preds, direct)
    assert not torch.allclose(adapted, direct)


def test_adapt_all_changes_the_user_vector(data) -> None:
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=2, adapt="all"))
    tt = learner.task_tensors(make_batch(space, log, n_tasks=3))
    with torch.no_grad():
        fast = learner.adapt(tt.user, tt.support, tt.support_y, tt.support_m, 2)
    assert USER_KEY in fast and not torch.allclose(fast[USER_KEY], tt.user)


def _planted_setup(overrides: dict):
    from recsys import ColdStartRecommender
    from recsys.data.synthetic import make_synthetic
    from recsys.data.tasks import UserLog, sample_tasks

    ds = make_synthetic(
        n_users=900, n_items=200, n_interactions=40_000, feature_strength=0.3, noise=0.3, seed=3
    )
    users = ds.interactions["user_id"].unique().sort()
    new = users[-150:]
    train = ds.interactions.filter(~ds.interactions["user_id"].is_in(new.implode()))
    rec = ColdStartRecommender(**({"train.epochs": 12, "train.patience": 0, "train.seed": 0} | overrides))
    rec.fit(train, ds.users, ds.items, user_fields=ds.spec.user_fields, item_fields=ds.spec.item_fields)
    log = UserLog.from_frame(
        ds.interactions.filter(ds.interactions["user_id"].is_in(new.implode())), rec.space.items
    )
    eligible = np.nonzero(log.counts >= 20)[0]
    tasks = sample_tasks(log, eligible, np.random.default_rng(0), support_size=10, query_size=10)
    assert len(eligible) > 50
    return rec, log, tasks


def _query_mae(rec, log, tasks, **kw) -> float:
    from recsys.meta.scoring import predict_tasks

    mask = tasks.query >= 0
    target = log.ratings[np.maximum(tasks.query, 0)]
    pred = predict_tasks(rec.learner, rec.space, log, tasks, **kw)
    return float(np.abs(pred - target)[mask].mean())


@pytest.mark.slow
def test_adaptation_lowers_new_user_error_on_planted_data() -> None:
    """Default model on planted synthetic data: for held-out new users, adapting to 10 support ratings
    cuts the query MAE by at least 5% against the meta-learned prior alone (support ignored)."""
    rec, log, tasks = _planted_setup({})
    adapted, prior = _query_mae(rec, log, tasks), _query_mae(rec, log, tasks, ignore_support=True)
    assert adapted < 0.95 * prior, (adapted, prior)


@pytest.mark.slow
def test_melu_gradient_steps_lower_new_user_error_on_planted_data() -> None:
    """MeLU head: 5 local gradient steps beat the meta-initialisation (0 steps) by at least 3%."""
    rec, log, tasks = _planted_setup(
        {
            "model.head": "melu",
            "meta.inner_steps": 5,
            "meta.inner_lr": 0.1,
            "meta.rank_weight": 0.0,
            "train.lr": 1e-3,
            "train.support_order": "random",
        }
    )
    adapted, frozen = _query_mae(rec, log, tasks, steps=5), _query_mae(rec, log, tasks, steps=0)
    assert adapted < 0.97 * frozen, (adapted, frozen)
