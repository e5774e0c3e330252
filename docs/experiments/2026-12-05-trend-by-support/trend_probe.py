"""Should the trend prior's weight shrink as the support grows? A probe on validation users only (the
test users are never read).

With three ratings a new user's own signal is thin and a popularity prior should count for more than
with twenty (ML-1M temporal: the default is level with liked popularity at K = 3 and 5, ahead at 10).
Trains the default model (``train_model``) on a protocol's training users and captures, when step 7.6
chooses the trend prior (:func:`recsys.post_training.choose_trend`), every candidate's per-task
validation Recall@20 + nDCG@10 (weight grid widened to 1/8 ... 8). Prints, per support-size group, the
best weight of the prior chosen and of all-time popularity, and regresses the per-task difference
between weights 2 and 1/4 of the chosen prior on log(support size): a negative slope would mean short
supports want more of it::

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-trend-by-support/trend_probe.py ml-1m temporal 0
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from recsys import post_training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.meta.validation import catalogue_task_values
from recsys.models import trend
from recsys.workflows import train_model

GROUPS = ((1, 2), (3, 4), (5, 7), (8, 12), (13, 20))
calls: list = []


def capture(score, candidates, space, val_log, tasks, threshold):
    per = catalogue_task_values(score, candidates, space, val_log, tasks, threshold)
    if "off" in per and any(isinstance(k, tuple) and isinstance(k[0], tuple) for k in per):
        calls.append({"sizes": tasks.support_sizes.copy(), "per": per})
    return {key: {name: float(np.nanmean(v)) for name, v in q.items()} for key, q in per.items()}


post_training.catalogue_values = capture
trend.WEIGHTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def slope(n: np.ndarray, d: np.ndarray) -> tuple[int, float, float, float]:
    sel = np.isfinite(d) & (n > 0)
    x, y = np.log(n[sel]), d[sel]
    design = np.stack([np.ones_like(x), x - x.mean()], 1)
    b = np.linalg.lstsq(design, y, rcond=None)[0]
    se = np.sqrt(np.sum((y - design @ b) ** 2) / (len(y) - 2) / np.sum((x - x.mean()) ** 2))
    return int(sel.sum()), float(y.mean()), float(b[1]), float(se)


def main() -> None:
    name, protocol, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rec, _ = train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=seed)
    call = calls[-1]
    sizes, per = call["sizes"], call["per"]
    value = {key: q["recall@20"] + q["cat_ndcg@10"] for key, q in per.items()}
    np.savez_compressed(
        f"/tmp/trend_probe_{name}_{protocol}_{seed}.npz",
        sizes=sizes,
        keys=np.array([str(k) for k in value]),
        values=np.stack(list(value.values())),
    )
    chosen = rec.info["trend"]
    prior = (chosen["half_life_days"], chosen["positives"])
    alltime = (None, chosen["positives"])
    groups = {}
    for lo, hi in GROUPS:
        sel = (sizes >= lo) & (sizes <= hi)
        if not sel.any():
            continue
        row = {"tasks": int(sel.sum()), "off": round(float(np.nanmean(value["off"][sel])), 4)}
        for label, key in (("chosen prior", prior), ("all-time", alltime)):
            ws = {w: float(np.nanmean(value[(key, w)][sel])) for w in trend.WEIGHTS if (key, w) in value}
            if ws:
                best = max(ws, key=ws.get)
                row[label] = {"best weight": best, "value": round(ws[best], 4)}
        groups[f"{lo}-{hi}"] = row
    out = {"dataset": name, "protocol": protocol, "seed": seed, "chosen": chosen["chosen"], "groups": groups}
    out["tasks without a support"] = int((sizes == 0).sum())
    for label, key in (("chosen prior", prior), ("all-time", alltime)):
        if (key, 2.0) in value:
            n, mean, b, se = slope(sizes, value[(key, 2.0)] - value[(key, 0.25)])
            out[f"{label}: weight 2 minus 1/4"] = {"tasks": n, "mean": round(mean, 4), "slope per log(size)": round(b, 4), "SE": round(se, 4)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
