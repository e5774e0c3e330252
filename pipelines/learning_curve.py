"""The learning curve: the default against the best fair baseline as the number of users grows.

MovieLens-1M (exported to plain CSV and read through ``--interactions``, as in the suite) is cut to
its first ``n`` users of one seeded permutation, for each ``n`` of ``--users`` (nested: the 300 users
are among the 1,000, and so on), and each cut is one ``recsys evaluate`` run with the same flags (20%
of its users are new, test users; the default model trains on the rest). The report
``docs/benchmarks/learning-curve/README.md`` tabulates, per size and metric, the meta-learner, the best
fair baseline and their paired difference over distinct test users, and where the crossover lies (the
smallest size from which the default is behind no fair baseline on any metric)::

    python -m pipelines.learning_curve                                   # 300, 1000, 3000 users
    python -m pipelines.learning_curve --users 300,1000 --shots 5 --seeds 3
    python -m pipelines.learning_curve --summary-only                    # rebuild the table, run nothing

Each size's report is kept under ``docs/benchmarks/learning-curve/users-N/``; its command and wall time
in ``timing.json`` beside it. The full log (6,040 users) is the suite's own part
(``docs/benchmarks/ml-1m/<protocol>/``), read from there when it exists. Not part of ``make test`` or ``make benchmark`` (tens of minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.benchmark import REPO, WORK, _machine, _prepare_ml1m_csv, data_root
from pipelines.benchmark_summary import AHEAD, BEHIND, comparisons

OUT = Path("docs/benchmarks/learning-curve")
SIZES = (300, 1000, 3000)
"""The default sizes (users in the cut log, test users included); the full log's 6,040 is the suite's part."""


def cut_log(source: Path, target: Path, n_users: int, seed: int = 0) -> dict[str, int]:
    """Write the ratings (and users) of the first ``n_users`` of one seeded permutation of ``source``'s
    users to ``target``, the items table unchanged; prefixes of one permutation, so smaller cuts are
    subsets of larger ones. Returns the row counts."""
    ratings = pl.read_csv(source / "ratings.csv")
    users = np.sort(ratings["user_id"].unique().to_numpy())
    if n_users > len(users):
        raise ValueError(
            f"{source / 'ratings.csv'} has {len(users):,} users, fewer than the {n_users:,} asked for"
        )
    keep = pl.Series("user_id", np.random.default_rng(seed).permutation(users)[:n_users])
    target.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in ("ratings.csv", "users.csv", "movies.csv"):
        if not (source / name).exists():
            continue
        frame = pl.read_csv(source / name, infer_schema_length=0)  # as text: written back unchanged
        if "user_id" in frame.columns:
            frame = frame.filter(pl.col("user_id").cast(pl.Int64).is_in(keep.implode()))
        frame.write_csv(target / name)
        counts[name] = frame.height
    return counts


def evaluate_args(cut: Path, out: Path, protocol: str, shots: str, seeds: int) -> list[str]:
    return [
        "--interactions",
        str(cut / "ratings.csv"),
        "--users",
        str(cut / "users.csv"),
        "--items",
        str(cut / "movies.csv"),
        "--protocol",
        protocol,
        "--shots",
        shots,
        "--seeds",
        str(seeds),
        "--ablations",
        "none",
        "--baselines",
        "all",
        "--no-mlflow",
        "--out",
        str(out),
    ]


def run_size(n: int, data: Path, args: argparse.Namespace) -> int:
    """Cut the log to ``n`` users, run ``recsys evaluate`` on it, record the command and wall time."""
    _prepare_ml1m_csv(data)
    cut = WORK / f"ml1m-users-{n}"
    counts = cut_log(REPO / WORK / "ml1m-csv", REPO / cut, n, seed=args.cut_seed)
    out = args.out / f"users-{n}"
    cmd = evaluate_args(cut, out, args.protocol, args.shots, args.seeds)
    shown = "recsys evaluate " + shlex.join(cmd)
    print(f"[learning-curve] {n:,} users ({counts['ratings.csv']:,} ratings): {shown}", flush=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "recsys", "evaluate", *cmd], cwd=REPO)
    record = {
        "command": f"python -m pipelines.learning_curve --users {n} (cut seed {args.cut_seed}), then {shown}",
        "ratings": counts["ratings.csv"],
        "started": started,
        "seconds": round(time.perf_counter() - t0, 1),
        "exit_code": code,
        "load_average_at_start": load,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "machine": _machine(),
    }
    (REPO / out).mkdir(parents=True, exist_ok=True)
    (REPO / out / "timing.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"[learning-curve] {n:,} users: exit {code} after {record['seconds'] / 60:.1f} min", flush=True)
    return code


def _timing(folder: Path) -> dict:
    """A size's timing record: its own ``timing.json``, or the suite's (``<dataset>/timing.json``, one
    record per protocol) for the full log's report folder ``<dataset>/<protocol>``."""
    if (folder / "timing.json").exists():
        return json.loads((folder / "timing.json").read_text())
    suite = folder.parent / "timing.json"
    if suite.exists():
        return json.loads(suite.read_text()).get("parts", {}).get(folder.name, {})
    return {}


