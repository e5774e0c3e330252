"""Does popularity among users like the new one (same demographic group) beat global popularity for a
new user's first ratings? Validation users only; numpy, no training.

Under a holdout protocol the default model is level with (liked) popularity at K = 1 to 5 on ML-1M
temporal: its ranking there is mostly the trend prior. The user table (gender, age, occupation, zip) is
read by the network, but no ranking path is the classical "popular in your group" estimator. This scores
the protocol's validation users (the latest joiners among the training users under temporal) with

* ``global``: the trend prior the model chooses from (log(1 + decayed count) of every item, all-time or
  a 7-day half-life, all ratings or liked ones only), and
* ``group F``: the same counts over the training users sharing the user's field F (or gender x age),
  standardised per group, added to the global prior with weight w in 0.25, 0.5, 1, 2,

then prints each one's mean validation Recall@20 and nDCG@10 (support excluded, relevant = query
ratings >= 4) at K = 1, 3, 5, 10 (first K ratings by time as support, last 10 as query under temporal;
random K and 10 under random), with a paired 95 % bootstrap interval over validation users of the best
group variant minus the best global prior.

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-group-popularity/group_probe.py ml-1m temporal
"""

from __future__ import annotations

import json
import sys

import numpy as np
import polars as pl

from recsys.data.dataset import load_dataset
from recsys.data.protocols import split_protocol
from recsys.data.tasks import UserLog
from recsys.data.ids import IdIndex
from recsys.data.protocols import new_user_tasks
from recsys.metrics import core as M
from recsys.metrics.task_metrics import catalogue_truth, support_arrays
from recsys.metrics.topk import exclusion_entries, top_n_masked

DAY = 86400.0
name, protocol = sys.argv[1], sys.argv[2]
ds = load_dataset(name)
split = split_protocol(ds, protocol, seed=0)
inter = split.train
is_val = inter["user_id"].is_in(split.validation_users.implode())
train, val = inter.filter(~is_val), inter.filter(is_val)
items = IdIndex(train["item_id"].unique().sort())
tlog, vlog = UserLog.from_frame(train, items), UserLog.from_frame(val, items)
n_items = len(items)
users = ds.users
fields = [c for c in users.columns if c not in ("user_id", "zip", "zip_code")]
users = users.with_columns(pl.concat_str([pl.col("gender"), pl.col("age").cast(pl.Utf8)], separator="/").alias("gender x age"))
fields.append("gender x age")


def group_of(log: UserLog, field: str) -> np.ndarray:
    ids = log.user_ids.to_frame("user_id").join(users.select("user_id", field), on="user_id", how="left")
    return ids[field].cast(pl.Utf8).fill_null("?").to_numpy()


def counts(log: UserLog, keep: np.ndarray, half_life: float | None) -> np.ndarray:
    w = np.ones(len(log.items)) if half_life is None else 0.5 ** ((log.times.max() - log.times) / DAY / half_life)
    return np.log1p(np.bincount(log.items[keep], weights=w[keep], minlength=n_items))


def z(x: np.ndarray) -> np.ndarray:
    s = x.std(axis=-1, keepdims=True)
    return np.where(s > 0, (x - x.mean(axis=-1, keepdims=True)) / np.where(s > 0, s, 1), 0.0)


row_user = np.repeat(np.arange(tlog.n_users), np.diff(tlog.indptr))
results: dict = {}
for k in (1, 3, 5, 10):
    tasks = new_user_tasks(protocol, vlog, k, seed=0)
    exclude, relevant = catalogue_truth(vlog, tasks, n_items, implicit=False, threshold=4.0)
    excluded = exclusion_entries(support_arrays(vlog, tasks)[0])

    def quality(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = scores.astype(np.float64).copy()
        s[excluded] = -np.inf
        m = M.catalogue_metrics(top_n_masked(s, 20), relevant, ~exclude, ks=(10, 20))
        return m["recall@20"], m["ndcg@10"]

    per: dict = {}
    for hl in (None, 7.0):
        for pos in ("all", "liked"):
            keep = np.ones(len(tlog.items), bool) if pos == "all" else tlog.ratings >= 4
            g = z(counts(tlog, keep, hl))
            per[("global", hl, pos)] = quality(np.broadcast_to(g, (len(tasks), n_items)))
            for field in fields:
                tg, vg = group_of(tlog, field), group_of(vlog, field)[tasks.users]
                by = {}
                for value in np.unique(vg):
                    by[value] = z(counts(tlog, keep & (tg[row_user] == value), hl))
                grp = np.stack([by[v] for v in vg])
                for w in (0.25, 0.5, 1.0, 2.0):
                    per[(field, hl, pos, w)] = quality(g + w * grp)
    value = {key: float(np.nanmean(r) + np.nanmean(n)) for key, (r, n) in per.items()}
    best_global = max((k_ for k_ in value if k_[0] == "global"), key=value.get)
    best_group = max((k_ for k_ in value if k_[0] != "global"), key=value.get)
    d = (per[best_group][0] + per[best_group][1]) - (per[best_global][0] + per[best_global][1])
    d = d[~np.isnan(d)]
    rng = np.random.default_rng(0)
    boots = [rng.choice(d, len(d)).mean() for _ in range(2000)]
    results[k] = {
        "tasks": len(tasks),
        "best global": [str(best_global), round(value[best_global], 4)],
        "best group": [str(best_group), round(value[best_group], 4)],
        "difference (Recall@20 + nDCG@10), paired 95 %": [round(d.mean(), 4), round(float(np.percentile(boots, 2.5)), 4), round(float(np.percentile(boots, 97.5)), 4)],
        "per field best": {
            f: max(((str(k_), round(v, 4)) for k_, v in value.items() if k_[0] == f), key=lambda t: t[1])
            for f in fields
        },
    }
    print(k, json.dumps(results[k], indent=1), flush=True)
