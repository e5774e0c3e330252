"""Should a support's disliked items (rated below the relevance threshold) push the ranking down, as
negatives? A probe on validation users only.

Issue 21 asks that "explicit dislikes (low ratings in the support) enter the ranking as negatives, not as
weak positives". Today two ranking paths read the support's items:

* the learned item-item blend weighs support item ``s``'s row of ``B`` by
  ``ii_rate[0] + ii_rate[1] (r_s - mu)`` (:meth:`recsys.models.heads.HybridHead.item_item_weights`),
  learned on the training tasks' query loss: it can make a low rating a negative if the tasks say so;
* the classical item-item path (:mod:`recsys.models.cf_path`) sums the liked support items' rows of its
  liked-only matrix ``C``: a disliked item adds nothing.

This trains the default model (``train_model``, every post-training choice made as usual), then on the
validation tasks (test users never read) scores the catalogue four times: as chosen (``S0``), without the
classical path (``S_off``), with the classical path summing the *disliked* items instead (``S_dis``),
and with the blend reading the liked items only (``S_liked``). The candidates
``S0 - g_cf (S_dis - S_off) - g_ii (S0 - S_liked)`` put the disliked items' classical rows in with
weight ``-g_cf`` (0: as now) and scale the blend's disliked items by ``1 - g_ii`` (1: dropped, 2: negated),
compared by validation Recall@20 + nDCG@10 with a per-task paired difference against the model as chosen.

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-dislikes/dislike_probe.py ml-100k temporal
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import numpy as np
import torch

from recsys import post_training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.meta.scoring import CatalogueCache
from recsys.meta.validation import catalogue_scores, catalogue_task_values
from recsys.models import heads
from recsys.models.cf_path import ClassicalItemItem as CFPath
from recsys.workflows import train_model

captured: dict = {}
original_choose = post_training.choose_after_training


def capture(learner, space, config, train_log, val_log, tasks, mfs=None):
    info = original_choose(learner, space, config, train_log, val_log, tasks, mfs)
    captured.update(learner=learner, space=space, config=config, val_log=val_log, tasks=tasks)
    return info


post_training.choose_after_training = capture

MODE = {"cf": "liked", "ii": "all"}
THRESHOLD = [4.0]  # the relevance threshold, set from the config in main()
original_cf, original_ii = CFPath.cf_fold_in, heads.HybridHead.item_item_weights


def cf_fold_in(self, s_side, sy, m):
    out = original_cf(self, s_side, sy, m)
    if out and MODE["cf"] != "liked":
        w = m * (sy < self.cf_threshold).to(m.dtype) if MODE["cf"] == "disliked" else m * 0
        out["fast.cf"] = w @ self.cf_matrix[s_side["idx"]]
    return out


def item_item_weights(self, p, z, sy, sm):
    w = original_ii(self, p, z, sy, sm)
    return w * (sy >= THRESHOLD[0]).to(w.dtype) if MODE["ii"] == "liked" else w


CFPath.cf_fold_in = cf_fold_in
heads.HybridHead.item_item_weights = item_item_weights


@contextmanager
def mode(cf: str, ii: str):
    MODE.update(cf=cf, ii=ii)
    try:
        yield
    finally:
        MODE.update(cf="liked", ii="all")


def main() -> None:
    name, protocol = sys.argv[1], sys.argv[2]
    rec, _ = train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=0)
    learner, space, config = captured["learner"], captured["space"], captured["config"]
    val_log, tasks = captured["val_log"], captured["tasks"]
    threshold = config.meta.rank_threshold
    THRESHOLD[0] = threshold
    head = learner.head
    cache = CatalogueCache(learner, space, torch.device("cpu"))

    def score(chunk):
        out = []
        for cf, ii in (("liked", "all"), ("none", "all"), ("disliked", "all"), ("liked", "liked")):
            with mode(cf, ii):
                out.append(catalogue_scores(learner, space, val_log, chunk, cache=cache))
        return out

    def combine(g_cf, g_ii):
        def f(p, out):
            s0, off, dis, liked = p
            torch.sub(s0, dis - off, alpha=g_cf, out=out)
            return out.sub_(s0 - liked, alpha=g_ii)

        return f

    grid = [(g_cf, g_ii) for g_cf in (0.0, 0.25, 0.5, 1.0) for g_ii in (0.0, 1.0, 2.0)]
    per = catalogue_task_values(score, {g: combine(*g) for g in grid}, space, val_log, tasks, threshold)
    value = {g: per[g]["recall@20"] + per[g]["cat_ndcg@10"] for g in grid}
    items, ratings = post_training.support_arrays(val_log, tasks)
    disliked = ((ratings < threshold) & (items >= 0)).sum(1)
    out = {
        "dataset": name,
        "protocol": protocol,
        "ii_rate": head.ii_rate.detach().tolist() if hasattr(head, "ii_rate") else None,
        "mu": float(head.mu.detach()) if hasattr(head, "mu") else None,
        "cf_weight": head.cf_weight.tolist(),
        "validation_tasks": len(tasks),
        "tasks_with_a_disliked_support_item": int((disliked > 0).sum()),
    }
    base = value[(0.0, 0.0)]
    for g in grid:
        d = (value[g] - base)[np.isfinite(base)]
        out[f"cf -{g[0]} disliked, blend x{1 - g[1]:g} disliked"] = {
            "recall20+ndcg10": round(float(np.nanmean(value[g])), 5),
            "minus chosen": [round(float(d.mean()), 5), round(float(d.std(ddof=1) / np.sqrt(len(d))), 5)],
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
