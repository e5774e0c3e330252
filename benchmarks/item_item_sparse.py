"""Dense EASE against the sparse top-k item-item kinds on a catalogue where both are possible.

Every 10th user (by log row) is a validation user; the others are training users. Each candidate is
fitted on the training users and scored on the same validation tasks (5 support items, up to 10 query
items; catalogue Recall@20) that :func:`recsys.models.item_item.fit_item_item` chooses on. Prints one
line per candidate with its fit time.

With ``--interactions FILE [--implicit]`` it instead times the default
:func:`~recsys.models.item_item.fit_item_item` (the same split) on that log: wall and CPU seconds, peak RSS.

Usage: ``python -m benchmarks.item_item_sparse [--dataset ml-1m] [--k 50] [--popular 1000 2000]``
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from recsys.data.dataset import load_dataset, load_files
from recsys.data.tasks import UserLog
from recsys.features.space import FeatureSpace
from recsys.models import item_item as ii
from recsys.models import item_item_sparse as sparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--k", type=int, nargs="+", default=[50])
    parser.add_argument("--popular", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--interactions", help="time the default fit on this log instead")
    parser.add_argument("--implicit", action="store_true")
    args = parser.parse_args()
    ds = (
        load_files(args.interactions, implicit=args.implicit)
        if args.interactions
        else load_dataset(args.dataset)
    )
    space = FeatureSpace.fit_dataset(ds)
    full = UserLog.from_frame(ds.interactions, space.items)
    rows = np.arange(full.n_users)
    train, val = full.subset(rows[rows % 10 != 0]), full.subset(rows[rows % 10 == 0])
    n = space.n_items
    tasks, support, _ = ii._validation_tasks(val, np.random.default_rng(0))
    threshold, implicit = 4.0, space.implicit
    if args.interactions:
        wall, cpu = time.perf_counter(), time.process_time()
        _, _, chosen = ii.fit_item_item(
            train, val, n, threshold=4.0, implicit=space.implicit, rng=np.random.default_rng(0)
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{n:,} items, {len(train.items):,} training interactions: {chosen}; wall "
            f"{time.perf_counter() - wall:.1f} s, CPU {time.process_time() - cpu:.1f} s, peak RSS {peak:.0f} MB"
        )
        return
    print(f"{args.dataset}: {n:,} items, {train.n_users:,} training users, {len(tasks):,} validation tasks")

    def report(name: str, scores: np.ndarray, seconds: float) -> None:
        recall = float(np.nanmean(ii._recall20(scores, val, tasks, threshold, implicit)))
        print(f"{name:<32} Recall@20 {recall:.4f}   fit {seconds:6.1f} s")

    x = sparse.support_rows(support, n)
    for lam in ii.LAMBDAS:
        t = time.perf_counter()
        b = ii._fit(train, n, ("ease", lam))
        seconds = time.perf_counter() - t
        report(f"dense ease:{lam:g}", np.asarray(x @ b), seconds)
        if lam == ii.DEFAULT[1]:
            for k in args.k:
                report(
                    f"dense ease:{lam:g} pruned top-{k}",
                    sparse.scores_dense(sparse.topk_rows(b, k).to_csr(), support),
                    0,
                )
    for k in args.k:
        t = time.perf_counter()
        topk, _ = ii._fit_topk(train, n, ("cosine", 0.0), k, 0, support)
        report(f"sparse cosine top-{k}", sparse.scores_dense(topk.to_csr(), support), time.perf_counter() - t)
        for p in args.popular:
            t = time.perf_counter()
            topk, _ = ii._fit_topk(train, n, ("ease-pop", ii.DEFAULT[1]), k, p, support)
            seconds = time.perf_counter() - t
            report(
                f"sparse ease-pop:8000 P={p} top-{k}", sparse.scores_dense(topk.to_csr(), support), seconds
            )


if __name__ == "__main__":
    main()
