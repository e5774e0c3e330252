"""Would a user-user neighbour term help the rating combiner? A probe on validation users only.

The rating combiner (:mod:`recsys.models.rating_mix`) weighs three terms read from a new user's
support: the meta-learned fold-in, a biased MF's fold-in and a rating item-kNN of the support's
residuals (item-item). A user-user neighbourhood is the classical signal it lacks: training users whose
residuals on the support's items agree with the new user's, and what they gave the item being
predicted. This trains the default model (``train_model``), captures the combiner's validation tasks
and inputs at step 7.5 (test users never read) and adds the term

    u_ui = sum_v s_uv^+ e_vi / (sum_v s_uv^+ [v rated i] + lam),   e_vi = r_vi - b_i,
    s_uv = sum_{j in support} e_uj e_vj / (|e_u| |e_v,support| + eps) * n_uv / (n_uv + shrink)

(``v`` the training users, ``b_i`` the training log's damped item mean, ``n_uv`` the support items
``v`` rated; ``s^+ = max(s, 0) ** p``), multiplying the combiner's user features like the other terms,
then compares the combiner's own cross-fit over two halves of the validation users (three splits).

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-user-knn/user_knn_probe.py ml-1m random
"""

from __future__ import annotations

import json
import sys

import numpy as np
import scipy.sparse as sp
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
DAMPING = 5.0


def capture_train(learner, space, config, train_log, val_log, tasks, mfs=None):
    captured["train_log"] = train_log
    return original_choose(learner, space, config, train_log, val_log, tasks, mfs)


def capture_parts(learner, space, val_log, tasks):
    parts = original_parts(learner, space, val_log, tasks)
    parts["query_items"] = val_log.items[tasks.query[tasks.query >= 0]]
    parts["rating"] = val_log.ratings[tasks.query[tasks.query >= 0]].astype(np.float64)
    parts["support"] = support_arrays(val_log, tasks)
    parts["n_items"] = learner.head.mf_base.shape[0]
    captured.setdefault("parts", []).append(parts)
    captured["users"] = tasks.users
    captured["start"] = rating_mix.start_coef(float(learner.head.fold_in_weight), float(learner.head.mf_weight))
    return parts


post_training.rating_parts = capture_parts
post_training.choose_after_training = capture_train


def user_knn_terms(train_log, parts, *, power=1.0, shrink=2.0, lam=1.0):
    n = parts["n_items"]
    mu = float(train_log.ratings.mean())
    sums = np.bincount(train_log.items, weights=train_log.ratings - mu, minlength=n)
    counts = np.bincount(train_log.items, minlength=n)
    b = mu + sums / (counts + DAMPING)
    rows = np.repeat(np.arange(train_log.n_users), np.diff(train_log.indptr))
    e = sp.csr_matrix((train_log.ratings - b[train_log.items], (rows, train_log.items)), shape=(train_log.n_users, n))
    mask = sp.csr_matrix((np.ones(len(rows)), (rows, train_log.items)), shape=(train_log.n_users, n))
    e2 = e.multiply(e).tocsr()
    items, ratings = parts["support"]
    valid = items >= 0
    t = np.repeat(np.arange(len(items)), valid.sum(1))
    eu = sp.csr_matrix((ratings[valid] - b[items[valid]], (t, items[valid])), shape=(len(items), n))
    mu_sup = sp.csr_matrix((np.ones(len(t)), (t, items[valid])), shape=(len(items), n))
    dot = (eu @ e.T).toarray()  # [tasks, train users]
    norm_v = np.sqrt((mu_sup @ e2.T).toarray())  # |e_v| on each task's support items
    common = (mu_sup @ mask.T).toarray()
    norm_u = np.sqrt(np.asarray(eu.multiply(eu).sum(1)))
    s = dot / (norm_u * norm_v + 1e-9) * common / (common + shrink)
    s = np.maximum(s, 0.0) ** power
    num = sp.csr_matrix(s) @ e  # [tasks, items]
    den = sp.csr_matrix(s) @ mask
    task, qi = parts["task"], parts["query_items"]
    num_q = np.asarray(num[task, qi]).ravel()
    den_q = np.asarray(den[task, qi]).ravel()
    # the term relative to the head's item baseline (parts["y"] is the rating minus it)
    return num_q / (den_q + lam) + (b[qi] - (parts["rating"] - parts["y"]))


def main() -> None:
    name, protocol = sys.argv[1], sys.argv[2]
    rec, _ = train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=0)
    out = {"dataset": name, "protocol": protocol, "chosen": rec.info.get("rating_mix", {}).get("chosen")}
    users, start, train_log = captured["users"], captured["start"], captured["train_log"]
    parts = captured["parts"][-1]
    out["tasks"] = len(users)
    variants = {
        "p1 shrink2 lam1": dict(power=1.0, shrink=2.0, lam=1.0),
        "p2 shrink2 lam1": dict(power=2.0, shrink=2.0, lam=1.0),
        "p1 shrink5 lam0.1": dict(power=1.0, shrink=5.0, lam=0.1),
        "p2.5 shrink2 lam0.1": dict(power=2.5, shrink=2.0, lam=0.1),
    }
    x0 = rating_mix.parts_design(parts)
    for variant, kw in variants.items():
        term = user_knn_terms(train_log, parts, **kw)
        term = np.where(parts["seen"], term, 0.0)
        x = np.concatenate([x0, parts["features"] * term[:, None]], axis=1)
        beta0 = np.concatenate([start.reshape(-1), np.zeros(rating_mix.N_FEATURES)])
        row = {"term sd": round(float(term.std()), 4), "corr with y": round(float(np.corrcoef(term, parts["y"])[0, 1]), 4)}
        for seed in (0, 1, 2):
            base = rating_mix.cross_fit_task_mae(parts, users, start, seed)
            more = rating_mix.cross_fit_task_mae(parts, users, beta0, seed, x=x)
            d = (more - base)[np.isfinite(more - base)]
            row[f"split {seed}"] = {"combiner": round(float(np.nanmean(base)), 5),
                                    "+user-kNN - combiner": [round(float(d.mean()), 5), round(float(d.std(ddof=1) / np.sqrt(len(d))), 5)]}
        out[variant] = row
        print(variant, json.dumps(row), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
