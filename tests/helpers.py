"""Builders shared by the meta-learner tests."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from recsys.config import MetaConfig, ModelConfig
from recsys.data.tasks import UserLog, sample_tasks
from recsys.features.space import FeatureSpace
from recsys.meta.batches import TaskBatch, build_batch
from recsys.meta.maml import MetaLearner
from recsys.models.network import ColdStartNet


def random_log_with_duplicates(n: int, *, distinct_times: bool) -> pl.DataFrame:
    """``n`` random ratings of 60 users on 40 items (seed 0), so (user, item) pairs repeat; timestamps
    all distinct (a permutation) or drawn at random."""
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "user_id": rng.integers(0, 60, n),
            "item_id": rng.integers(0, 40, n),
            "rating": rng.integers(1, 6, n).astype(float),
            "timestamp": rng.permutation(n) + 1000 if distinct_times else rng.integers(0, 10**8, n),
        }
    )


def space_and_log(ds):
    space = FeatureSpace.fit_dataset(ds)
    return space, UserLog.from_frame(ds.interactions, space.items)


def make_learner(
    space: FeatureSpace,
    meta: MetaConfig | None = None,
    model: ModelConfig | None = None,
    seed: int = 0,
    dtype=torch.float32,
) -> MetaLearner:
    torch.manual_seed(seed)
    net = ColdStartNet.for_space(
        model or ModelConfig(embedding_dim=8, hidden=(16, 16), head="melu"), space, rating_mean=3.5, n_items=0
    )
    learner = MetaLearner(net, meta or MetaConfig()).to(dtype)
    t = space.item_table
    learner.set_catalogue(
        torch.from_numpy(t.indices), torch.from_numpy(t.offsets), torch.from_numpy(t.dense).to(dtype)
    )
    return learner


def make_batch(
    space, log, n_tasks=8, support=(1, 7), query=6, seed=0, dtype=torch.float32, rank: bool = False
) -> TaskBatch:
    ts = sample_tasks(
        log, np.arange(n_tasks), np.random.default_rng(seed), support_size=support, query_size=query
    )
    b = build_batch(log, space, ts, rank_positives=rank, rank_threshold=4.0)
    for name in ("support_ratings", "query_ratings", "item_dense", "user_dense"):
        setattr(b, name, getattr(b, name).to(dtype))
    return b


def meta_grads(
    learner: MetaLearner, batch: TaskBatch, loop: bool = False
) -> tuple[float, dict[str, torch.Tensor]]:
    learner.zero_grad(set_to_none=True)
    loss = learner.meta_loss(batch, loop=loop)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in learner.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def pad_batch(batch: TaskBatch, extra_support: int, extra_query: int) -> TaskBatch:
    """The same batch with extra all-padding columns (item 0, rating 0, mask False)."""

    def widen(x: torch.Tensor, extra: int, fill) -> torch.Tensor:
        pad = torch.full((x.shape[0], extra), fill, dtype=x.dtype)
        return torch.cat([x, pad], dim=1)

    kw = dict(batch.__dict__)
    kw["rank_items"] = widen(batch.rank_items, 3, 0)
    kw["rank_mask"] = widen(batch.rank_mask, 3, False)
    for prefix, extra in (("support", extra_support), ("query", extra_query)):
        kw[f"{prefix}_items"] = widen(batch.__dict__[f"{prefix}_items"], extra, 0)
        kw[f"{prefix}_ratings"] = widen(batch.__dict__[f"{prefix}_ratings"], extra, 0.0)
        kw[f"{prefix}_mask"] = widen(batch.__dict__[f"{prefix}_mask"], extra, False)
        kw[f"{prefix}_pos"] = widen(batch.__dict__[f"{prefix}_pos"], extra, 0)
    return TaskBatch(**kw)
