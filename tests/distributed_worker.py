"""Worker for tests/test_distributed.py: a few meta-steps on synthetic data, one or several processes.

Run directly (one process) or under ``torchrun --nproc_per_node N``; rank 0 writes the final weights.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from recsys import distributed
from recsys.config import RecommenderConfig
from recsys.data.synthetic import make_synthetic
from recsys.data.tasks import UserLog
from recsys.features.space import FeatureSpace
from recsys.meta.maml import MetaLearner
from recsys.meta.trainer import MetaTrainer
from recsys.models.network import ColdStartNet
from recsys.utils.checkpoint import save_tensors


def main(out: str) -> None:
    rank, world = distributed.init_from_env("cpu")
    torch.set_num_threads(1)
    ds = make_synthetic(n_users=96, n_items=40, n_interactions=2500, seed=4)
    cfg = RecommenderConfig().override(
        **{
            "model.head": "melu",
            "model.embedding_dim": 4,
            "model.hidden": (8,),
            "meta.inner_steps": 2,
            "meta.rank_weight": 0.0,
            "train.meta_batch_size": 16,
            "train.epochs": 2,
            "train.patience": 0,
            "train.grad_clip": 0.0,
        }
    )
    space = FeatureSpace.fit_dataset(ds)
    log = UserLog.from_frame(ds.interactions, space.items)
    log = log.subset(np.nonzero(log.counts >= 3)[0][:96])
    torch.manual_seed(0)
    net = ColdStartNet.for_space(cfg.model, space, rating_mean=3.5)
    learner = MetaLearner(net, cfg.meta)
    # a buffer that differs between ranks before wrapping: DDP must copy rank 0's to every rank once
    learner.register_buffer("probe", torch.full((3,), float(rank)))
    if rank == 0:
        save_tensors(out + ".init", dict(learner.state_dict()), {})
    trainer = MetaTrainer(learner, space, cfg.train)
    trainer.fit(log, None)
    # DDP's per-step buffer broadcast is off (``broadcast_buffers`` reads the forward sync on every torch)
    syncs = int(bool(getattr(trainer.model, "broadcast_buffers", False)))
    save_tensors(f"{out}.probe{rank}", {"probe": learner.probe}, {"syncs_buffers_every_step": syncs})
    if rank == 0:
        save_tensors(out, dict(learner.state_dict()), {"world": world, "steps": trainer.state.global_step})
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
