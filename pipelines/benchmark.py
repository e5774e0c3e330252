"""The benchmark suite (``make benchmark``): ``recsys evaluate`` on every dataset of the suite, one
report per part in ``docs/benchmarks/<dataset>/<protocol>/``, the wall time of each part in
``docs/benchmarks/<dataset>/timing.json``, and the summary ``docs/benchmarks/README.md`` (also copied
into README.md between the ``benchmark-summary`` markers).

A *part* is one dataset under one protocol (``ml-100k/temporal``); each part is one ``recsys
evaluate`` run, so a part can be re-run alone and its report replaced without touching the others::

    python -m pipelines.benchmark --list                     # the parts, their commands and status
    python -m pipelines.benchmark                            # the whole suite (hours on 2 CPU cores)
    python -m pipelines.benchmark --only ml-100k,melu        # a subset: datasets or dataset/protocol
    python -m pipelines.benchmark --only ml-100k/random --shots 5 --seeds 1 --ablations none
    python -m pipelines.benchmark --summary-only             # rebuild the summaries, run nothing

Data: ``$RECSYS_DATA_DIR``, else ``../shared/data`` beside the clone, else ``./data`` (``--data-dir``
overrides). No part has dataset-specific code: ML-1M is exported to plain CSV files and read through
``--interactions``, Gowalla is a plain ``user_id,item_id`` CSV (implicit feedback). Settings given on
the command line (``--shots``, ``--seeds``, ``--ablations``) replace the suite's for the parts run, and
the summary marks such parts as run with reduced settings.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = Path("docs/benchmarks")
README = Path("README.md")
WORK = Path("data/benchmark")  # derived files (the ML-1M CSV export); git-ignored


@dataclass(frozen=True)
class Entry:
    """One dataset of the suite: how ``recsys evaluate`` reads it and the settings it runs with.

    ``source`` are the data-source options, with ``{data}`` (the data folder) and ``{work}`` (the
    folder for derived files) filled in at run time; ``needs`` the files that must exist under
    ``{data}``; ``prepare`` a step that derives files under ``{work}`` first."""

    name: str
    title: str
    source: tuple[str, ...]
    protocols: tuple[str, ...]
    shots: str
    seeds: int
    ablations: str = "none"
    baselines: str = "all"
    needs: tuple[str, ...] = ()
    prepare: str | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""


SUITE: tuple[Entry, ...] = (
    Entry(
        name="ml-100k",
        title="MovieLens-100k",
        source=("--dataset", "ml-100k"),
        protocols=("temporal", "random"),
        shots="1,3,5,10,20",
        seeds=3,
        # the full ablation list on the small log (retrained variants on seed 0 only): each piece's worth
        ablations="no-adaptation,no-trend,no-als-path,no-classical-item-item,no-rating-combiner,no-rating-knn,item-item-only,"
        "encoder-only,5-steps,second-order,meta-sgd,melu,no-item-item,no-als-init,random-query,global-trust",
        needs=("ml-100k",),
        note="943 users, 1,682 items; the dataset the defaults were chosen on (validation users).",
    ),
    Entry(
        name="ml-1m",
        title="MovieLens-1M through the generic path",
        source=(
            "--interactions",
            "{work}/ml1m-csv/ratings.csv",
            "--users",
            "{work}/ml1m-csv/users.csv",
            "--items",
            "{work}/ml1m-csv/movies.csv",
        ),
        protocols=("temporal", "random"),
        # the never-behind target spans K = 1 to 20; the headline figures are means over K = 3, 5, 10
        shots="1,3,5,10,20",
        seeds=3,
        # re-scored variants only (no retraining on the large log): every piece the scores combine
        ablations="no-adaptation,no-trend,no-als-path,no-classical-item-item,no-rating-combiner,no-rating-knn,"
        "item-item-only,encoder-only",
        needs=("ml-1m",),
        prepare="ml1m_csv",
        aliases=("ml1m", "ml-1m-csv"),
        note="6,040 users, 3,706 rated items; exported to plain CSV (`python -m pipelines.ml1m_as_csv`) and "
        "read with `--interactions`, field kinds inferred; never used for any choice of the defaults.",
    ),
    Entry(
        name="melu",
        title="MeLU's MovieLens-1M split",
        source=("--dataset", "melu-ml1m"),
        protocols=("melu",),
        shots="5",  # MeLU's protocol has no K: every rating but the 10 query ones is support
        seeds=3,
        ablations="no-adaptation,no-trend,no-als-path,no-classical-item-item,no-rating-combiner,no-rating-knn,item-item-only,"
        "encoder-only",
        needs=("melu-ml1m",),
        aliases=("melu-ml1m",),
        note="Lee et al. (KDD 2019): warm_state trains; three cold scenarios (new users, new items, both), "
        "users with 13-100 ratings, 10 random query ratings, 3 draws.",
    ),
    Entry(
        name="gowalla",
        title="Gowalla check-ins (implicit feedback)",
        source=("--interactions", "{data}/gowalla/interactions.csv"),
        protocols=("random",),
        shots="1,3,5,10,20",
        # one seed: a training takes ~15 min here, and ~6,000 distinct test users already make the
        # user-level interval narrow; the no-blend row is the one issue 20 asks for, the
        # path rows say what each ranking path alone is worth
        seeds=1,
        ablations="no-item-item,no-als-path,item-item-only,encoder-only",
        baselines="popularity,trending,implicit-als,item-knn",
        needs=("gowalla/interactions.csv",),
        note="1,027,370 check-ins, 29,858 users, 40,981 items, no ratings and no timestamps (random protocol "
        "only). The catalogue is above the default dense item-item limit (`model.hybrid.item_item_dense_items` "
        "= 4,000), so the default meta-learner blends the sparse top-k kind there; the dense EASE baseline is "
        "left out (its 41k x 41k inverse needs about 27 GB).",
    ),
)


@dataclass(frozen=True)
class Part:
    """One ``recsys evaluate`` run of the suite: an entry under one protocol."""

    entry: Entry
    protocol: str

    @property
    def name(self) -> str:
        return f"{self.entry.name}/{self.protocol}"


@dataclass
class Overrides:
    """Settings given on the command line, replacing the suite's for the parts run."""

    shots: str | None = None
    seeds: int | None = None
    ablations: str | None = None
    extra: list[str] = field(default_factory=list)


