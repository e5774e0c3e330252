"""The contract every decision head keeps, run for each head in HEADS.

For each head: the vectorised (``torch.func.vmap``) adaptation over a batch of users equals a Python
loop adapting one user at a time; padded support (and query) positions change nothing; zero inner
steps returns the initialisation (the shared weights, plus the head's per-user start from
``init_fast``); gradients reach the meta-parameters, the second-order meta-gradient agrees with finite
differences, and first-order really is first order; a model saved and loaded through
:class:`ColdStartRecommender` scores identically. Head-specific behaviour is tested elsewhere
(test_meta_learner.py, test_hybrid_head.py, test_fold_in_trust.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys import ColdStartRecommender
from recsys.config import MetaConfig, ModelConfig
from tests.helpers import make_batch, make_learner, meta_grads, pad_batch, space_and_log

HEADS = ["melu", "factorized", "hybrid"]
"""Every head the contract runs on (one place; may later come from the head registry)."""

F64 = torch.float64


def model_config(head: str) -> ModelConfig:
    return ModelConfig(embedding_dim=8, hidden=(16,), head=head, factor_dim=6)


@pytest.fixture(scope="module")
def data(synthetic_small):
    return space_and_log(synthetic_small)


def _task(tt, t: int) -> tuple:
    """Task ``t``'s user, support side, support ratings and mask, and query side."""
    return (
        tt.user[t],
        {k: v[t] for k, v in tt.support.items()},
        tt.support_y[t],
        tt.support_m[t],
        {k: v[t] for k, v in tt.query.items()},
    )


def _unused(learner) -> set[str]:
    """Parameters whose meta-gradient is zero by construction in this configuration: the hybrid head's
    item-item blend when it is off, and its ranking bias's constant term (the same for every item, and
    the softmax over the catalogue is shift-invariant). Empty parameters (the dense-feature weights of
    a space without dense features) are skipped by the caller."""
    unused = {"net.head.r_bias.bias"} if learner.head.capabilities.ranking_output else set()
    if not learner.head.item_item_active:
        unused |= {n for n, _ in learner.named_parameters() if n.startswith("net.head.ii_")}
    return unused


# ---- vectorised == per-user loop ----------------------------------------------------------------
META_VARIANTS = {
    "second-order": MetaConfig(inner_steps=2, inner_lr=0.1, rank_weight=0.5),
    "first-order": MetaConfig(inner_steps=2, inner_lr=0.1, rank_weight=0.5, first_order=True),
    "zero-steps": MetaConfig(inner_steps=0, rank_weight=0.5),
    "output+meta-sgd": MetaConfig(
        inner_steps=2, inner_lr=0.05, rank_weight=0.5, adapt="output", meta_sgd=True
    ),
    "all": MetaConfig(inner_steps=2, inner_lr=0.05, rank_weight=0.5, adapt="all"),
}


@pytest.mark.parametrize("variant", list(META_VARIANTS))
@pytest.mark.parametrize("head", HEADS)
def test_vectorised_adaptation_equals_a_per_user_loop(data, head, variant) -> None:
    space, log = data
    learner = make_learner(space, META_VARIANTS[variant], model_config(head), dtype=F64)
    batch = make_batch(space, log, n_tasks=9, support=(1, 9), dtype=F64, rank=True)
    assert len(set(batch.support_mask.sum(1).tolist())) > 2  # ragged supports
    assert batch.rank_mask.any()  # the ranking loss is part of the meta-loss
    loss_v, g_v = meta_grads(learner, batch)
    loss_l, g_l = meta_grads(learner, batch, loop=True)
    assert abs(loss_v - loss_l) < 1e-5
    assert g_v.keys() == g_l.keys()
    for name in g_v:
        torch.testing.assert_close(g_v[name], g_l[name], atol=1e-5, rtol=1e-5, msg=name)


