"""Does the trend prior's choice lean on popularity that is concurrent with the validation users' own
ratings? A probe on validation users only.

Under the temporal protocol the new (test) users joined after every training interaction: the trend
prior they get was counted before they arrived. The validation users are the latest joiners among the
training users, and their ratings are concurrent with the training log's last weeks, from which the
candidate priors are counted (:func:`recsys.post_training.choose_trend`): a short half-life sees what
the validation users' own cohort rated at the very time of their queries. This trains the default
model (``train_model``) and runs the trend choice twice on the same validation tasks: as it is, and with
every candidate prior counted from the training interactions before the earliest validation user's
first rating (the validation users' arrival: the test protocol's own cutoff, one level down). Printed:
each candidate's validation Recall@20 + nDCG@10 under both, and the two choices.

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-trend-as-of-arrival/arrival_probe.py ml-1m temporal
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

out: dict = {}
original_trend = post_training.choose_trend
original_values = post_training.catalogue_values
calls: list = []


def values(score, candidates, space, log, tasks, threshold):
    result = original_values(score, candidates, space, log, tasks, threshold)
    calls.append({str(k): round(v["recall@20"] + v["cat_ndcg@10"], 5) for k, v in result.items()})
    return result


def choose_trend(learner, space, config, train_log, val_log, tasks):
    first = val_log.times[val_log.indptr[:-1][np.diff(val_log.indptr) > 0]]
    arrival = float(first.min())
    early = train_log.keep(train_log.times < arrival)
    out["arrival"] = arrival
    out["training interactions"] = int(len(train_log.items))
    out["before arrival"] = int(len(early.items))
    out["last training interaction"] = float(train_log.times.max())
    out["days from arrival to the log's end"] = round((float(train_log.times.max()) - arrival) / 86400, 1)
    calls.clear()
    post_training.catalogue_values = values
    try:
        info_early = original_trend(learner, space, config, early, val_log, tasks)
        out["as of arrival"] = {"chosen": info_early["chosen"], "values": list(calls)}
        calls.clear()
        info = original_trend(learner, space, config, train_log, val_log, tasks)
        out["as now"] = {"chosen": info["chosen"], "values": list(calls)}
    finally:
        post_training.catalogue_values = original_values
    return info


post_training.choose_trend = choose_trend


def main() -> None:
    name, protocol = sys.argv[1], sys.argv[2]
    train_model(load_dataset(name), RecommenderConfig(), protocol=protocol, seed=0)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