def all_parts(suite: tuple[Entry, ...] = SUITE) -> list[Part]:
    return [Part(e, p) for e in suite for p in e.protocols]


def select(only: str | None, suite: tuple[Entry, ...] = SUITE) -> list[Part]:
    """The parts named by ``--only``: comma-separated dataset names (or aliases) and
    ``dataset/protocol`` pairs, in suite order; None or empty: every part. An unknown name is a
    ``ValueError`` that lists the known ones."""
    parts = all_parts(suite)
    if not only or not only.strip():
        return parts
    by_name = {n: e for e in suite for n in (e.name, *e.aliases)}
    wanted: set[str] = set()
    for token in (t.strip() for t in only.split(",")):
        if not token:
            continue
        dataset, _, protocol = token.partition("/")
        entry = by_name.get(dataset)
        if entry is None or (protocol and protocol not in entry.protocols):
            known = ", ".join(p.name for p in parts)
            names = ", ".join(e.name for e in suite)
            raise ValueError(f"--only: unknown part {token!r} (datasets: {names}; parts: {known})")
        wanted |= {f"{entry.name}/{p}" for p in ([protocol] if protocol else entry.protocols)}
    return [p for p in parts if p.name in wanted]


def data_root(explicit: str | None = None) -> Path:
    """Where the datasets are: ``--data-dir``, ``$RECSYS_DATA_DIR``, ``../shared/data`` beside the clone
    (as a path relative to the repository root, so that recorded commands stay portable), or ``data``."""
    if explicit:
        return Path(explicit)
    if os.environ.get("RECSYS_DATA_DIR"):
        return Path(os.environ["RECSYS_DATA_DIR"])
    shared = REPO.parent / "shared" / "data"
    return Path("../shared/data") if shared.is_dir() else Path("data")


def evaluate_args(part: Part, data: Path, over: Overrides, out: Path = OUT) -> list[str]:
    """The ``recsys evaluate`` arguments of a part (after ``recsys evaluate``)."""
    e = part.entry
    fill = {"data": str(data), "work": str(WORK)}
    source = [a.format(**fill) for a in e.source]
    return [
        *source,
        "--protocol",
        part.protocol,
        "--shots",
        over.shots or e.shots,
        "--seeds",
        str(over.seeds if over.seeds is not None else e.seeds),
        "--ablations",
        over.ablations or e.ablations,
        "--baselines",
        e.baselines,
        "--no-mlflow",
        "--out",
        str(out / e.name / part.protocol),
        *over.extra,
    ]


def shown_command(args: list[str], data: Path) -> str:
    """The command line a reader can paste (from the repository root)."""
    return f"RECSYS_DATA_DIR={shlex.quote(str(data))} recsys evaluate " + shlex.join(args)


def missing_data(part: Part, data: Path) -> list[str]:
    return [str(data / n) for n in part.entry.needs if not (REPO / data / n).exists()]