# ---- padding is inert ---------------------------------------------------------------------------
@pytest.mark.parametrize("head", HEADS)
def test_padded_positions_do_not_change_scores_loss_or_gradients(data, head) -> None:
    space, log = data
    meta = MetaConfig(inner_steps=2, inner_lr=0.1, rank_weight=0.5)
    learner = make_learner(space, meta, model_config(head), dtype=F64)
    batch = make_batch(space, log, n_tasks=6, dtype=F64, rank=True)
    padded = pad_batch(batch, extra_support=5, extra_query=4)
    cat = learner.catalogue_side()
    with torch.no_grad():
        preds_a, ranks_a = learner.query_outputs(learner.task_tensors(batch), cat_side=cat)
        preds_b, ranks_b = learner.query_outputs(learner.task_tensors(padded), cat_side=cat)
    q = batch.query_mask.shape[1]
    real = batch.query_mask
    torch.testing.assert_close(preds_b[:, :q][real], preds_a[real], atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(ranks_b, ranks_a, atol=1e-12, rtol=1e-10)
    loss_a, g_a = meta_grads(learner, batch)
    loss_b, g_b = meta_grads(learner, padded)
    assert abs(loss_a - loss_b) < 1e-12
    assert g_a.keys() == g_b.keys()
    for name in g_a:
        torch.testing.assert_close(g_a[name], g_b[name], atol=1e-12, rtol=1e-9, msg=name)


# ---- zero inner steps is the initialisation -----------------------------------------------------
@pytest.mark.parametrize("head", HEADS)
def test_zero_inner_steps_returns_the_initialisation(data, head) -> None:
    """0 steps: the shared adapted weights, plus the head's per-user start (init_fast), unchanged."""
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=3, inner_lr=0.1), model_config(head), dtype=F64)
    tt = learner.task_tensors(make_batch(space, log, n_tasks=6, support=(2, 8), dtype=F64))
    init, frozen = learner.split_params()
    with torch.no_grad():
        fast0 = learner.adapt(tt.user, tt.support, tt.support_y, tt.support_m, 0)
        preds0 = learner.query_predictions(tt, steps=0)
        for t in range(tt.user.shape[0]):
            user, s_side, sy, sm, q_side = _task(tt, t)
            expected = dict(init) | learner.head.init_fast({**frozen, **init}, user, s_side, sy, sm)
            assert set(fast0) == set(expected)
            for k, v in expected.items():
                torch.testing.assert_close(fast0[k][t], v, atol=1e-12, rtol=1e-10, msg=k)
            direct = learner.head.predict({**frozen, **expected}, user, q_side)
            torch.testing.assert_close(preds0[t], direct, atol=1e-12, rtol=1e-10)
        # and the check can fail: inner steps do move the fast weights
        fast3 = learner.adapt(tt.user, tt.support, tt.support_y, tt.support_m, 3)
    assert any(not torch.allclose(fast3[k], fast0[k]) for k in fast0)


# ---- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("head", HEADS)
def test_meta_gradients_reach_every_meta_parameter(data, head, first_order) -> None:
    """learn2learn's test_graph_connection: the query loss after adaptation reaches every
    meta-parameter the configuration uses (head, embeddings of both sides)."""
    space, log = data
    meta = MetaConfig(inner_steps=2, inner_lr=0.1, rank_weight=0.5, first_order=first_order)
    learner = make_learner(space, meta, model_config(head), dtype=F64)
    _, grads = meta_grads(learner, make_batch(space, log, n_tasks=8, dtype=F64, rank=True))
    unused = _unused(learner)
    missing = [
        n
        for n, p in learner.named_parameters()
        if p.numel() and n not in unused and (n not in grads or not bool(grads[n].abs().sum() > 0))
    ]
    assert not missing, missing
    assert any(n.startswith("net.user_embedding.") for n in grads)
    assert any(n.startswith("net.item_embedding.") for n in grads)


def _loss_at(learner, batch, name: str, flat: int, value: float) -> float:
    param = dict(learner.named_parameters())[name]
    view = param.data.view(-1)
    old = view[flat].item()
    view[flat] = value
    try:
        with torch.no_grad():
            return float(learner.meta_loss(batch))
    finally:
        view[flat] = old


@pytest.mark.parametrize("head", HEADS)
def test_second_order_meta_gradient_matches_finite_differences(data, head) -> None:
    """The second-order meta-gradient agrees with central differences; first-order misses a term."""
    space, log = data
    learner = make_learner(
        space, MetaConfig(inner_steps=2, inner_lr=0.3, rank_weight=0.5), model_config(head), dtype=F64
    )
    batch = make_batch(space, log, n_tasks=4, support=(3, 6), query=5, dtype=F64, rank=True)
    _, g2 = meta_grads(learner, batch)
    learner.cfg.first_order = True
    _, g1 = meta_grads(learner, batch)
    learner.cfg.first_order = False
    name = "net.head." + next(n for n, p in learner.head.named_parameters() if p.numel() >= 18)
    eps = 1e-6
    for flat in (0, 5, 11, 17):
        w = dict(learner.named_parameters())[name].view(-1)[flat].item()
        fd = (
            _loss_at(learner, batch, name, flat, w + eps) - _loss_at(learner, batch, name, flat, w - eps)
        ) / (2 * eps)
        analytic = g2[name].view(-1)[flat].item()
        assert abs(fd - analytic) < 1e-6 * max(1.0, abs(fd)), (flat, fd, analytic)
    # the second-order term is really there (and first-order leaves it out)
    assert (g2[name] - g1[name]).norm() > 1e-3 * g2[name].norm()


