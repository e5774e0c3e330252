"""When was the trend prior counted, and does it matter? Two probes on validation users only.

Under the temporal protocol the new users joined after every training interaction: the trend prior they
get was counted before they arrived, and it is applied however long after. The validation users that
choose it (:func:`recsys.post_training.choose_trend`) are the latest joiners among the training users.
This trains the default model (``train_model``) and, at the trend choice, runs the choice again on the
same validation tasks with every candidate prior counted from part of the training log:

* ``arrival``: the interactions before the earliest validation user's first rating (the test protocol's
  own cutoff, one level down): does the choice lean on popularity concurrent with the validation users?
* ``stale``: the interactions before ``T - D`` (``T`` the log's last interaction) for ``D`` = 7, 14, 30,
  60 days: the validation users see a prior as stale as a user arriving ``D`` days after training would.

The model keeps the choice made on the whole log (the last run). Printed: the choices and each
candidate's validation Recall@20 + nDCG@10 (``arrival``), or per ``D`` the choice and the best weight of
each candidate prior (``stale``).

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-trend-timing/timing_probe.py arrival ml-1m temporal
    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-trend-timing/timing_probe.py stale ml-1m temporal
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from recsys import post_training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.workflows import train_model

DAY = 86400.0
STALENESS = (0, 7, 14, 30, 60)
out: dict = {}
original_trend = post_training.choose_trend
original_values = post_training.catalogue_values
calls: list = []


def values(score, candidates, space, log, tasks, threshold):
    result = original_values(score, candidates, space, log, tasks, threshold)
    calls.append({k: v["recall@20"] + v["cat_ndcg@10"] for k, v in result.items()})
    return result


def merged() -> dict:
    v: dict = {}
    for c in calls:
        v.update(c)
    return v


def arrival(learner, space, config, train_log, val_log, tasks):
    first = val_log.times[val_log.indptr[:-1][np.diff(val_log.indptr) > 0]]
    start = float(first.min())
    early = train_log.keep(train_log.times < start)
    out["arrival"] = start
    out["training interactions"] = int(len(train_log.items))
    out["before arrival"] = int(len(early.items))
    out["last training interaction"] = float(train_log.times.max())
    out["days from arrival to the log's end"] = round((float(train_log.times.max()) - start) / 86400, 1)
    runs = {}
    for name, log_ in (("as of arrival", early), ("as now", train_log)):
        calls.clear()
        info = original_trend(learner, space, config, log_, val_log, tasks)
        runs[name] = {"chosen": info["chosen"], "values": [{str(k): round(x, 5) for k, x in merged().items()}]}
    out.update(runs)
    return info


def best_per_prior(info: dict) -> dict:
    best: dict = {}
    v = merged()
    for key, value in v.items():
        if key == "off":
            continue
        (half_life, positives), weight, decay = key
        name = f"{'all-time' if half_life is None else f'{half_life:g} days'} {positives}"
        if name not in best or value > best[name][0]:
            best[name] = (value, weight, decay)
    return {
        "chosen": info["chosen"],
        "without": round(v["off"], 5),
        "best per prior (value, weight, decay)": {k: [round(x[0], 5), x[1], x[2]] for k, x in best.items()},
    }


def stale(learner, space, config, train_log, val_log, tasks):
    end = float(train_log.times.max())
    for days in STALENESS[1:] + STALENESS[:1]:  # the whole log last: the model keeps its choice
        calls.clear()
        log_ = train_log.keep(train_log.times < end - days * DAY) if days else train_log
        info = original_trend(learner, space, config, log_, val_log, tasks)
        out[f"stale {days} days"] = best_per_prior(info)
    return info


def main() -> None:
    mode, name, protocol = sys.argv[1], sys.argv[2], sys.argv[3]
    probe = {"arrival": arrival, "stale": stale}[mode]

    def choose_trend(*args):
        post_training.catalogue_values = values
        try:
            return probe(*args)
        finally:
            post_training.catalogue_values = original_values

    post_training.choose_trend = choose_trend
    train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=0)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
