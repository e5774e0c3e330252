"""Shared benchmark helpers: data lookup, timing, peak memory."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def find_data_root(name: str) -> Path | None:
    """The first of ``RECSYS_DATA_DIR``, ./data and ../shared/data that holds dataset ``name``."""
    candidates = [os.environ.get("RECSYS_DATA_DIR"), "data", "../shared/data"]
    for c in candidates:
        if c and (Path(c) / name).is_dir() and any((Path(c) / name).iterdir()):
            return Path(c)
    return None


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the starting point while the block runs (sampled every 2 ms)."""

    def __enter__(self) -> PeakRSS:
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.start) / 2**20

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def _cpu_jiffies() -> list[int] | None:
    try:
        with open("/proc/stat") as fh:
            return [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None


class CpuShare:
    """How the machine's CPU time was spent while the block ran (Linux ``/proc/stat``): the shares
    busy, idle and **stolen** (time the hypervisor gave another guest while ours wanted to run). On a
    shared virtual machine a high steal share slows a run down without any change in the code, so
    timed figures are reported with it."""

    def __enter__(self) -> CpuShare:
        self.start = _cpu_jiffies()
        self.shares: dict[str, float] | None = None
        return self

    def __exit__(self, *exc) -> None:
        end = _cpu_jiffies()
        if self.start is None or end is None:
            return
        d = [b - a for a, b in zip(self.start, end, strict=False)]
        total = sum(d[:8]) or 1  # user nice system idle iowait irq softirq steal (guest is in user)
        busy = d[0] + d[1] + d[2] + d[5] + d[6]
        steal = d[7] if len(d) > 7 else 0
        self.shares = {
            "busy": round(busy / total, 3),
            "idle": round((d[3] + d[4]) / total, 3),
            "steal": round(steal / total, 3),
        }


def cpu_shares_line(shares: dict[str, float] | None) -> str:
    """One line for :class:`CpuShare`'s ``shares``."""
    if shares is None:
        return "CPU shares: unavailable (no /proc/stat)"
    return (
        f"CPU time over the run: {shares['busy']:.0%} busy, {shares['idle']:.0%} idle, "
        f"{shares['steal']:.0%} stolen by the hypervisor"
    )


def time_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run each function ``repeats`` times, interleaved round-robin so machine noise hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def header(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def fast_synthetic(
    n_users: int,
    n_items: int,
    per_user: int = 20,
    seed: int = 0,
    dedupe: bool = True,
    popularity: str = "zipf",
):
    """A large random log with simple side features, generated in seconds (no planted structure:
    for speed benchmarks, where only the shapes matter).

    ``popularity``: ``zipf`` (Zipf 1.3 item draws: a very steep head, many repeated pairs before
    deduplication) or ``sqrt`` (item index = n_items * U^2: the most popular item reaches about 60% of
    the users, about as in MovieLens-25M, and only a few percent of draws repeat a (user, item) pair)."""
    import polars as pl

    from recsys.data.dataset import Dataset
    from recsys.data.synthetic import SyntheticConfig, synthetic_spec

    rng = np.random.default_rng(seed)
    counts = np.clip(rng.geometric(1.0 / per_user, n_users), 3, max(200, 10 * per_user))
    users = np.repeat(np.arange(n_users), counts)
    if popularity == "zipf":
        items = (rng.zipf(1.3, len(users)) - 1) % n_items
    elif popularity == "sqrt":
        items = np.minimum((n_items * rng.random(len(users)) ** 2).astype(np.int64), n_items - 1)
    else:
        raise ValueError(f"unknown popularity {popularity!r}")
    frame = pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "rating": rng.integers(1, 6, len(users)).astype(np.float32),
            "timestamp": np.arange(len(users), dtype=np.int64),
        }
    )
    if dedupe:
        frame = frame.unique(subset=["user_id", "item_id"], keep="first")
    user_table = pl.DataFrame(
        {
            "user_id": np.arange(n_users),
            "occupation": pl.Series(rng.integers(0, 20, n_users)).cast(pl.String),
            "age": pl.Series(rng.integers(0, 7, n_users)).cast(pl.String),
            "gender": np.where(rng.random(n_users) < 0.5, "F", "M"),
        }
    )
    item_table = pl.DataFrame(
        {
            "item_id": np.arange(n_items),
            "genre": pl.Series(rng.integers(0, 20, (n_items, 2)).tolist()).cast(pl.List(pl.String)),
            "category": pl.Series(rng.integers(0, 50, n_items)).cast(pl.String),
            "title": [f"Item {i}" for i in range(n_items)],
        }
    )
    return Dataset(
        "synthetic-fast", frame, synthetic_spec(SyntheticConfig()), users=user_table, items=item_table
    )


def write_figures(path: Path | None, result: dict) -> None:
    """A benchmark's figures as JSON at ``path`` (``--out``; nothing when None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