@pytest.mark.parametrize("head", HEADS)
def test_first_order_meta_gradient_equals_the_gradient_with_the_inner_update_detached(data, head) -> None:
    """FOMAML: fast_K = fast_0 - lr * (detached inner gradients), so the meta-gradient is the query
    loss's gradient through fast_0 (the shared init and the head's init_fast) alone."""
    space, log = data
    steps = 3
    meta = MetaConfig(inner_steps=steps, inner_lr=0.2, rank_weight=0.5, first_order=True)
    learner = make_learner(space, meta, model_config(head), dtype=F64)
    batch = make_batch(space, log, n_tasks=5, dtype=F64, rank=True)
    loss_fo, g_fo = meta_grads(learner, batch)

    learner.zero_grad(set_to_none=True)
    tt = learner.task_tensors(batch)
    cat = learner.catalogue_side()
    fast0 = learner.adapt(tt.user, tt.support, tt.support_y, tt.support_m, 0)
    fast_k = learner.adapt(tt.user, tt.support, tt.support_y, tt.support_m, steps)
    assert any(not torch.allclose(fast_k[k], fast0[k]) for k in fast0)  # the inner steps did something
    fast = {k: fast0[k] + (fast_k[k] - fast0[k]).detach() for k in fast0}
    _, frozen = learner.split_params()
    preds, ranks = [], []
    for t in range(tt.user.shape[0]):
        user, _, _, _, q_side = _task(tt, t)
        p = {**frozen, **{k: v[t] for k, v in fast.items()}}
        preds.append(learner.head.predict(p, user, q_side))
        ranks.append(learner.head.rank(p, user, cat))
    loss = meta.rating_weight * learner.query_loss(torch.stack(preds), tt)
    loss = loss + meta.rank_weight * learner.rank_loss(torch.stack(ranks), batch)
    loss.backward()
    reference = {n: p.grad for n, p in learner.named_parameters() if p.grad is not None}
    assert abs(float(loss.detach()) - loss_fo) < 1e-10
    assert reference.keys() == g_fo.keys()
    for name in g_fo:
        torch.testing.assert_close(g_fo[name], reference[name], atol=1e-10, rtol=1e-8, msg=name)


# ---- save / load round trip ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dataset():
    from recsys.data.synthetic import make_synthetic

    return make_synthetic(n_users=120, n_items=60, n_interactions=3000, seed=4)


@pytest.mark.parametrize("head", HEADS)
def test_save_load_round_trip_scores_identically(tiny_dataset, tmp_path, head) -> None:
    ds = tiny_dataset
    over = {
        "model.head": head,
        "model.embedding_dim": 8,
        "model.hidden": (16,),
        "model.factor_dim": 6,
        "meta.inner_steps": 0 if head == "hybrid" else 2,
        "train.epochs": 1,
        "train.patience": 0,
    }
    rec = ColdStartRecommender(**over).fit_dataset(ds)
    rec.save(tmp_path / "m")
    again = ColdStartRecommender.load(tmp_path / "m")
    assert again.config.model.head == head
    items = ds.items["item_id"].to_list()
    ratings = {items[0]: 5.0, items[3]: 2.0, items[7]: 4.0}
    features = ds.users.row(0, named=True)
    features.pop("user_id")
    a, b = rec.predict(ratings, items), again.predict(ratings, items)
    assert np.array_equal(a, b) and np.ptp(a) > 0
    assert np.array_equal(
        rec.predict(ratings, items, user_features=features),
        again.predict(ratings, items, user_features=features),
    )
    assert rec.recommend(ratings, n=10) == again.recommend(ratings, n=10)
    assert rec.recommend({}, n=10, user_features=features) == again.recommend(
        {}, n=10, user_features=features
    )
