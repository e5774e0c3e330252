"""Late-history popularity vs global popularity on validation users (standalone prior)."""
from __future__ import annotations
import json, sys
import numpy as np
from recsys.data.dataset import load_dataset
from recsys.data.protocols import split_protocol, new_user_tasks
from recsys.data.tasks import UserLog
from recsys.data.ids import IdIndex
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
# rank of each training row within its user, by time
n_per = np.diff(tlog.indptr)
row_user = np.repeat(np.arange(tlog.n_users), n_per)
order = np.lexsort((tlog.times, row_user))
rank = np.empty(len(order), np.int64)
starts = np.repeat(tlog.indptr[:-1], n_per)
rank[order] = np.arange(len(order)) - starts  # rows of a user are contiguous in indptr order
from_end = n_per[row_user] - 1 - rank

def counts(keep, hl):
    w = np.ones(len(tlog.items)) if hl is None else 0.5 ** ((tlog.times.max() - tlog.times) / DAY / hl)
    return np.log1p(np.bincount(tlog.items[keep], weights=w[keep], minlength=n_items))

def z(x):
    s = x.std()
    return (x - x.mean()) / s if s > 0 else x * 0

for k in (1, 3, 5, 10):
    tasks = new_user_tasks(protocol, vlog, k, seed=0)
    exclude, relevant = catalogue_truth(vlog, tasks, n_items, implicit=False, threshold=4.0)
    excluded = exclusion_entries(support_arrays(vlog, tasks)[0])
    def quality(g):
        s = np.broadcast_to(g, (len(tasks), n_items)).astype(np.float64).copy()
        s[excluded] = -np.inf
        m = M.catalogue_metrics(top_n_masked(s, 20), relevant, ~exclude, ks=(10, 20))
        return m["recall@20"] + m["ndcg@10"]
    per = {}
    for hl in (None, 7.0, 30.0):
        for pos in ("all", "liked"):
            base = np.ones(len(tlog.items), bool) if pos == "all" else tlog.ratings >= 4
            per[("global", hl, pos)] = quality(z(counts(base, hl)))
            for late in ("last10", "last20", "after20", "after50"):
                keep = base & (from_end < 10 if late == "last10" else from_end < 20 if late == "last20"
                               else rank >= (20 if late == "after20" else 50))
                g = z(counts(keep, hl))
                per[("late", late, hl, pos)] = quality(g)
                for w in (0.5, 1.0, 2.0):
                    per[("mix", late, hl, pos, w)] = quality(z(counts(base, hl)) + w * g)
    val = {key: float(np.nanmean(v)) for key, v in per.items()}
    bg = max((x for x in val if x[0] == "global"), key=val.get)
    out = {"tasks": len(tasks), "best global": [str(bg), round(val[bg], 4)]}
    for kind in ("late", "mix"):
        b = max((x for x in val if x[0] == kind), key=val.get)
        d = per[b] - per[bg]; d = d[~np.isnan(d)]
        rng = np.random.default_rng(0)
        boots = [rng.choice(d, len(d)).mean() for _ in range(1000)]
        out[kind] = [str(b), round(val[b], 4), round(d.mean(), 4), round(float(np.percentile(boots, 2.5)), 4), round(float(np.percentile(boots, 97.5)), 4)]
    print(k, json.dumps(out), flush=True)
