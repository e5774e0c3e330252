"""Per-user trust in the hybrid head's ridge fold-in (``model.hybrid.fold_in_trust = "support"``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.func import vmap

from recsys import ColdStartRecommender
from recsys.config import HybridConfig, MetaConfig, ModelConfig, RecommenderConfig
from recsys.models.heads import SUPPORT_STATS, HybridHead, support_summary
from recsys.utils.io import sha256_file
from tests.helpers import make_batch, make_learner, space_and_log

TRUST = ModelConfig(
    embedding_dim=8, hidden=(16,), head="hybrid", factor_dim=6, hybrid=HybridConfig(fold_in_trust="support")
)


@pytest.fixture(scope="module")
def data(synthetic_small):
    return space_and_log(synthetic_small)


def _randomise_trust(learner, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in (learner.head.trust.weight, learner.head.trust.bias):
            t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * scale)


def test_support_summary_ignores_padding() -> None:
    g = torch.Generator().manual_seed(1)
    phi = torch.cat(
        [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.ones(5, 1, dtype=torch.float64)], 1
    )
    resid = torch.randn(5, generator=g, dtype=torch.float64)
    m = torch.ones(5, dtype=torch.float64)
    padded = [
        torch.cat([phi, torch.zeros(3, 5, dtype=phi.dtype)]),
        torch.cat([resid, torch.zeros(3)]).double(),
    ]
    a = support_summary(phi, resid, m)
    b = support_summary(*padded, torch.cat([m, torch.zeros(3, dtype=m.dtype)]))
    torch.testing.assert_close(a, b)
    assert a.shape == (SUPPORT_STATS + 4,)
    np.testing.assert_allclose(a[0].item(), np.log(5))
    np.testing.assert_allclose(a[3].item(), resid.std(unbiased=False).item(), rtol=1e-5)


def test_fold_in_uses_each_users_trust_offset(data) -> None:
    """The closed-form solution with the per-user shrinkage exp(log_lambda + trust(summary))."""
    space, log = data
    learner = make_learner(space, MetaConfig(inner_steps=0), TRUST, dtype=torch.float64)
    _randomise_trust(learner)
    batch = make_batch(space, log, n_tasks=5, support=(2, 9), dtype=torch.float64)
    tt = learner.task_tensors(batch)
    head = learner.head
    with torch.no_grad():
        fast = learner.adapt(tt.user, tt.support, tt.support_y, tt.support_m, 0)
        p = {k: v.numpy() for k, v in head.named_parameters()}
        lams = []
        for t in range(5):
            m = tt.support_m[t].numpy()
            phi = tt.support["q1"][t].numpy()[m]
            resid = tt.support_y[t].numpy()[m] - p["mu"] - tt.support["b"][t].numpy()[m]
            n = len(resid)
            summary = np.r_[
                np.log(n), n / (n + 10.0), resid.mean(), np.sqrt(resid.var() + 1e-6), phi[:, :-1].mean(0)
            ]
            lam = np.exp(p["log_lambda"] + p["trust.weight"] @ summary + p["trust.bias"])
            lams.append(lam)
            w0 = head.prior[1](torch.relu(head.prior[0](tt.user[t][: head.user_dim]))).numpy()
            d = np.r_[np.full(head.d, lam[0]), lam[1]]
            expected = np.linalg.solve(phi.T @ phi + np.diag(d), phi.T @ resid + d * w0)
            np.testing.assert_allclose(fast["fast.w"][t].numpy(), expected, rtol=1e-8, atol=1e-10)
    assert np.ptp(np.array(lams)[:, 1]) > 0.01  # the users really got different shrinkage


def test_zero_initialised_trust_starts_from_the_global_shrinkage(data) -> None:
    space, log = data
    batch = make_batch(space, log, n_tasks=6, support=(1, 9), dtype=torch.float64)
    out = {}
    for trust in ("global", "support"):
        torch.manual_seed(3)
        cfg = dataclasses.replace(TRUST, hybrid=HybridConfig(fold_in_trust=trust))
        learner = make_learner(space, MetaConfig(inner_steps=0), cfg, dtype=torch.float64)
        tt = learner.task_tensors(batch)
        with torch.no_grad():
            out[trust] = learner.adapt(tt.user, tt.support, tt.support_y, tt.support_m, 0)["fast.w"]
    torch.testing.assert_close(out["global"], out["support"])


def _noisy_and_clean_users(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Half the users' support ratings carry their bias (noise 0.3); the other half's supports are
    pure noise (spread 2) about a user whose later (query) ratings sit at the item baseline."""
    g = torch.Generator().manual_seed(seed)
    s, q, dim = 8, 10, 8  # item vectors: a rating part and a ranking part of 4 each
    noisy = torch.arange(n) % 2 == 1
    bias = torch.randn(n, generator=g)
    sx = torch.randn(n, s, dim, generator=g)
    qx = torch.randn(n, q, dim, generator=g)
    sy = torch.where(
        noisy[:, None],
        2.0 * torch.randn(n, s, generator=g),
        bias[:, None] + 0.3 * torch.randn(n, s, generator=g),
    )
    qy = torch.where(
        noisy[:, None],
        0.3 * torch.randn(n, q, generator=g),
        bias[:, None] + 0.3 * torch.randn(n, q, generator=g),
    )
    return {"sx": sx, "sy": sy, "qx": qx, "qy": qy, "noisy": noisy}


