"""Would predicting each rating's conditional *median* lower the validation MAE? A probe on validation
users only.

The evaluation scores ratings by MAE, and the loss ``E|Y - c|`` of a discrete rating ``Y`` is minimised by
its median, not its mean. The rating combiner (:mod:`recsys.models.rating_mix`) fits a linear
combination of base predictors by least absolute deviations, but a linear map of means cannot move a
prediction of 3.6 to the 4 that a rating distribution with ``P(Y <= 3) < 1/2`` calls for. This trains the
default model (``train_model``), captures the combiner's validation tasks and inputs at step 7.5 (test
users are never read), forms the combiner's cross-fitted prediction ``p`` per query rating, and compares
(by the same cross-fit over two halves of the validation users, three splits) the per-task MAE of ``p``
with calibrations ``g(p)`` fitted on the other half:

* ``round``: ``p`` rounded to the nearest rating (no fit);
* ``bins``: the weighted median of the ratings in ``p``'s bin (bins of 0.1, each rating weighted 1/its
  user's query size, as the MAE averages), a step function;
* ``pull a``: ``p + a (bins(p) - p)`` for ``a`` in 0.25, 0.5, 0.75 (part way to the bin's median);
* ``cuts``: ``k + 1[p > k + t_k]`` for ``p`` in ``[k, k + 1)``, each cut ``t_k`` the one of 0.05 … 0.95
  with the lowest weighted absolute error on the fitting half (rounding is every ``t_k = 0.5``).

The same rules applied to the MF fold-in alone (``mf``: the item baseline plus the MF term of the
combiner's inputs, a stand-in for the MF fold-in baseline) say whether the median's gain is the
combiner's or anyone's: ``mf`` and ``mf round`` are reported against the combiner as it is.

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-median-calibration/calibration_probe.py ml-1m random
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from recsys import post_training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.models import rating_mix
from recsys.workflows import train_model

captured: dict = {}
original_parts = post_training.rating_parts
WIDTH = 0.1


def capture_parts(learner, space, val_log, tasks):
    parts = original_parts(learner, space, val_log, tasks)
    query = tasks.query[tasks.query >= 0]
    parts["rating"] = val_log.ratings[query].astype(np.float64)
    captured.setdefault("parts", []).append(parts)
    captured["users"] = tasks.users
    captured["start"] = rating_mix.start_coef(float(learner.head.fold_in_weight), float(learner.head.mf_weight))
    captured["range"] = (float(val_log.ratings.min()), float(val_log.ratings.max()))
    return parts


post_training.rating_parts = capture_parts


def combiner_prediction(parts, users, start, seed):
    """The combiner's cross-fitted absolute prediction per query rating (``cross_fit_predictions``) and
    which ratings' users are in the first half."""
    pred, held = rating_mix.cross_fit_predictions(parts, users, start, seed)
    return parts["rating"] - parts["y"] + pred, held


def weighted_median(y, w):
    order = np.argsort(y)
    c = np.cumsum(w[order])
    return float(y[order][np.searchsorted(c, 0.5 * c[-1])])


def fit_bins(p, y, w, lo, hi):
    edges = np.arange(lo, hi + WIDTH, WIDTH)
    b = np.clip(np.digitize(p, edges), 0, len(edges))
    med = {}
    for k in np.unique(b):
        sel = b == k
        if w[sel].sum() > 0 and sel.sum() >= 30:
            med[int(k)] = weighted_median(y[sel], w[sel])
    return edges, med


def apply_bins(p, edges, med):
    b = np.clip(np.digitize(p, edges), 0, len(edges))
    return np.array([med.get(int(k), v) for k, v in zip(b, p)])


CUTS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def fit_cuts(p, y, w, lo, hi):
    cuts = {}
    k = np.floor(p)
    for level in np.unique(k):
        sel = k == level
        errs = [float((w[sel] * np.abs(y[sel] - (level + (p[sel] > level + t)))).sum()) for t in CUTS]
        cuts[float(level)] = float(CUTS[int(np.argmin(errs))])
    return cuts


def apply_cuts(p, cuts, lo, hi):
    k = np.floor(p)
    t = np.array([cuts.get(float(v), 0.5) for v in k])
    return np.clip(k + (p > k + t), lo, hi)


def main() -> None:
    name, protocol = sys.argv[1], sys.argv[2]
    rec, _ = train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=0)
    out = {"dataset": name, "protocol": protocol, "chosen": rec.info.get("rating_mix", {}).get("chosen")}
    users, start = captured["users"], captured["start"]
    lo, hi = captured["range"]
    for i, parts in enumerate(captured.get("parts", [])):
        y, task = parts["rating"], parts["task"]
        counts = np.bincount(task, minlength=len(users))
        w = 1.0 / counts[task]
        row = {"tasks": len(users), "ratings": len(y)}
        for seed in (0, 1, 2):
            p, held = combiner_prediction(parts, users, start, seed)
            p = np.clip(p, lo, hi)
            base = rating_mix.per_user_mae(p, y, task, len(users))
            split = {"combiner": round(float(np.nanmean(base)), 5)}
            variants = {"round": np.clip(np.round(p), lo, hi)}
            binned = p.copy()
            for fit_on in (~held, held):
                edges, med = fit_bins(p[fit_on], y[fit_on], w[fit_on], lo, hi)
                binned[~fit_on] = apply_bins(p[~fit_on], edges, med)
            variants["bins"] = binned
            for a in (0.25, 0.5, 0.75):
                variants[f"pull {a}"] = p + a * (binned - p)
            cut = p.copy()
            for fit_on in (~held, held):
                cut[~fit_on] = apply_cuts(p[~fit_on], fit_cuts(p[fit_on], y[fit_on], w[fit_on], lo, hi), lo, hi)
            variants["cuts"] = cut
            mf = np.clip(parts["rating"] - parts["y"] + parts["mf"], lo, hi)
            variants["mf"] = mf
            variants["mf round"] = np.clip(np.round(mf), lo, hi)
            for variant, q in variants.items():
                d = rating_mix.per_user_mae(q, y, task, len(users)) - base
                d = d[np.isfinite(d)]
                split[f"{variant} - combiner"] = [round(float(d.mean()), 5), round(float(d.std(ddof=1) / np.sqrt(len(d))), 5)]
            row[f"split {seed}"] = split
        out[f"MF candidate {i}"] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
