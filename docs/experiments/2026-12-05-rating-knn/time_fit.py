"""Time fit_rating_knn alone on synthetic Zipf-like rating logs (the figures in README.md of this folder).

.venv/bin/python docs/experiments/2026-12-05-rating-knn/time_fit.py
"""

import time, numpy as np, polars as pl
from recsys.data.tasks import UserLog
from recsys.models import rating_knn


def synth(n_users, n_items, n, seed=0):
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    users = np.sort(rng.integers(0, n_users, n))
    items = rng.choice(n_items, n, p=pop)
    counts = np.bincount(users, minlength=n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return UserLog(
        pl.Series(np.arange(n_users)), indptr, items, rng.integers(1, 6, n).astype(np.float32), None
    )


for nu, ni, n in ((6040, 3706, 1_000_000), (30000, 41000, 1_000_000), (50000, 200000, 3_000_000)):
    log = synth(nu, ni, n)
    t = time.perf_counter()
    lists = rating_knn.fit_rating_knn(log, ni)
    print(f"{nu} users, {ni} items, {n} ratings: {time.perf_counter() - t:.1f} s", flush=True)
