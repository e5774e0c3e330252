"""How should the classical item-item path's weight depend on the support's size? A probe on
validation users only (the test users are never read).

Trains the default model (``train_model``) on a protocol's training users and captures, when step 7.2
chooses the classical item-item path (:func:`recsys.added_paths.choose_addition`), every candidate's
per-task validation Recall@20 + nDCG@10 (with the weight grid widened to 8 and 16 and item-kNN with 800
neighbours added, the ``item-knn`` baseline's largest). Prints, per support-size group, each fit's best
weight and value, and the value of the weight chosen for supports 1-20, so one can see whether the best
weight grows with the support::

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-support-weight/cf_probe.py ml-100k temporal 0
    python docs/experiments/2026-12-05-support-weight/cf_probe.py --slopes /tmp/cf_probe_ml-100k_temporal_*.npz

The second form reads the per-task values each run saves and regresses, for the fit that wins on
supports 1-20, the per-task difference between weights 2 and 1/4 on log(support size): a positive slope
would mean longer supports want a larger weight.
"""

from __future__ import annotations

import ast
import json
import sys

import numpy as np
import torch

from recsys import added_paths
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.workflows import train_model

GROUPS = ((1, 3), (4, 7), (8, 12), (13, 20), (21, 40), (41, 100))
calls: list = []
original = added_paths.catalogue_task_values


def capture(score, candidates, space, val_log, tasks, threshold):
    per = original(score, candidates, space, val_log, tasks, threshold)
    calls.append({"sizes": tasks.support_sizes.copy(), "users": tasks.users.copy(), "per": per})
    return per


added_paths.catalogue_task_values = capture
added_paths.WEIGHTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
added_paths.CF_FITS = (*added_paths.CF_FITS, ("item-knn", 800))


def summary(call: dict) -> dict:
    sizes, per = call["sizes"], call["per"]
    value = {key: q["recall@20"] + q["cat_ndcg@10"] for key, q in per.items()}
    out = {}
    for lo, hi in GROUPS:
        sel = (sizes >= lo) & (sizes <= hi)
        if not sel.any():
            continue
        means = {key: float(np.nanmean(v[sel])) for key, v in value.items()}
        fits = sorted({key[0] for key in means if key != "off"})
        row = {"tasks": int(sel.sum()), "off": round(means["off"], 4)}
        for k in fits:
            ws = {key[1]: means[key] for key in means if key != "off" and key[0] == k}
            best = max(ws, key=ws.get)
            row[f"fit {k}"] = {"best weight": best, "value": round(ws[best], 4)}
        out[f"{lo}-{hi}"] = row
    return out


def slopes(paths: list[str]) -> None:
    print("run | fit chosen on 1-20 | tasks 1-20 / 21+ | weight 2 minus 1/4, 1-20 | slope per log(size), 1-20 (SE) | 21+ (SE)")
    for path in paths:
        z = np.load(path)
        keys = [k if k == "off" else ast.literal_eval(k) for k in z["keys"]]
        values, n = z["values"], z["sizes"]
        short = n <= 20
        means = {k: np.nanmean(values[i][short]) for i, k in enumerate(keys)}
        best = max((k for k in keys if k != "off"), key=means.get)
        d = values[keys.index((best[0], 2.0))] - values[keys.index((best[0], 0.25))]
        cells = []
        for sel in (short & np.isfinite(d), ~short & np.isfinite(d)):
            x, y = np.log(n[sel]), d[sel]
            design = np.stack([np.ones_like(x), x - x.mean()], 1)
            b = np.linalg.lstsq(design, y, rcond=None)[0]
            se = np.sqrt(np.sum((y - design @ b) ** 2) / (len(y) - 2) / np.sum((x - x.mean()) ** 2))
            cells.append((len(y), y.mean(), b[1], se))
        (n0, m0, b0, s0), (n1, _, b1, s1) = cells
        print(f"{path} | fit {best[0]} x {best[1]:g} | {n0} / {n1} | {m0:+.3f} | {b0:+.3f} ({s0:.3f}) | {b1:+.3f} ({s1:.3f})")


def main() -> None:
    if sys.argv[1] == "--slopes":
        return slopes(sys.argv[2:])
    name, protocol, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rec, _ = train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=seed)
    cf = calls[0]
    result = {
        "dataset": name,
        "protocol": protocol,
        "seed": seed,
        "fits": [f"{k}:{v:g}" for k, v in added_paths.CF_FITS],
        "chosen": rec.info.get("classical_item_item", {}).get("chosen"),
        "groups": summary(cf),
    }
    np.savez_compressed(
        f"/tmp/cf_probe_{name}_{protocol}_{seed}.npz",
        sizes=cf["sizes"],
        users=cf["users"],
        keys=np.array([str(k) for k in cf["per"]]),
        values=np.stack([q["recall@20"] + q["cat_ndcg@10"] for q in cf["per"].values()]),
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
