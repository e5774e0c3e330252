"""Large logs: ingest, encode and build tasks from a MovieLens-25M-shaped synthetic log.

A synthetic log (default 25M interactions, 160k users, 60k items, timestamps; generated once and
cached under ``benchmarks/.cache``) is written as Parquet and as CSV. Each implementation runs in a
fresh subprocess so its peak memory (VmHWM) is its own: polars lazy/streaming
(:func:`recsys.data.streaming.stream_user_log`) against pandas doing the same steps (read, validate,
de-duplicate keeping the latest, factorise ids, sort by user and time). Both then draw one epoch of
tasks for every user and build a few padded batches with the same vectorised code.

Usage: ``python -m benchmarks.large_logs [--interactions 25000000] [--users 160000] [--items 60000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import header

CACHE = Path(__file__).with_name(".cache")


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def generate(
    n: int, users: int, items: int, formats: tuple[str, ...] = ("parquet", "csv")
) -> dict[str, Path]:
    """The synthetic log of ``n`` interactions (cached): one interaction file per format in ``formats``
    (``parquet``, ``csv``), plus ``items.parquet`` beside them (genres, category, title: the item table
    of :func:`benchmarks.common.fast_synthetic`)."""
    out = CACHE / f"log-{n}-{users}-{items}-sqrt"
    paths = {fmt: out / f"interactions.{fmt}" for fmt in formats}
    if all(p.exists() for p in paths.values()) and (out / "items.parquet").exists():
        return paths
    from benchmarks.common import fast_synthetic

    t0 = time.perf_counter()
    # MovieLens-25M-like popularity; the few repeated (user, item) pairs are kept for dedup to handle
    ds = fast_synthetic(users, items, per_user=max(3, n // users), seed=0, dedupe=False, popularity="sqrt")
    out.mkdir(parents=True, exist_ok=True)
    # timestamps spread over five years, rows shuffled: a log is not pre-sorted by user
    rng = np.random.default_rng(1)
    frame = ds.interactions.with_columns(
        (pl.lit(1_500_000_000) + pl.Series(rng.integers(0, 5 * 365 * 86400, ds.interactions.height))).alias(
            "timestamp"
        )
    ).sample(fraction=1.0, shuffle=True, seed=0)
    for fmt, path in paths.items():
        tmp = path.with_name(path.name + ".tmp")
        frame.write_parquet(tmp) if fmt == "parquet" else frame.write_csv(tmp)
        tmp.replace(path)
    ds.items.write_parquet(out / "items.parquet")
    print(f"  generated {frame.height:,} interactions in {time.perf_counter() - t0:.0f} s -> {out}")
    return paths


def _tasks_and_batches(ulog, n_items: int) -> int:
    from recsys.data.tasks import iterate_batches, sample_tasks
    from recsys.features.space import FeatureSpace  # noqa: F401  (same code path as training)

    rng = np.random.default_rng(0)
    tasks = sample_tasks(ulog, np.arange(ulog.n_users), rng, support_size=(1, 20), query_size=10)
    n = 0
    for sub in iterate_batches(tasks, 1024, rng):
        # padded arrays of a batch (the trainer's build_batch adds the feature bags on top)
        items = np.where(sub.support >= 0, ulog.items[np.maximum(sub.support, 0)], -1)
        n += int((items >= 0).sum())
        if n > 200_000:
            break
    return len(tasks)


def worker_polars(path: str) -> dict:
    from recsys.data.streaming import stream_user_log

    t0 = time.perf_counter()
    s = stream_user_log(path, rating_scale=(1.0, 5.0))
    t1 = time.perf_counter()
    n_tasks = _tasks_and_batches(s.log, len(s.items))
    return {
        "ingest_s": t1 - t0,
        "tasks_s": time.perf_counter() - t1,
        "users": s.log.n_users,
        "interactions": len(s.log.items),
        "tasks": n_tasks,
    }


def worker_pandas(path: str) -> dict:
    import pandas as pd

    from recsys.data.tasks import UserLog

    t0 = time.perf_counter()
    df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    df["rating"] = pd.to_numeric(df["rating"], errors="coerce").astype("float32")
    bad = df["user_id"].isna() | df["item_id"].isna() | df["rating"].isna() | ~df["rating"].between(1, 5)
    if bad.any():
        raise ValueError("invalid rows")
    df = df.sort_values(["user_id", "item_id", "timestamp"], kind="stable")
    df = df.drop_duplicates(["user_id", "item_id"], keep="last")
    u_codes, u_ids = pd.factorize(df["user_id"], sort=True)
    i_codes, _ = pd.factorize(df["item_id"], sort=True)
    df = df.assign(u=u_codes.astype("int32"), i=i_codes.astype("int32")).sort_values(
        ["u", "timestamp"], kind="stable"
    )
    counts = np.bincount(df["u"].to_numpy(), minlength=len(u_ids))
    indptr = np.zeros(len(u_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    import polars as pl

    ulog = UserLog(
        pl.Series(np.asarray(u_ids)),
        indptr,
        df["i"].to_numpy().astype(np.int64),
        df["rating"].to_numpy(),
        df["timestamp"].to_numpy(),
    )
    t1 = time.perf_counter()
    n_tasks = _tasks_and_batches(ulog, int(i_codes.max()) + 1)
    return {
        "ingest_s": t1 - t0,
        "tasks_s": time.perf_counter() - t1,
        "users": ulog.n_users,
        "interactions": len(ulog.items),
        "tasks": n_tasks,
    }


def run_worker(impl: str, path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.large_logs", "--worker", impl, str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interactions", type=int, default=25_000_000)
    p.add_argument("--users", type=int, default=160_000)
    p.add_argument("--items", type=int, default=60_000)
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        impl, path = args.worker
        out = worker_polars(path) if impl == "polars" else worker_pandas(path)
        out["peak_mb"] = _vm_hwm_mb()
        print(json.dumps(out))
        return out
    header(f"4. large logs: {args.interactions:,} interactions, {args.users:,} users, {args.items:,} items")
    paths = generate(args.interactions, args.users, args.items)
    results = {}
    for fmt, path in paths.items():
        print(f"  {fmt} ({path.stat().st_size / 2**20:,.0f} MB on disk)")
        for impl in ("polars", "pandas"):
            r = run_worker(impl, path)
            results[(fmt, impl)] = r
            if "error" in r:
                print(f"    {impl:<17} failed: {r['error']}")
                continue
            print(
                f"    {impl + (' streaming' if impl == 'polars' else ''):<17} ingest+encode {r['ingest_s']:6.1f} s, "
                f"tasks {r['tasks_s']:5.1f} s, peak {r['peak_mb'] / 1024:5.2f} GB "
                f"({r['interactions']:,} interactions, {r['users']:,} users)"
            )
        a, b = results[(fmt, "polars")], results[(fmt, "pandas")]
        if "error" not in a and "error" not in b:
            print(
                f"    ratio pandas/polars: time {b['ingest_s'] / a['ingest_s']:.2f}x, "
                f"peak memory {b['peak_mb'] / a['peak_mb']:.2f}x (target: polars peak <= 4 GB)"
            )
    return {f"{k[0]}/{k[1]}": v for k, v in results.items()}


if __name__ == "__main__":
    main()
