"""Three trainings of one split (training seeds 0-2, the protocol's seed-0 split) scored alone and as an
ensemble (the mean of their per-user standardised ranking scores) on the split's new users.

usage: [NESTED=1] [PROTOCOL=random] [N=3] RECSYS_DATA_DIR=... python ensemble_probe.py
NESTED=1 applies the protocol again inside the training users, so the "new users" are pseudo-new
training users and no test user is touched (model selection); without it the test users are scored.
"""

import os
from dataclasses import replace

import numpy as np
import polars as pl

from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.data.protocols import new_user_tasks, split_protocol
from recsys.data.schema import USER
from recsys.data.tasks import UserLog
from recsys.evaluation.runner import MetaScorer, UserRef
from recsys.metrics.task_metrics import support_arrays, user_metrics
from recsys.models.scorer import Scores
from recsys.recommender import ColdStartRecommender
from recsys.workflows import protocol_validation

PROTOCOL, N = os.environ.get("PROTOCOL", "temporal"), int(os.environ.get("N", "3"))
ds = load_dataset(os.environ.get("DATASET", "ml-100k"))
if os.environ.get("NESTED"):
    ds = replace(ds, interactions=split_protocol(ds, PROTOCOL, seed=0).train)
split = split_protocol(ds, PROTOCOL, seed=0)
print("pseudo-new users" if os.environ.get("NESTED") else "test users", split.describe()["test_users"])


def train(seed: int) -> ColdStartRecommender:
    """The split's training users, training seed ``seed`` (the split stays the seed-0 one)."""
    config = protocol_validation(RecommenderConfig().replace(train={"seed": seed}), PROTOCOL)
    users = ds.users
    if users is not None:
        users = users.filter(pl.col(USER).is_in(split.train[USER].unique().implode()))
    training = replace(ds, interactions=split.train, users=users)
    return ColdStartRecommender(config).fit_dataset(training, validation_users=split.validation_users)


def standardised(x: np.ndarray) -> np.ndarray:
    """Each row's finite scores minus their mean over their standard deviation (-inf stays)."""
    x = x.astype(np.float64)
    ok = np.isfinite(x)
    mean = np.where(ok, x, 0).sum(1, keepdims=True) / ok.sum(1, keepdims=True)
    sd = np.sqrt((np.where(ok, x - mean, 0) ** 2).sum(1, keepdims=True) / ok.sum(1, keepdims=True))
    return np.where(ok, (x - mean) / np.maximum(sd, 1e-12), -np.inf)


def metrics(scores: Scores, tasks) -> tuple[float, float]:
    """Mean Recall@20 and nDCG@10 over the tasks' users."""
    m = user_metrics(
        scores, test_log, tasks, predicts_ratings=True, implicit=False, threshold=4.0, scale=(1.0, 5.0)
    )
    return float(np.nanmean(m["recall@20"])), float(np.nanmean(m["ndcg@10"]))


recs = [train(seed) for seed in range(N)]
test_log = UserLog.from_frame(split.test["new_users"], recs[0].space.items)
for k in (1, 3, 5, 10, 20):
    tasks = new_user_tasks(PROTOCOL, test_log, k, seed=0)
    si, sr = support_arrays(test_log, tasks)
    users = UserRef(test_log, np.arange(test_log.n_users)[tasks.users])
    singles = [MetaScorer(rec, ds).score(si, sr, users) for rec in recs]

    one = np.array([metrics(s, tasks) for s in singles])
    both = metrics(
        Scores(singles[0].ratings, np.mean([standardised(s.ranking) for s in singles], axis=0)), tasks
    )
    print(
        f"K={k} singles R@20 {one[:, 0].round(4)} mean {one[:, 0].mean():.4f} | nDCG {one[:, 1].round(4)} "
        f"mean {one[:, 1].mean():.4f} || ensemble R@20 {both[0]:.4f} nDCG {both[1]:.4f}",
        flush=True,
    )
