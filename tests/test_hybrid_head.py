"""The hybrid head: closed-form ridge fold-in for ratings and a support-set encoder for ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.config import MetaConfig, ModelConfig
from tests.helpers import make_batch, make_learner, meta_grads, space_and_log

HYBRID = ModelConfig(embedding_dim=8, hidden=(16,), head="hybrid", factor_dim=6)


@pytest.fixture(scope="module")
def data(synthetic_small):
    return space_and_log(synthetic_small)


def test_ridge_init_is_the_closed_form_solution(data) -> None:
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=0), HYBRID, dtype=torch.float64)
    batch = make_batch(space, log, n_tasks=4, support=(3, 6), dtype=torch.float64)
    tt = learner.task_tensors(batch)
    with torch.no_grad():
        fast = learner.adapt(tt.user, tt.support, tt.support_y, tt.support_m, 0)
        head = learner.head
        p = dict(head.named_parameters())
        lam = torch.exp(p["log_lambda"]).numpy()
        for t in range(4):
            m = tt.support_m[t].numpy()
            phi = tt.support["q1"][t].numpy()[m]
            resid = (tt.support_y[t].numpy() - p["mu"].item() - tt.support["b"][t].numpy())[m]
            w0 = head.prior[1](torch.relu(head.prior[0](tt.user[t][: head.user_dim]))).numpy()
            d = np.r_[np.full(head.d, lam[0]), lam[1]]
            expected = np.linalg.solve(phi.T @ phi + np.diag(d), phi.T @ resid + d * w0)
            np.testing.assert_allclose(fast["fast.w"][t].numpy(), expected, rtol=1e-8, atol=1e-10)


def test_ranking_loss_excludes_support_items(data) -> None:
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=0, rank_weight=1.0), HYBRID)
    batch = make_batch(space, log, n_tasks=3, rank=True)
    T, N = 3, space.n_items
    ranks = torch.zeros(T, N, requires_grad=True)
    loss = learner.rank_loss(ranks, batch)
    (g,) = torch.autograd.grad(loss, ranks)
    s = batch.support_items[batch.support_mask]
    rows = torch.nonzero(batch.support_mask)[:, 0]
    assert (g[rows, s] == 0).all()  # support items get no probability mass, no gradient
    n_candidates = N - batch.support_mask.sum(1).float()
    assert loss.item() == pytest.approx(torch.log(n_candidates).mean().item(), rel=1e-5)


@pytest.mark.parametrize("kinds", ["ease", "ease+cosine"])
def test_item_item_blend_is_chosen_among_the_configured_kinds(data, kinds) -> None:
    from recsys.models.item_item import fit_item_item

    space, log = data
    rows = np.arange(log.n_users)
    train, val = log.subset(rows[rows % 5 != 0]), log.subset(rows[rows % 5 == 0])
    full, folds, chosen = fit_item_item(train, val, space.n_items, threshold=4.0, implicit=False, kinds=kinds)
    name, value = chosen.split(":")
    # explicit ratings: each EASE strength is also a liked-only candidate (ease-liked)
    assert name.removesuffix("-liked") in kinds.split("+") and float(value) > 0
    assert full.shape == (space.n_items, space.n_items) and folds.shape == (2, space.n_items, space.n_items)
    assert full.dtype == np.float32 and np.isfinite(full).all() and np.abs(full).sum() > 0


def test_meta_sgd_learns_inner_rates_for_the_hybrid_heads_fold_in(data) -> None:
    """Regression: the hybrid head adapts the per-user vectors from its fold-in, not named parameters,
    so Meta-SGD created no learned rates for it and silently ran plain MAML."""
    space, log = data
    meta = MetaConfig(inner_steps=2, inner_lr=0.05, meta_sgd=True, rank_weight=0.5)
    learner = make_learner(space, meta, HYBRID, dtype=torch.float64)
    assert set(learner.inner_lrs) == {"fast__w", "fast__z"}
    assert learner.inner_lrs["fast__w"].shape == (HYBRID.factor_dim + 1,)
    batch = make_batch(space, log, n_tasks=7, support=(2, 8), dtype=torch.float64, rank=True)
    loss_v, g_v = meta_grads(learner, batch)
    loss_l, g_l = meta_grads(learner, batch, loop=True)
    assert abs(loss_v - loss_l) < 1e-8
    # the query loss depends on the rating rates (the fold-in's refinement) through the inner steps
    assert g_v["inner_lrs.fast__w"].abs().sum() > 0
    torch.testing.assert_close(g_v["inner_lrs.fast__w"], g_l["inner_lrs.fast__w"], atol=1e-8, rtol=1e-6)
    # and the rates are what the inner step uses: doubling them changes the adapted predictions
    with torch.no_grad():
        before = learner.meta_loss(batch)
        learner.inner_lrs["fast__w"].mul_(2.0)
        after = learner.meta_loss(batch)
    assert not torch.isclose(before, after)
