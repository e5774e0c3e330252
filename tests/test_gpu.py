"""The CUDA path (skipped without a GPU): the same code trains and scores on the device, the
vectorised inner loop matches the per-user loop there, and a training step makes no host sync."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.config import MetaConfig, ModelConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def data(synthetic_small):
    from tests.helpers import space_and_log

    return space_and_log(synthetic_small)


@pytest.mark.parametrize("head", ["melu", "hybrid"])
def test_vectorised_equals_loop_on_cuda(data, head) -> None:
    from tests.helpers import make_batch, make_learner, meta_grads

    space, log = data
    model = ModelConfig(embedding_dim=8, hidden=(16,), head=head, factor_dim=8)
    learner = make_learner(
        space, MetaConfig(inner_steps=2, inner_lr=0.05, rank_weight=0.5), model, dtype=torch.float64
    )
    learner.to("cuda")
    batch = make_batch(space, log, n_tasks=9, dtype=torch.float64, rank=True).to("cuda")
    loss_v, g_v = meta_grads(learner, batch)
    loss_l, g_l = meta_grads(learner, batch, loop=True)
    assert abs(loss_v - loss_l) < 1e-8
    for name in g_v:
        torch.testing.assert_close(g_v[name], g_l[name], atol=1e-7, rtol=1e-6)


def test_training_step_makes_no_host_sync(data) -> None:
    from recsys.config import TrainConfig
    from recsys.meta.trainer import MetaTrainer
    from tests.helpers import make_batch, make_learner

    space, log = data
    model = ModelConfig(embedding_dim=8, hidden=(16,), head="hybrid", factor_dim=8)
    learner = make_learner(space, MetaConfig(rank_weight=1.0), model)
    trainer = MetaTrainer(learner, space, TrainConfig(device="cuda"))
    batch = make_batch(space, log, n_tasks=16, rank=True).pin_memory().to("cuda", non_blocking=True)
    trainer._step(batch)  # warm-up (allocations, lazy initialisation)
    torch.cuda.synchronize()
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    torch.cuda.set_sync_debug_mode("error")
    try:
        reported = trainer._step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    # the step really ran on the device: a finite loss (a skipped step reports NaN) and new weights
    assert reported.is_cuda and bool(torch.isfinite(reported))
    changed = [n for n, p in learner.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert "net.head.q_tower.0.weight" in changed and "net.head.r_tower.0.weight" in changed, changed


def test_train_and_score_on_cuda_match_cpu(synthetic_small) -> None:
    from recsys import ColdStartRecommender

    ds = synthetic_small
    over = {"train.epochs": 2, "model.embedding_dim": 8, "model.hidden": (16,), "model.factor_dim": 8}
    rec = ColdStartRecommender(**over, **{"train.device": "cuda"}).fit_dataset(ds)
    assert next(rec.learner.parameters()).device.type == "cpu"  # returned on the CPU after training
    ratings = {1: 5.0, 2: 3.0, 3: 4.0}
    cpu = rec.predict(ratings, [4, 5, 6, 7])
    gpu = rec.to("cuda").predict(ratings, [4, 5, 6, 7])
    np.testing.assert_allclose(cpu, gpu, rtol=1e-4, atol=1e-4)
    assert [i for i, _ in rec.recommend(ratings, n=5)] == [
        i for i, _ in rec.to("cpu").recommend(ratings, n=5)
    ]
