"""Would a rating item-kNN term help the rating combiner? A probe on validation users only.

Trains the default model (``train_model``) on a protocol's training users; at step 7.5 it captures the
validation tasks the combiner is fitted on and compares, by the combiner's own cross-fit over two halves
of the validation users (the test users are never read):

* ``start``: the fold-in weight and MF fallback as chosen;
* ``combiner``: the current two-part combiner (fold-in, MF);
* ``+knn``: a third part, an item-kNN of the support's residuals,
  ``k_ui = sum_j s_ij d_j / (sum_j |s_ij| + LAMBDA)``, ``d_j = r_j - b_j - mean residual`` (shrunk),
  ``s_ij`` a shrunk Pearson correlation of the training users' baseline residuals.

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-rating-knn/knn_probe.py ml-1m random
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

SHRINK = 100.0
LAMBDA = 1.0
captured: dict = {}
original = post_training.choose_rating_mix


def capture(learner, space, config, val_log, tasks, mfs):
    from recsys import added_paths

    captured["tasks"] = added_paths.with_long_tasks(val_log, tasks, config)
    captured["val_log"], captured["learner"], captured["space"] = val_log, learner, space
    captured["mf_weight"] = float(learner.head.mf_weight)
    out = original(learner, space, config, val_log, tasks, mfs)
    captured["parts"] = post_training.rating_parts(learner, space, val_log, captured["tasks"])
    return out


post_training.choose_rating_mix = capture
original_choose = post_training.choose_after_training


def capture_train(learner, space, config, train_log, val_log, tasks, mfs=None):
    captured["train_log"] = train_log
    return original_choose(learner, space, config, train_log, val_log, tasks, mfs)


post_training.choose_after_training = capture_train


def baselines(log, n_items):
    r = log.ratings.astype(np.float64)
    mu = r.mean()
    item = np.bincount(log.items, weights=r - mu, minlength=n_items) / (
        np.bincount(log.items, minlength=n_items) + 25.0
    )
    res = r - mu - item[log.items]
    user = np.add.reduceat(res, log.indptr[:-1]) / (log.counts + 10.0)
    return mu, item, res - np.repeat(user, log.counts)


def similarity(log, n_items):
    mu, item, e = baselines(log, n_items)
    m = sp.csr_matrix((e, log.items, log.indptr), shape=(log.n_users, n_items))
    b = sp.csr_matrix((np.ones_like(e), log.items, log.indptr), shape=(log.n_users, n_items))
    num = (m.T @ m).toarray()
    sq = np.asarray(m.multiply(m).sum(0)).ravel()
    co = (b.T @ b).toarray()
    s = num / np.sqrt(np.outer(sq, sq) + 1e-9) * co / (co + SHRINK)
    np.fill_diagonal(s, 0.0)
    return mu, item, s


def truncate(s, k):
    """Keep each row's k largest |entries| (the support item j's row: its neighbours i)."""
    if k >= s.shape[0]:
        return s
    part = np.argpartition(-np.abs(s), k, axis=1)[:, :k]
    out = np.zeros_like(s)
    rows = np.arange(s.shape[0])[:, None]
    out[rows, part] = s[rows, part]
    return out


def knn_term(parts, val_log, tasks, s, mu, item):
    items, ratings = support_arrays(val_log, tasks)
    mask = items >= 0
    d = np.where(mask, ratings - mu - item[np.maximum(items, 0)], 0.0)
    d = np.where(mask, d - (d.sum(1) / (mask.sum(1) + 1.0))[:, None], 0.0)
    q = tasks.query[tasks.query >= 0]
    qi = val_log.items[q]
    t = parts["task"]
    sim = s[np.maximum(items[t], 0), qi[:, None]] * mask[t]
    return (sim * d[t]).sum(1) / (np.abs(sim).sum(1) + LAMBDA)


def design3(f, fold, mf, knn):
    return np.concatenate([f * fold[:, None], f * mf[:, None], f * knn[:, None]], axis=1)


def fit3(parts, rows, start3):
    rows = rows & parts["seen"]
    x = design3(parts["features"][rows], parts["fold"][rows], parts["mf"][rows], parts["knn"][rows])
    counts = np.bincount(parts["task"])
    w = 1.0 / counts[parts["task"][rows]]
    beta0 = start3.reshape(-1)
    w = w / w.sum()
    beta = beta0.copy()
    y = parts["y"][rows]
    for _ in range(50):
        v = w / np.maximum(np.abs(y - x @ beta), 1e-3)
        a = (x * v[:, None]).T @ x + 1e-3 * v.sum() * np.eye(len(beta))
        new = np.linalg.solve(a, (x * v[:, None]).T @ y + 1e-3 * v.sum() * beta0)
        if np.max(np.abs(new - beta)) < 1e-6:
            return new
        beta = new
    return beta


def cross(parts, users, start, seed, three):
    halves = np.random.default_rng(seed).permutation(np.unique(users))
    held = np.isin(users[parts["task"]], halves[: len(halves) // 2])
    pred = parts["now"].copy()
    for fit_on in (~held, held):
        apply = ~fit_on & parts["seen"]
        if three:
            beta = fit3(parts, fit_on, np.concatenate([start, np.zeros((1, start.shape[1]))]))
            x = design3(parts["features"], parts["fold"], parts["mf"], parts["knn"])
        else:
            beta = rating_mix.fit_parts(parts, fit_on, start).reshape(-1)
            x = rating_mix.design(parts["features"], parts["fold"], parts["mf"])
        pred[apply] = (x @ beta)[apply]
    return rating_mix.per_user_mae(pred, parts["y"], parts["task"], len(users))


def main() -> None:
    name, protocol = sys.argv[1], sys.argv[2]
    ds = load_dataset(name)
    config = RecommenderConfig()
    rec, _ = train_model(ds, config, protocol=protocol, seed=0)
    parts, tasks = captured["parts"], captured["tasks"]
    head = captured["learner"].head
    mu, item, s = similarity(captured["train_log"], head.mf_design.shape[0])
    variants = {}
    for k in (50, 200, 10**9):
        variants[k] = knn_term(parts, captured["val_log"], tasks, truncate(s, k), mu, item)
    parts["knn"] = variants[10**9]
    start = rating_mix.start_coef(float(head.fold_in_weight), captured["mf_weight"])
    own = rating_mix.per_user_mae(parts["now"], parts["y"], parts["task"], len(tasks))
    out = {
        "dataset": name,
        "protocol": protocol,
        "chosen": rec.info.get("rating_mix", {}).get("chosen"),
        "mf_fallback": rec.info.get("mf_fallback", {}).get("chosen"),
        "tasks": len(tasks),
        "start": float(np.nanmean(own)),
    }
    for seed in (0, 1, 2):
        two = cross(parts, tasks.users, start, seed, False)
        three = cross(parts, tasks.users, start, seed, True)
        d = three - two
        d = d[np.isfinite(d)]
        out[f"split {seed}"] = {
            "combiner": float(np.nanmean(two)),
            "+knn": float(np.nanmean(three)),
            "+knn - combiner": [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))],
        }
    for k in (50, 200):
        parts["knn"] = variants[k]
        three = cross(parts, tasks.users, start, 0, True)
        out[f"top-{k} +knn"] = float(np.nanmean(three))
    parts["knn"] = variants[10**9]
    sizes = (tasks.support >= 0).sum(1)
    for lo, hi in ((1, 5), (6, 20), (21, 1000)):
        sel = (sizes >= lo) & (sizes <= hi)
        two = cross(parts, tasks.users, start, 0, False)
        three = cross(parts, tasks.users, start, 0, True)
        out[f"support {lo}-{hi}"] = [
            int(sel.sum()),
            float(np.nanmean(two[sel])),
            float(np.nanmean(three[sel])),
        ]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
