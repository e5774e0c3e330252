"""Would item-level evidence help the rating combiner? A probe on validation users only.

The combiner (:mod:`recsys.models.rating_mix`) weighs its three terms (meta-learned fold-in, MF
fold-in, item-kNN) per *user*, from the support's features. How far a term can be trusted also depends
on the *item* being predicted: the kNN term rests on how much similarity the query item has to the
support (``sum_j |s_ji|``), the MF term on how often the item was rated in training. This trains the
default model (``train_model``), captures the combiner's validation tasks and inputs at step 7.5 (the
test users are never read) and compares, by the combiner's own cross-fit over two halves of the
validation users (three splits):

* ``combiner``: the three terms, user features only (the default);
* ``+item``: each term also times two item features, ``e_ui = E/(E + 1)`` with ``E = sum_j |s_ji|``
  (the query item's similarity to the support) and ``p_i = log(1 + n_i) / log(1 + max n)`` (its training
  ratings).

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-item-evidence/item_probe.py ml-1m temporal
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from recsys import post_training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.metrics.task_metrics import support_arrays
from recsys.models import rating_mix
from recsys.workflows import train_model

captured: dict = {}
original_parts = post_training.rating_parts
original_choose = post_training.choose_after_training


def evidence(head, log, tasks) -> np.ndarray:
    """``sum_j |s_ji|`` of each query rating (flat), from the head's neighbour lists."""
    mask = tasks.query >= 0
    items, _ = support_arrays(log, tasks)
    out = np.zeros(tasks.query.shape)
    n = head.mf_base.shape[0]
    for start in range(0, len(tasks), 256):
        rows = slice(start, start + 256)
        it = torch.from_numpy(items[rows])
        m = (it >= 0).to(head.knn_val.dtype).unsqueeze(-1)
        idx, val = head.knn_idx[it.clamp_min(0)], head.knn_val[it.clamp_min(0)]
        den = torch.zeros(len(it), n, dtype=val.dtype).scatter_add(
            1, idx.reshape(len(it), -1), (val.abs() * m).reshape(len(it), -1)
        )
        query = torch.from_numpy(log.items[np.maximum(tasks.query[rows], 0)])
        out[rows] = den.gather(1, query).double().numpy()
    return out[mask]


def capture_parts(learner, space, val_log, tasks):
    parts = original_parts(learner, space, val_log, tasks)
    if learner.head.knn_idx.numel():
        e = evidence(learner.head, val_log, tasks)
        q = val_log.items[tasks.query[tasks.query >= 0]]
        counts = np.bincount(captured["train_log"].items, minlength=learner.head.mf_base.shape[0])
        parts["item"] = np.stack([e / (e + 1.0), np.log1p(counts[q]) / np.log1p(counts.max())], axis=1)
        captured.setdefault("parts", []).append(parts)
        captured["users"] = tasks.users
        captured["start"] = rating_mix.start_coef(
            float(learner.head.fold_in_weight), float(learner.head.mf_weight)
        )
    return parts


def capture_train(learner, space, config, train_log, val_log, tasks, mfs=None):
    captured["train_log"] = train_log
    return original_choose(learner, space, config, train_log, val_log, tasks, mfs)


post_training.rating_parts = capture_parts
post_training.choose_after_training = capture_train


VARIANTS = {"+item": [0, 1], "+evidence": [0], "+popularity": [1]}
"""Which item features (columns of ``parts["item"]``) each variant adds."""


def design(parts, item) -> np.ndarray:
    x = rating_mix.design(parts["features"], parts["fold"], parts["mf"], parts["knn"])
    if not item:
        return x
    cols = parts["item"][:, VARIANTS[item]]
    extra = [cols * t[:, None] for t in (parts["fold"], parts["mf"], parts["knn"])]
    return np.concatenate([x, *extra], axis=1)


def cross(parts, users, start, seed, item):
    """The combiner's own cross-fit (:func:`recsys.models.rating_mix.cross_fit_task_mae`) with the
    variant's columns, their coefficients starting at 0."""
    x = design(parts, item)
    beta0 = np.concatenate([start.reshape(-1), np.zeros(x.shape[1] - start.size)])
    return rating_mix.cross_fit_task_mae(parts, users, beta0, seed, x=x)


def main() -> None:
    name, protocol = sys.argv[1], sys.argv[2]
    rec, _ = train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=0)
    out = {"dataset": name, "protocol": protocol, "chosen": rec.info.get("rating_mix", {}).get("chosen")}
    users, start = captured["users"], captured["start"]
    for i, parts in enumerate(captured.get("parts", [])):
        own = rating_mix.per_user_mae(parts["now"], parts["y"], parts["task"], len(users))
        row = {"tasks": len(users), "start": float(np.nanmean(own))}
        for seed in (0, 1, 2):
            base = cross(parts, users, start, seed, None)
            split = {"combiner": round(float(np.nanmean(base)), 5)}
            for variant in VARIANTS:
                more = cross(parts, users, start, seed, variant)
                d = (more - base)[np.isfinite(more - base)]
                split[f"{variant} - combiner"] = [
                    round(float(d.mean()), 5),
                    round(float(d.std(ddof=1) / np.sqrt(len(d))), 5),
                ]
            row[f"split {seed}"] = split
        out[f"MF candidate {i}"] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