def _cell(c: dict | None) -> str:
    return "–" if not c else f"{c['mean']:.3f}"


def _diff(d: dict | None) -> str:
    return "–" if not d else f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


FULL_USERS = 6040
"""MovieLens-1M's users: the full log, whose report is the suite's part (``docs/benchmarks/ml-1m/``)."""


def summary(out: Path, full: Path | None = None) -> str:
    """The learning-curve table from the reports under ``out/users-N/``, and the full log's from the
    suite's report folder ``full`` (its ``timing.json`` is the dataset's, keyed by protocol)."""
    sizes = sorted(
        (int(p.name.split("-")[1]), p) for p in out.glob("users-*") if (p / "report.json").exists()
    )
    if full is not None and (full / "report.json").exists() and FULL_USERS not in dict(sizes):
        sizes.append((FULL_USERS, full))
    rows, verdicts = [], {}
    created: dict[int, str] = {}
    reports = {n: json.loads((folder / "report.json").read_text()) for n, folder in sizes}
    # the suite's full-log part may run more K than the cuts: the curve compares the cuts' K only
    curve_ks = {row["k"] for n, r in reports.items() if n != FULL_USERS for row in comparisons(r)}
    for n, folder in sizes:
        report = reports[n]
        created[n] = report.get("created", "?")
        timing = _timing(folder)
        split = (next(iter(report.get("splits", {}).values()), None) or [{}])[0]
        train_users = split.get("train_users", "?")
        wall = f"{timing['seconds'] / 60:.0f} min" if "seconds" in timing else "–"
        for row in comparisons(report):
            if n == FULL_USERS and curve_ks and row["k"] not in curve_ks:
                continue
            verdicts.setdefault(n, []).append(row["verdict"])
            rows.append(
                f"| {n:,} | {train_users} | {row['users']} | {row['k']} | {row['metric']} | {_cell(row['meta'])} "
                f"| {_cell(row['best'])} ({row['best_method']}) | {_diff(row['difference'])} | {row['verdict']} | {wall} |"
            )
    never_behind = [n for n, v in verdicts.items() if BEHIND not in v]
    crossover = next(
        (n for n in sorted(verdicts) if all(m in never_behind for m in sorted(verdicts) if m >= n)), None
    )
    ahead = {n: sum(v == AHEAD for v in verdicts[n]) for n in verdicts}
    lines = [
        "# Learning curve: MovieLens-1M cut to fewer users",
        "",
        "Generated by `python -m pipelines.learning_curve` (see its docstring). Each size is MovieLens-1M "
        "(plain CSV through `--interactions`) cut to the first N users of one seeded permutation (nested "
        "cuts), evaluated by `recsys evaluate` with the default model and every baseline tuned on its own "
        "validation users; test users are the cut's new users. Paired 95% intervals over distinct test "
        "users; the verdict as in the suite's summary ([README](../README.md)).",
        "",
        "| users in the log | training users | test users | K | metric | meta-learner | best fair baseline "
        "| difference (paired) | verdict | wall time |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if verdicts:
        lines.append(
            "**Crossover**: "
            + (
                f"from {crossover:,} users on, the default is behind no fair baseline on any metric and K "
                "run here"
                if crossover is not None
                else "none within the sizes run: at the largest, the default is behind some fair baseline"
            )
            + "; cells where it is ahead, per size: "
            + ", ".join(f"{n:,}: {ahead[n]} of {len(verdicts[n])}" for n in sorted(verdicts))
            + "."
        )
        lines.append("")
        for n, folder in sizes:
            lines.append(
                f"- {n:,} users (report written {created[n]}): `{_timing(folder).get('command', '?')}`"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.learning_curve",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--users", default=",".join(map(str, SIZES)), help="comma-separated sizes (users in the cut log)"
    )
    p.add_argument("--protocol", default="random", choices=["random", "temporal"])
    p.add_argument("--shots", default="3,5,10", help="support sizes K, comma-separated (default 3,5,10)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per size (default 1)")
    p.add_argument("--cut-seed", type=int, default=0, help="seed of the user permutation (default 0)")
    p.add_argument("--data-dir", help="datasets folder (default: $RECSYS_DATA_DIR, ../shared/data, data)")
    p.add_argument("--out", type=Path, default=OUT, help=f"report folder (default {OUT})")
    p.add_argument("--summary-only", action="store_true", help="rebuild the table from existing reports")
    args = p.parse_args(argv)
    code = 0
    if not args.summary_only:
        data = data_root(args.data_dir)
        for n in (int(x) for x in args.users.split(",") if x.strip()):
            code = run_size(n, data, args) or code
    text = summary(REPO / args.out, REPO / "docs/benchmarks/ml-1m" / args.protocol)
    (REPO / args.out).mkdir(parents=True, exist_ok=True)
    (REPO / args.out / "README.md").write_text(text)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
