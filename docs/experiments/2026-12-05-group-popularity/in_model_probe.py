"""The group prior inside the trained default model, on validation users only.

Trains the default model (``train_model``, as ``recsys evaluate`` does for seed 0) and, after it has
made every choice (the trend prior last), adds to its catalogue scores ``w * z(group prior)[user's
group]`` — the standardised log(1 + decayed count) of each item over the training users sharing the
validation user's value of one user-table field (or gender x age) — for w in the trend prior's weight
grid, and prints the validation Recall@20 + nDCG@10 of each against the model as chosen, with a paired
95 % bootstrap interval over the validation users for the best candidate, and (the best of many
candidates on the same users flatters it) the difference of the candidate chosen on a random half of
the validation users measured on the other half, both ways.

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-group-popularity/in_model_probe.py ml-1m temporal
"""

from __future__ import annotations

import json
import sys

import numpy as np
import polars as pl
import torch

from recsys import post_training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.meta.validation import catalogue_scores, catalogue_task_values
from recsys.meta.scoring import CatalogueCache
from recsys.models import trend
from recsys.workflows import train_model

name, protocol = sys.argv[1], sys.argv[2]
ds = load_dataset(name)
users = ds.users.with_columns(
    pl.concat_str([pl.col("gender"), pl.col("age").cast(pl.Utf8)], separator="/").alias("gender x age")
)
FIELDS = [c for c in users.columns if c not in ("user_id", "zip", "zip_code")]
original = post_training.choose_trend
out: dict = {}


def group_of(log, field: str) -> np.ndarray:
    ids = log.user_ids.to_frame("user_id").join(users.select("user_id", field), on="user_id", how="left")
    return ids[field].cast(pl.Utf8).fill_null("?").to_numpy()


def probe(learner, space, config, train_log, val_log, tasks):
    info = original(learner, space, config, train_log, val_log, tasks)
    out["trend chosen"] = info["chosen"]
    n = space.n_items
    logs = post_training.trend_logs(train_log, space, config)
    row_user = np.repeat(np.arange(train_log.n_users), np.diff(train_log.indptr))
    candidates = {"model": lambda p, o: o.copy_(p[0])}
    group_rows = {}
    for field in FIELDS:
        tg, vg = group_of(train_log, field), group_of(val_log, field)
        for positives, plog in logs.items():
            keep_rows = np.ones(len(train_log.items), dtype=bool)
            if positives == "liked":
                keep_rows = train_log.ratings >= config.meta.rank_threshold
            for half_life in (None, 7.0):
                by = {}
                for value in np.unique(vg):
                    mask = keep_rows & (tg[row_user] == value)
                    by[value] = trend.trend_prior(train_log.keep(mask), n, half_life) if mask.any() else np.zeros(n, np.float32)
                key = (field, positives, half_life)
                group_rows[key] = (vg, by)
    cache = CatalogueCache(learner, space, torch.device("cpu"))
    keys = list(group_rows)

    def score(chunk):
        paths = [catalogue_scores(learner, space, val_log, chunk, cache=cache)]
        for key in keys:
            vg, by = group_rows[key]
            paths.append(np.stack([by[v] for v in vg[chunk.users]]))
        return paths

    for i, key in enumerate(keys, start=1):
        for w in trend.WEIGHTS:
            candidates[(key, w)] = (lambda i, w: lambda p, o: torch.add(p[0], p[i], alpha=w, out=o))(i, w)
    per = catalogue_task_values(score, candidates, space, val_log, tasks, config.meta.rank_threshold)
    value = {k: per[k]["recall@20"] + per[k]["cat_ndcg@10"] for k in per}
    means = {k: float(np.nanmean(v)) for k, v in value.items()}
    best = max((k for k in means if k != "model"), key=means.get)
    d = value[best] - value["model"]
    d = d[~np.isnan(d)]
    rng = np.random.default_rng(0)
    boots = [rng.choice(d, len(d)).mean() for _ in range(2000)]
    out["validation tasks"] = len(tasks)
    out["model as chosen"] = round(means["model"], 4)
    out["best group candidate"] = [str(best), round(means[best], 4)]
    out["difference, paired 95 %"] = [round(float(d.mean()), 4), round(float(np.percentile(boots, 2.5)), 4), round(float(np.percentile(boots, 97.5)), 4)]
    out["best per field"] = {
        f: max(((str(k), round(v, 4)) for k, v in means.items() if k != "model" and k[0][0] == f), key=lambda t: t[1])
        for f in FIELDS
    }
    # the best of many candidates on the same users flatters it: choose on one half, measure on the other
    half = np.random.default_rng(1).random(len(tasks)) < 0.5
    honest = []
    for pick, measure in ((half, ~half), (~half, half)):
        chosen = max((k for k in means if k != "model"), key=lambda k: np.nanmean(value[k][pick]))
        honest.append([str(chosen), round(float(np.nanmean((value[chosen] - value["model"])[measure])), 4)])
    out["chosen on one half, difference on the other"] = honest
    sizes = tasks.support_sizes
    out["difference by support size"] = {
        band: round(float(np.nanmean((value[best] - value["model"])[(sizes >= lo) & (sizes <= hi)])), 4)
        for band, (lo, hi) in {"1-3": (1, 3), "4-10": (4, 10), "11-20": (11, 20)}.items()
    }
    print(json.dumps(out, indent=1), flush=True)
    return info


post_training.choose_trend = probe
train_model(ds, RecommenderConfig(), protocol=protocol, seed=0)
