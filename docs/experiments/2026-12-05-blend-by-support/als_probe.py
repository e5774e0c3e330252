"""Would the ALS path help one- and two-item supports? Validation users only.

Validation turns the added ALS ranking path off on Gowalla for supports of 1 to 20 (chosen on the whole
band), while implicit's ALS fold-in is the best baseline at K = 1. This trains the default model
(``train_model``, seed 0) and records, at the ALS path's choice (``added_paths.choose_als_path``), every
candidate's (fit, weight) per-task validation Recall@20 + nDCG@10; it prints, per support-size band,
the best candidate's mean beside "off" (the model without the path), with a paired 95 % bootstrap
interval over the band's users.

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-blend-by-support/als_probe.py /work/shared/data/gowalla/interactions.csv random
"""

from __future__ import annotations

import json
import sys

import numpy as np

from recsys import added_paths
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.workflows import train_model

BANDS = {"1": (1, 1), "2": (2, 2), "3-5": (3, 5), "6-10": (6, 10), "11-20": (11, 20), "21+": (21, 10**6)}
original_values = added_paths.catalogue_task_values
original_choose = added_paths.choose_als_path
seen: dict = {}


def values(score, candidates, space, log, tasks, threshold):
    per = original_values(score, candidates, space, log, tasks, threshold)
    seen["per"], seen["sizes"] = per, tasks.support_sizes
    return per


def choose(*args, **kwargs):
    added_paths.catalogue_task_values = values
    try:
        result = original_choose(*args, **kwargs)
    finally:
        added_paths.catalogue_task_values = original_values
    per, sizes = seen["per"], seen["sizes"]
    value = {key: q["recall@20"] + q["cat_ndcg@10"] for key, q in per.items()}
    rng = np.random.default_rng(0)
    out = {"chosen": result.get("chosen"), "bands": {}}
    for band, (lo, hi) in BANDS.items():
        m = (sizes >= lo) & (sizes <= hi)
        if not m.any():
            continue
        best = max(value, key=lambda k: (np.nanmean(value[k][m]), k == "off"))
        d = (value[best] - value["off"])[m]
        d = d[~np.isnan(d)]
        boots = [rng.choice(d, len(d)).mean() for _ in range(2000)]
        out["bands"][band] = {
            "tasks": int(m.sum()),
            "off": round(float(np.nanmean(value["off"][m])), 4),
            "best": [str(best), round(float(np.nanmean(value[best][m])), 4)],
            "best minus off, paired 95 %": [
                round(float(d.mean()), 4),
                round(float(np.percentile(boots, 2.5)), 4),
                round(float(np.percentile(boots, 97.5)), 4),
            ],
        }
    print(json.dumps(out, indent=1), flush=True)
    return result


added_paths.choose_als_path = choose
train_model(load_dataset(sys.argv[1]), RecommenderConfig(), protocol=sys.argv[2], seed=0)
