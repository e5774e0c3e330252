"""Sparse vs dense embedding gradients for a large item-id table (>= 1,000,000 rows).

The same meta-training step (MeLU head, 5 local steps, meta-batch 32) on a catalogue of N items with
an item-id embedding per item, run side by side: dense gradients + Adam (every row's moments are
updated each step) against ``sparse=True`` gradients + SparseAdam (only the rows a batch touches).
Prints the median step time and the peak memory of each, and the ratio. Also runs the same
comparison at MovieLens scale (``--small-items``), where the issue asks which is faster.

Usage: ``python -m benchmarks.sparse_embeddings [--items 1000000] [--steps 8]``
"""

from __future__ import annotations

import argparse
import gc

import numpy as np
import polars as pl
import torch

from benchmarks.common import PeakRSS, header, median, time_interleaved
from recsys.config import RecommenderConfig
from recsys.data.tasks import UserLog, iterate_batches, sample_tasks
from recsys.features.space import FeatureSpace
from recsys.meta.batches import build_batch
from recsys.meta.maml import MetaLearner
from recsys.meta.trainer import MetaTrainer
from recsys.models.network import ColdStartNet


def _setup(n_items: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_users = 20_000
    per_user = 40
    # every item is rated at least once (so the item-id table really has n_items rows), the rest of the
    # log is heavy-tailed: a batch touches few of the rows
    heavy = (rng.pareto(1.2, n_users * per_user) * 50).astype(np.int64) % n_items
    items = np.concatenate([rng.permutation(n_items), heavy])
    users = np.concatenate([rng.integers(0, n_users, n_items), np.repeat(np.arange(n_users), per_user)])
    frame = pl.DataFrame(
        {"user_id": users, "item_id": items, "rating": rng.integers(1, 6, len(users)).astype(np.float32)}
    )
    frame = frame.unique(subset=["user_id", "item_id"])
    catalogue = pl.DataFrame({"item_id": np.arange(n_items)})
    space = FeatureSpace.fit(frame, items=catalogue, item_fields=[], rating_scale=(1.0, 5.0))
    log = UserLog.from_frame(frame, space.items)
    return space, log


def _trainer(space: FeatureSpace, sparse: bool, device: str = "cpu") -> MetaTrainer:
    cfg = RecommenderConfig().replace(
        model={"head": "melu", "sparse": sparse, "embedding_dim": 32},
        meta={"inner_steps": 5, "rank_weight": 0.0, "inner_lr": 0.005},
        train={"device": device},
    )
    torch.manual_seed(0)
    net = ColdStartNet.for_space(cfg.model, space, rating_mean=3.0)
    return MetaTrainer(MetaLearner(net, cfg.meta), space, cfg.train)


def compare(n_items: int, steps: int, device: str = "cpu", batch_size: int = 32) -> dict:
    space, log = _setup(n_items)
    rows = space.item_encoder.num_embeddings
    header(
        f"5. sparse vs dense embedding gradients: item table of {rows:,} rows x 32, meta-batch {batch_size}, "
        f"5 local steps, {device}"
    )
    rng = np.random.default_rng(1)
    tasks = sample_tasks(log, np.arange(log.n_users), rng, support_size=(1, 20), query_size=10)
    batches = [
        build_batch(log, space, t).to(device) for t in list(iterate_batches(tasks, batch_size, rng))[:steps]
    ]
    out = {}
    trainers = {}
    for name, sparse in (("dense + Adam", False), ("sparse + SparseAdam", True)):
        gc.collect()
        with PeakRSS() as mem:
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            trainers[name] = _trainer(space, sparse, device)
            for b in batches[:2]:  # optimiser state is allocated on the first steps
                trainers[name]._step(b)
        gpu = device.startswith("cuda")
        out[name] = {"memory_mb": torch.cuda.max_memory_allocated() / 2**20 if gpu else mem.delta_mb}

    def run(tr: MetaTrainer) -> None:
        for b in batches:
            tr._step(b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fns = {name: (lambda tr=tr: run(tr)) for name, tr in trainers.items()}
    times = time_interleaved(fns, repeats=3, warmup=0)
    for name, ts in times.items():
        out[name]["step_ms"] = median(ts) / len(batches) * 1e3
        print(
            f"  {name:<22} {out[name]['step_ms']:8.1f} ms/step   model + optimiser state +{out[name]['memory_mb']:.0f} MB"
        )
    ratio = out["dense + Adam"]["step_ms"] / out["sparse + SparseAdam"]["step_ms"]
    print(f"  dense / sparse step time = {ratio:.2f}x")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--small-items", type=int, default=3_706)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    return {
        "large": compare(args.items, args.steps, args.device, args.batch_size),
        "movielens_scale": compare(args.small_items, args.steps, args.device, args.batch_size),
    }


if __name__ == "__main__":
    main()