def _prepare_ml1m_csv(data: Path) -> None:
    from pipelines.ml1m_as_csv import export

    target = REPO / WORK / "ml1m-csv"
    if not (target / "ratings.csv").exists():
        print(f"[benchmark] exporting {data / 'ml-1m'} to {WORK / 'ml1m-csv'} (plain CSV)", flush=True)
        export(REPO / data / "ml-1m", target)


PREPARE: dict[str, Callable[[Path], None]] = {"ml1m_csv": _prepare_ml1m_csv}


def _machine() -> dict[str, object]:
    """What ran a part (:func:`recsys.utils.machine.numeric_environment`): the CPU's model and the kernels
    and BLAS code torch and numpy use on it, since float results (and near-tied validation choices) can
    differ between machines whose kernels differ."""
    from recsys.utils.machine import numeric_environment  # imports torch: only when a part is recorded

    return numeric_environment()


def _update_timing(path: Path, protocol: str, record: dict) -> None:
    timing = json.loads(path.read_text()) if path.exists() else {"parts": {}}
    timing.setdefault("parts", {})[protocol] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timing, indent=2, sort_keys=True) + "\n")


def run_part(part: Part, data: Path, over: Overrides, suite_command: str, out: Path = OUT) -> int:
    """Run one part (``recsys evaluate`` as a subprocess from the repository root); record its wall time
    and command in ``<out>/<dataset>/timing.json``; its exit code."""
    args = evaluate_args(part, data, over, out)
    record: dict[str, object] = {
        "command": shown_command(args, data),
        "suite_command": suite_command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "niceness": os.nice(0),
        "machine": _machine(),
    }
    missing = missing_data(part, data)
    if missing:
        print(f"[benchmark] {part.name}: skipped, data not found: {', '.join(missing)}", flush=True)
        record |= {"exit_code": None, "skipped": f"data not found: {', '.join(missing)}"}
        _update_timing(REPO / out / part.entry.name / "timing.json", part.protocol, record)
        return 0
    if part.entry.prepare:
        PREPARE[part.entry.prepare](data)
    print(f"[benchmark] {part.name}: {record['command']}", flush=True)
    env = os.environ | {"RECSYS_DATA_DIR": str(data)}
    t0 = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "recsys", "evaluate", *args], cwd=REPO, env=env)
    seconds = time.perf_counter() - t0
    record |= {
        "seconds": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "exit_code": code,
        # the 15-minute load average at the end says more than the start's about a shared machine
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    _update_timing(REPO / out / part.entry.name / "timing.json", part.protocol, record)
    print(f"[benchmark] {part.name}: exit {code} after {seconds / 60:.1f} min", flush=True)
    return code


def list_parts(parts: list[Part], data: Path, over: Overrides, out: Path = OUT) -> str:
    from pipelines.benchmark_summary import part_status

    lines = []
    for part in parts:
        status = part_status(part, REPO / out)
        lines.append(f"{part.name:20s} {status.label}")
        lines.append(f"    {shown_command(evaluate_args(part, data, over, out), data)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.benchmark",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--only", help="Comma-separated datasets or dataset/protocol parts (see --list).")
    p.add_argument(
        "--list", action="store_true", help="List the parts, their commands and status; run nothing."
    )
    p.add_argument("--summary-only", action="store_true", help="Rebuild the summaries from existing reports.")
    p.add_argument("--shots", help="Support sizes K for the parts run (replaces the suite's).")
    p.add_argument("--seeds", type=int, help="Seeds for the parts run (replaces the suite's).")
    p.add_argument("--ablations", help="Meta-learner variants for the parts run (replaces the suite's).")
    p.add_argument("--data-dir", help="Data folder (default: $RECSYS_DATA_DIR, ../shared/data, ./data).")
    p.add_argument("--readme", type=Path, default=README, help="README whose results section is rewritten.")
    p.add_argument("--no-readme", action="store_true", help="Leave README.md alone.")
    p.add_argument("--out", type=Path, default=OUT, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    from pipelines.benchmark_summary import write_summaries

    args = build_parser().parse_args(argv)
    try:
        parts = select(args.only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = data_root(args.data_dir)
    over = Overrides(args.shots, args.seeds, args.ablations)
    if args.list:
        print(list_parts(parts, data, over, args.out))
        return 0
    failed = []
    if not args.summary_only:
        suite_command = "python -m pipelines.benchmark " + shlex.join(
            argv if argv is not None else sys.argv[1:]
        )
        for part in parts:
            if run_part(part, data, over, suite_command.strip(), args.out) != 0:
                failed.append(part.name)
    readme = None if args.no_readme else REPO / args.readme
    try:
        written = write_summaries(REPO / args.out, readme)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("[benchmark] summary written to " + ", ".join(str(p) for p in written))
    if failed:
        print(f"[benchmark] failed parts: {', '.join(failed)} (see their timing.json)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
