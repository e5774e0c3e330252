"""Should the item-item blend's weight depend on the support's size? Validation users only.

On Gowalla at K = 1 the default is behind implicit's ALS fold-in on nDCG@10 (the suite's 2026-12-05
evening run), while retrained without the item-item blend it is ahead there; validation chose the
ranking paths' weights (support encoder x 1, item-item x 2) once for supports of 1 to 20. This trains
the default model (``train_model``, seed 0), and after every post-training choice scores the validation
tasks with each path alone, then prints, per support-size band, the mean validation Recall@20 +
nDCG@10 of each (encoder, item-item) weight pair, the pair validation chose and the band's best (with a
paired 95 % bootstrap interval over the band's users of best minus chosen).

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-blend-by-support/blend_probe.py /work/shared/data/gowalla/interactions.csv random
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from recsys import post_training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.meta.scoring import CatalogueCache
from recsys.meta.validation import catalogue_scores, catalogue_task_values
from recsys.workflows import train_model

PAIRS = [(1.0, w) for w in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)] + [(0.0, 1.0)]
BANDS = {"1": (1, 1), "2": (2, 2), "3-5": (3, 5), "6-10": (6, 10), "11-20": (11, 20)}
original = post_training.choose_trend
out: dict = {}


def probe(learner, space, config, train_log, val_log, tasks):
    info = original(learner, space, config, train_log, val_log, tasks)
    head = learner.head
    full_cache = CatalogueCache(learner, space, torch.device("cpu"))
    kept = tuple(float(x) for x in head.rank_mix)  # as validation chose it

    def score(chunk):
        full = catalogue_scores(learner, space, val_log, chunk, cache=full_cache)
        paths = []
        for weights in ((1.0, 0.0), (0.0, 1.0)):
            head.set_rank_mix(*weights)
            paths.append(catalogue_scores(learner, space, val_log, chunk, cache=full_cache))
        head.set_rank_mix(*kept)
        return [full, *paths]

    candidates = {"model": lambda p, o: o.copy_(p[0])}
    for e, i in PAIRS:
        candidates[(e, i)] = (lambda e, i: lambda p, o: torch.mul(p[1], e, out=o).add_(p[2], alpha=i))(e, i)
    per = catalogue_task_values(score, candidates, space, val_log, tasks, config.meta.rank_threshold)
    value = {k: per[k]["recall@20"] + per[k]["cat_ndcg@10"] for k in per}
    sizes = tasks.support_sizes
    out["rank mix chosen"] = info_mix.get("value")
    out["validation tasks"] = len(tasks)
    bands = {}
    rng = np.random.default_rng(0)
    for band, (lo, hi) in BANDS.items():
        m = (sizes >= lo) & (sizes <= hi)
        means = {str(k): round(float(np.nanmean(v[m])), 4) for k, v in value.items()}
        best = max((k for k in value if k != "model"), key=lambda k: np.nanmean(value[k][m]))
        d = (value[best] - value["model"])[m]
        d = d[~np.isnan(d)]
        boots = [rng.choice(d, len(d)).mean() for _ in range(2000)] if len(d) else [np.nan]
        bands[band] = {
            "tasks": int(m.sum()),
            "values": means,
            "best": str(best),
            "best minus model, paired 95 %": [round(float(d.mean()), 4) if len(d) else None,
                                               round(float(np.percentile(boots, 2.5)), 4),
                                               round(float(np.percentile(boots, 97.5)), 4)],
        }
    out["bands"] = bands
    print(json.dumps(out, indent=1), flush=True)
    return info


info_mix: dict = {}
original_mix = post_training.choose_rank_mix


def mix(*a, **k):
    result = original_mix(*a, **k)
    info_mix["value"] = [result["support_encoder"], result["item_item"]]
    return result


post_training.choose_rank_mix = mix
post_training.choose_trend = probe
train_model(load_dataset(sys.argv[1]), RecommenderConfig(), protocol=sys.argv[2], seed=0)
