"""The evaluation's results: one :class:`Cell` of per-user metrics per (protocol, scenario, K, method), and
the report rows aggregated from them (:func:`cell_results`: means over distinct users with bootstrap
intervals, the spread over seeds, coverage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.data.protocols import MELU_SCENARIOS
from recsys.metrics import core as M


@dataclass
class Cell:
    """One (protocol, scenario, K, method) result: per-task values of every seed and draw, with the
    user each task belongs to, so that intervals are taken over distinct users (a user tested under
    several seeds or draws counts once, with the mean of its values)."""

    values: dict[str, list[np.ndarray]] = field(default_factory=dict)
    tops: list[np.ndarray] = field(default_factory=list)
    user_ids: list[np.ndarray] = field(default_factory=list)
    seeds: list[np.ndarray] = field(default_factory=list)
    tasks: int = 0

    def add(self, metrics: dict[str, np.ndarray], user_ids: np.ndarray | None = None, seed: int = 0) -> None:
        n = len(next(iter(metrics.values())))
        for k, v in metrics.items():
            if k == "_top10":
                self.tops.append(v)
            else:
                self.values.setdefault(k, []).append(v)
        ids = np.arange(self.tasks, self.tasks + n) if user_ids is None else np.asarray(user_ids)
        self.user_ids.append(ids.astype(str))
        self.seeds.append(np.full(n, seed, dtype=np.int64))
        self.tasks += n

    @property
    def users(self) -> int:
        """Distinct users."""
        return len(np.unique(np.concatenate(self.user_ids))) if self.user_ids else 0

    def per_user(self, metric: str) -> np.ndarray:
        """One value per distinct user: the mean over that user's tasks (NaN where all are NaN)."""
        return self.per_user_with_ids(metric)[1]

    def per_user_with_ids(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(distinct user ids, sorted; :meth:`per_user`'s values in that order)."""
        ids = np.concatenate(self.user_ids)
        values = np.concatenate(self.values[metric]).astype(np.float64)
        unique, inverse = np.unique(ids, return_inverse=True)
        finite = ~np.isnan(values)
        sums = np.bincount(inverse, weights=np.where(finite, values, 0.0))
        counts = np.bincount(inverse, weights=finite.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            return unique, np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def seed_spread(self, metric: str) -> float | None:
        """Standard deviation of the per-seed means (None with one seed): the training randomness."""
        seeds = np.concatenate(self.seeds)
        values = np.concatenate(self.values[metric]).astype(np.float64)
        means = [
            np.nanmean(values[seeds == s]) for s in np.unique(seeds) if np.isfinite(values[seeds == s]).any()
        ]
        return float(np.std(means)) if len(means) > 1 else None


def cell_results(
    cells: dict[tuple[str, str, str, str], Cell], n_items: int, n_boot: int
) -> list[dict[str, Any]]:
    """One report row per cell, in report order: users, tasks, every metric's mean and bootstrap interval
    over distinct users (with ``seed_sd`` where several seeds ran), and coverage@10."""
    rows = []
    for (protocol, scenario, k, method), cell in sorted(cells.items(), key=_cell_order):
        row: dict[str, Any] = {"protocol": protocol, "scenario": scenario, "k": k, "method": method}
        row["users"] = cell.users
        row["tasks"] = cell.tasks
        for metric in cell.values:
            mean, lo, hi = M.bootstrap_ci(cell.per_user(metric), n_boot=n_boot)
            row[metric] = {"mean": mean, "low": lo, "high": hi}
            spread = cell.seed_spread(metric)
            if spread is not None:
                row[metric]["seed_sd"] = spread
        if cell.tops:
            row["coverage@10"] = M.coverage(np.concatenate(cell.tops), n_items, 10)
        rows.append(row)
    return rows


def _cell_order(item) -> tuple:
    (protocol, scenario, k, method), _ = item
    order = MELU_SCENARIOS.index(scenario) if scenario in MELU_SCENARIOS else 0
    return (protocol, order, int(k) if k.isdigit() else 10**6, method)


def paired_differences(
    cells: dict[tuple[str, str, str, str], Cell],
    main: str,
    baselines: list[str],
    n_boot: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The main method minus each baseline, per (protocol, scenario, K, metric): the mean of the per-user
    differences over the users both were tested on, with a paired percentile bootstrap over those users
    (one resampling of users shared by both methods, so the users' own difficulty cancels out).

    A paired interval that excludes 0 is a difference the test users resolve; per-method intervals that
    overlap can still hide one."""
    rows = []
    rng = np.random.default_rng(seed)
    for (protocol, scenario, k, method), cell in sorted(cells.items(), key=_cell_order):
        if method != main:
            continue
        mine = {metric: cell.per_user_with_ids(metric) for metric in cell.values}  # once, not per baseline
        for base in baselines:
            other = cells.get((protocol, scenario, k, base))
            if other is None:
                continue
            for metric in cell.values:
                if metric not in other.values:
                    continue
                ids_a, a = mine[metric]
                ids_b, b = other.per_user_with_ids(metric)
                _, ia, ib = np.intersect1d(ids_a, ids_b, return_indices=True)
                d = a[ia] - b[ib]
                d = d[np.isfinite(d)]
                if len(d) == 0:
                    continue
                boot = rng.integers(0, len(d), size=(n_boot, len(d)))
                means = d[boot].mean(axis=1)
                rows.append(
                    {
                        "protocol": protocol,
                        "scenario": scenario,
                        "k": k,
                        "metric": metric,
                        "baseline": base,
                        "users": len(d),
                        "mean": float(d.mean()),
                        "low": float(np.percentile(means, 2.5)),
                        "high": float(np.percentile(means, 97.5)),
                    }
                )
    return rows
