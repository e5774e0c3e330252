"""Would the rest of issue 21's combiner features help it? A probe on validation users only.

Issue 21 asks for a per-user combiner reading the support's size, rating mean and spread (the rating
combiner's features today, :mod:`recsys.models.rating_mix`), and also how recent and how popular its
items are and the disagreement between the base scorers. This trains the default model
(``train_model``), captures the combiner's validation tasks and inputs at step 7.5 (the test users are
never read) and compares, by the combiner's own cross-fit over two halves of the validation users
(three splits), the combiner with each further feature multiplying every term:

* ``popularity``: the support items' mean ``log(1 + n_i) / log(1 + max n)`` (training ratings), per user;
* ``age``: ``log(1 + d) / log(1 + max d)``, ``d`` the days from the support's latest rating to the
  training log's last, per user (logs with timestamps);
* ``disagreement``: ``tanh |f_ui - (m_ui - b_i)|``, how far the meta-learned and the MF fold-in disagree
  on the rating being predicted (a feature-weighted linear stacking meta-feature), per rating.

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-user-evidence/user_probe.py ml-1m temporal
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
original_choose = post_training.choose_after_training
DAY = 86400.0


def capture_parts(learner, space, val_log, tasks):
    parts = original_parts(learner, space, val_log, tasks)
    train_log = captured["train_log"]
    n = learner.head.mf_base.shape[0]
    mask = tasks.support >= 0
    pos = np.maximum(tasks.support, 0)
    counts = np.bincount(train_log.items, minlength=n)
    pop = np.log1p(counts[val_log.items[pos]]) / np.log1p(counts.max())
    pop_user = (pop * mask).sum(1) / np.maximum(mask.sum(1), 1)
    cols = {"popularity": pop_user[parts["task"]]}
    if val_log.times is not None and train_log.times is not None:
        latest = np.where(mask, val_log.times[pos], -np.inf).max(1)
        days = np.maximum(float(train_log.times.max()) - latest, 0.0) / DAY
        days = np.where(np.isfinite(days), days, 0.0)
        cols["age"] = (np.log1p(days) / np.log1p(max(days.max(), 1.0)))[parts["task"]]
    cols["disagreement"] = np.tanh(np.abs(parts["fold"] - parts["mf"])) * parts["seen"]
    parts["extra"] = cols
    captured.setdefault("parts", []).append(parts)
    captured["users"] = tasks.users
    captured["start"] = rating_mix.start_coef(float(learner.head.fold_in_weight), float(learner.head.mf_weight))
    return parts


def capture_train(learner, space, config, train_log, val_log, tasks, mfs=None):
    captured["train_log"] = train_log
    return original_choose(learner, space, config, train_log, val_log, tasks, mfs)


post_training.rating_parts = capture_parts
post_training.choose_after_training = capture_train


def design(parts, names) -> np.ndarray:
    x = rating_mix.design(parts["features"], parts["fold"], parts["mf"], parts["knn"])
    extra = [parts["extra"][n][:, None] * t[:, None] for n in names for t in (parts["fold"], parts["mf"], parts["knn"])]
    return np.concatenate([x, *extra], axis=1) if extra else x


def cross(parts, users, start, seed, names):
    """The combiner's own cross-fit (:func:`recsys.models.rating_mix.cross_fit_task_mae`) with the
    variant's columns, their coefficients starting at 0."""
    x = design(parts, names)
    beta0 = np.concatenate([start.reshape(-1), np.zeros(x.shape[1] - start.size)])
    return rating_mix.cross_fit_task_mae(parts, users, beta0, seed, x=x)


def main() -> None:
    name, protocol = sys.argv[1], sys.argv[2]
    rec, _ = train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=0)
    out = {"dataset": name, "protocol": protocol, "chosen": rec.info.get("rating_mix", {}).get("chosen")}
    users, start = captured["users"], captured["start"]
    for i, parts in enumerate(captured.get("parts", [])):
        names = list(parts["extra"])
        variants = {f"+{n}": [n] for n in names} | {"+all": names}
        own = rating_mix.per_user_mae(parts["now"], parts["y"], parts["task"], len(users))
        row = {"tasks": len(users), "start": float(np.nanmean(own))}
        for seed in (0, 1, 2):
            base = cross(parts, users, start, seed, [])
            split = {"combiner": round(float(np.nanmean(base)), 5)}
            for variant, cols in variants.items():
                more = cross(parts, users, start, seed, cols)
                d = (more - base)[np.isfinite(more - base)]
                split[f"{variant} - combiner"] = [round(float(d.mean()), 5), round(float(d.std(ddof=1) / np.sqrt(len(d))), 5)]
            row[f"split {seed}"] = split
        out[f"MF candidate {i}"] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
