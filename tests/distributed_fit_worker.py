"""Worker for tests/test_distributed.py: ``ColdStartRecommender.fit`` (default hybrid head, item-item
blend, ALS start, weights chosen after training) under ``torchrun --nproc_per_node 2``.

Each rank starts with one torch thread and records how often it ran the work rank 0 does alone (the
ALS start, the item-item fit, the choices after training) and with how many threads and writes every parameter and buffer of its model (``persistent=False`` ones
included) right after the head's preparation and at the end, with the model's ``info``.
"""

from __future__ import annotations

import json
import sys

import torch

from recsys import distributed, post_training, training
from recsys.config import RecommenderConfig
from recsys.data.synthetic import make_synthetic
from recsys.recommender import ColdStartRecommender
from recsys.utils.checkpoint import save_tensors
from recsys.utils.collectives import module_tensors

CALLS = {"als_start": 0, "item_item": 0, "rank_mix": 0}
THREADS: dict[str, int] = {}  # torch's intra-op threads while each ran


def counted(module, name: str, key: str) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        CALLS[key] += 1
        THREADS[key] = torch.get_num_threads()
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


def main(out: str) -> None:
    rank, world = distributed.init_from_env("cpu")
    torch.set_num_threads(1)
    counted(training, "init_item_ids_from_als", "als_start")
    counted(training, "fit_item_item", "item_item")
    counted(post_training, "choose_rank_mix", "rank_mix")
    prepared: dict[str, torch.Tensor] = {}
    prepare = training.prepare_head

    def prepare_and_record(learner, *args, **kwargs):
        info = prepare(learner, *args, **kwargs)
        prepared.update({k: v.detach().clone() for k, v in module_tensors(learner).items()})
        return info

    training.prepare_head = prepare_and_record
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=3000, seed=5)
    cfg = RecommenderConfig().override(
        **{
            "model.embedding_dim": 4,
            "model.hidden": (8,),
            "train.meta_batch_size": 16,
            "train.epochs": 2,
            "train.patience": 0,
        }
    )
    rec = ColdStartRecommender(cfg).fit_dataset(ds)
    final = {k: v.detach().clone() for k, v in module_tensors(rec.learner).items()}
    meta = {
        "rank": rank,
        "world": world,
        "calls": CALLS,
        "threads": THREADS,
        "threads_after": torch.get_num_threads(),
        "info": json.loads(json.dumps(rec.info, default=str)),
    }
    save_tensors(
        f"{out}.rank{rank}",
        {f"prepared.{k}": v for k, v in prepared.items()} | {f"final.{k}": v for k, v in final.items()},
        meta,
    )
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