def _fit_shrinkage(trust: bool) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Fit only the shrinkage (global, or with trust) on training users; query MSE on others."""
    torch.manual_seed(0)
    head = HybridHead(0, 4, (8,), 4, support_trust=trust)
    names = ["log_lambda"] + (["trust.weight", "trust.bias"] if trust else [])
    params = dict(head.named_parameters())
    opt = torch.optim.Adam([params[k] for k in names], lr=0.05)

    def task(p, sx, sy, qx, qy):
        user = torch.zeros(0)
        s_side, q_side = head.item_side(sx), head.item_side(qx)
        fast = head.init_fast(p, user, s_side, sy, torch.ones_like(sy, dtype=torch.bool))
        pred = head.predict(p | fast, user, q_side)
        lam = torch.exp(head.log_shrinkage(p, s_side["q1"], sy - p["mu"] - s_side["b"], torch.ones_like(sy)))
        return ((pred - qy) ** 2).mean(), lam

    batched = vmap(task, in_dims=(None, 0, 0, 0, 0))
    train, test = _noisy_and_clean_users(512, 0), _noisy_and_clean_users(512, 1)
    for _ in range(150):
        loss, _ = batched(params, train["sx"], train["sy"], train["qx"], train["qy"])
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    with torch.no_grad():
        loss, lam = batched(params, test["sx"], test["sy"], test["qx"], test["qy"])
    return loss.mean().item(), lam, test["noisy"]


def test_trust_learns_to_distrust_supports_that_do_not_predict_later_ratings() -> None:
    mse_global, _, _ = _fit_shrinkage(trust=False)
    mse_trust, lam, noisy = _fit_shrinkage(trust=True)
    # the user-bias shrinkage is far larger for the noisy supports than for the informative ones
    assert lam[noisy, 1].median() > 5 * lam[~noisy, 1].median()
    # and held-out users' query error drops well below the best single shrinkage's
    assert mse_trust < 0.9 * mse_global  # measured: 0.47 vs 0.57


def test_models_saved_before_the_trust_option_load_with_a_global_shrinkage(synthetic_small, tmp_path) -> None:
    """Regression: a saved config without ``fold_in_trust`` must not build the new default's network
    (its extra parameters are not in the saved weights)."""
    rec = ColdStartRecommender(
        **{
            "model.hybrid.fold_in_trust": "global",
            "model.embedding_dim": 8,
            "model.factor_dim": 8,
            "train.epochs": 1,
        }
    )
    rec.fit_dataset(synthetic_small)
    rec.save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    raw = json.loads(cfg_path.read_text())
    del raw["model"]["hybrid"]["fold_in_trust"]
    cfg_path.write_text(json.dumps(raw))
    manifest_path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["config.json"] = sha256_file(cfg_path)  # as an older version wrote it
    manifest_path.write_text(json.dumps(manifest))
    loaded = ColdStartRecommender.load(tmp_path / "m")
    assert loaded.config.model.hybrid.fold_in_trust == "global"
    assert RecommenderConfig().model.hybrid.fold_in_trust == "support"
    user = synthetic_small.interactions.filter(
        synthetic_small.interactions["user_id"] == synthetic_small.interactions["user_id"][0]
    )
    ratings = dict(zip(user["item_id"].to_list()[:4], user["rating"].to_list()[:4], strict=True))
    assert rec.recommend(ratings, n=5) == loaded.recommend(ratings, n=5)
