"""Training at scale: the default ``recsys train`` end to end on large logs, phase by phase.

Logs (``--log``):

* ``synthetic-25m``: a synthetic log shaped like MovieLens-25M (25M interactions, 162k users, 62k
  items, timestamps over five years, ML-25M-like popularity, an item table with genres and a
  category): the generator of :mod:`benchmarks.large_logs`, cached under ``benchmarks/.cache``;
* ``synthetic-17k``: the scale issue's small target, a ~100k-interaction log with a ~17k-item catalogue
  (``make_synthetic(SyntheticConfig(n_users=5000, n_items=21700, n_interactions=102_000,
  popularity_exponent=0.9, seed=0))``, its interactions only, as CSV; target: the default trains in
  <= 3 min and <= 2 GB on 2 CPU cores);
* ``gowalla``: ``gowalla/interactions.csv`` under ``RECSYS_DATA_DIR`` (or ./data, ../shared/data),
  trained as implicit feedback (``--implicit``); skipped with a message when absent.

Each run is the ``recsys train`` command (default config; ``--no-mlflow`` unless ``--mlflow``) run in a
fresh process by :func:`worker`, which calls the CLI in-process with timers around the recipe's steps
(:mod:`recsys.training`: ingest, preparation, the ALS start, the item-item blend, meta-training and each
epoch, the trend choice, the summary, the save) — recsys' code is not changed. ``--nproc 2`` runs the
same worker under ``torchrun`` (each rank writes its own figures; rank 0 saves). ``--budget-min`` stops
a run after that many minutes and reports what it reached: the per-epoch time and the validation curve
so far, and the projected time of the planned epochs.

Figures are printed with the exact command, and written to ``--out FILE.json``; nothing is asserted.

Usage: ``python -m benchmarks.scale_training [--log both] [--scale 1.0] [--epochs N] [--nproc 1,2]
[--budget-min 60] [--device cpu] [--out scale.json]``; smoke run: ``--scale 0.002 --epochs 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import CpuShare, cpu_shares_line, find_data_root, header, write_figures

ROOT = Path(__file__).resolve().parent.parent
ML25M = {"interactions": 25_000_000, "users": 162_000, "items": 62_000}
"""The shape of MovieLens-25M the synthetic log copies (``--scale`` multiplies every figure)."""
PHASES = (
    "ingest",
    "prepare",
    "als_start",
    "item_item",
    "meta_training",
    "path_weights",
    "mf_fallback",
    "trend_choice",
    "summary",
    "save",
)
"""The phases reported, in the recipe's order (``prepare``: checks, validation split, feature space,
per-user logs, the network; ``meta_training``: every epoch, validation included)."""
RUN_KEYS = (
    "log",
    "nproc",
    "device",
    "command",
    "completed",
    "stopped_by_budget",
    "exit_code",
    "wall_s",
    "phases_s",
    "epochs_planned",
    "epochs_run",
    "epoch_s",
    "epoch_s_mean",
    "projected_s",
    "validation_curve",
    "tasks_per_epoch",
    "tasks_per_s",
    "peak_rss_gb",
    "peak_rss_gb_all_ranks",
    "model_size_mb",
    "n_users",
    "n_items",
    "n_interactions",
    "item_item",
    "rank_mix",
    "trend",
)
"""The keys of every run's figures (None where a run did not reach them)."""


# ---- the worker: the CLI in-process, with timers around the recipe's steps ---------------------------
def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Recorder:
    """Phase timings, epoch records and facts of one training process, written to ``path`` (JSON) after
    every phase and epoch, so a run stopped by the budget still leaves what it reached."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.perf_counter()
        self.data: dict[str, Any] = {"phases": [], "epochs": [], "facts": {}, "finished": False}

    def write(self) -> None:
        self.data["peak_rss_mb"] = _vm_hwm_mb()
        self.data["elapsed_s"] = time.perf_counter() - self.t0
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, default=str))
        tmp.replace(self.path)

    def timed(self, phase: str, fn, after=None):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            end = time.perf_counter()
            self.data["phases"].append({"phase": phase, "start_s": start - self.t0, "seconds": end - start})
            if after is not None:
                after(out)
            self.write()
            return out

        return wrapper

    def epoch(self, epoch: int, record: dict[str, float]) -> None:
        self.data["epochs"].append({"epoch": epoch, **{k: float(v) for k, v in record.items()}})
        self.write()


def install_timers(rec: Recorder) -> None:
    """Wrap the recipe's steps (module attributes, looked up at call time) with ``rec``'s timers."""
    from recsys import post_training, training, workflows
    from recsys.meta import trainer
    from recsys.recommender import ColdStartRecommender

    facts = rec.data["facts"]

    def space_facts(space) -> None:
        facts["n_items"] = int(space.n_items)

    def log_facts(info) -> None:
        facts.update(info)

    def head_facts(info) -> None:
        facts["item_item"] = info.get("item_item")
        facts["item_id_init"] = info.get("item_id_init")

    def mix_facts(info) -> None:
        facts["rank_mix"] = (
            f"support encoder x {info['support_encoder']:g}, item-item x {info['item_item']:g}"
        )

    def trend_facts(info) -> None:
        facts["trend"] = info.get("chosen")

    def ingest_facts(ds) -> None:
        facts["n_interactions_read"] = int(ds.interactions.height)

    workflows.load_data = rec.timed("ingest", workflows.load_data, ingest_facts)
    for name in ("prepare_log", "split_validation", "user_logs", "build_learner", "validation_tasks_of"):
        setattr(training, name, rec.timed("prepare", getattr(training, name)))
    training.fit_space = rec.timed("prepare", training.fit_space, space_facts)
    training.log_info = rec.timed("prepare", training.log_info, log_facts)
    training.prepare_head = rec.timed("prepare_head", training.prepare_head, head_facts)
    training.init_item_ids_from_als = rec.timed("als_start", training.init_item_ids_from_als)
    if hasattr(training, "fit_item_item_blend"):
        training.fit_item_item_blend = rec.timed("item_item", training.fit_item_item_blend)
    training.meta_train = rec.timed("meta_training", training.meta_train)
    post_training.choose_rank_mix = rec.timed("path_weights", post_training.choose_rank_mix, mix_facts)
    post_training.choose_fold_in_weight = rec.timed("path_weights", post_training.choose_fold_in_weight)
    post_training.choose_mf_fallback = rec.timed("mf_fallback", post_training.choose_mf_fallback)
    post_training.choose_trend = rec.timed("trend_choice", post_training.choose_trend, trend_facts)
    training.summarise = rec.timed("summary", training.summarise)
    ColdStartRecommender.save = rec.timed("save", ColdStartRecommender.save)

    sample_tasks = trainer.sample_tasks

    def counted(*args, **kwargs):
        tasks = sample_tasks(*args, **kwargs)
        facts["tasks_per_epoch"] = len(tasks)
        return tasks

    trainer.sample_tasks = counted
    init = trainer.MetaTrainer.__init__

    def init_with_recorder(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        self.on_epoch_end = [*self.on_epoch_end, rec.epoch]

    trainer.MetaTrainer.__init__ = init_with_recorder


def worker(prefix: str, cli_args: list[str]) -> int:
    """Run ``recsys <cli_args>`` in this process with the timers on; figures to ``PREFIX.rankR.json``."""
    rank = int(os.environ.get("RANK", "0"))
    rec = Recorder(Path(f"{prefix}.rank{rank}.json"))
    rec.data["rank"] = rank
    install_timers(rec)
    rec.data["import_s"] = time.perf_counter() - rec.t0
    rec.write()
    from recsys.cli import main as cli_main

    code = 0
    try:
        cli_main(cli_args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    rec.data["finished"] = code == 0
    rec.data["exit_code"] = code
    rec.write()
    return code


# ---- the logs ------------------------------------------------------------------------------------
def synthetic_log(scale: float) -> tuple[str, list[str]] | None:
    """The ML-25M-shaped log at ``scale`` (Parquet, with its item table): its name and the data options."""
    from benchmarks.large_logs import generate

    n = max(1000, round(ML25M["interactions"] * scale))
    users = max(50, round(ML25M["users"] * scale))
    items = max(100, round(ML25M["items"] * scale))
    path = generate(n, users, items, formats=("parquet",))["parquet"]
    name = "synthetic-25m" if scale == 1 else f"synthetic-25m x{scale:g}"
    return name, ["--interactions", str(path), "--items", str(path.with_name("items.parquet"))]


def synthetic_17k_log(scale: float) -> tuple[str, list[str]] | None:
    """The ~100k-interaction, ~17k-item synthetic log (interactions only, CSV; cached like the 25M log)."""
    from recsys.data.synthetic import SyntheticConfig, make_synthetic

    n = max(1000, round(102_000 * scale))
    path = Path(__file__).resolve().parent / ".cache" / f"synthetic-17k-{n}.csv"
    if not path.exists():
        cfg = SyntheticConfig(
            n_users=max(50, round(5000 * scale)),
            n_items=max(100, round(21_700 * scale)),
            n_interactions=n,
            popularity_exponent=0.9,
            seed=0,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        make_synthetic(cfg).interactions.write_csv(tmp)
        tmp.replace(path)
    return ("synthetic-17k" if scale == 1 else f"synthetic-17k x{scale:g}"), ["--interactions", str(path)]


def gowalla_log(scale: float) -> tuple[str, list[str]] | None:
    """Gowalla's check-ins (implicit feedback); at ``scale`` < 1, that share of its users (every k-th)."""
    root = find_data_root("gowalla")
    path = root / "gowalla" / "interactions.csv" if root else None
    if path is None or not path.exists():
        print(
            "  gowalla: not found (set RECSYS_DATA_DIR to a folder holding gowalla/interactions.csv); skipped"
        )
        return None
    if scale < 1:
        import polars as pl

        every = max(1, round(1 / scale))
        sub = Path(tempfile.gettempdir()) / f"recsys-bench-gowalla-every{every}.csv"
        if not sub.exists():
            pl.read_csv(path).filter(pl.col("user_id") % every == 0).write_csv(sub)
        return f"gowalla (every {every}th user)", ["--interactions", str(sub), "--implicit"]
    return "gowalla", ["--interactions", str(path), "--implicit"]


# ---- one run ---------------------------------------------------------------------------------------
def _stream(proc: subprocess.Popen, lines: list[str]) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        print("    | " + line.rstrip(), flush=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the process group this benchmark started for one run (torchrun and its workers)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _model_size_mb(out: Path) -> float | None:
    files = [p for p in out.rglob("*") if p.is_file() and p.name != "checkpoint.safetensors"]
    files = [p for p in files if not p.name.endswith((".lock", ".tmp"))]
    return round(sum(p.stat().st_size for p in files) / 2**20, 2) if files else None


def _phases(records: dict[str, Any]) -> dict[str, float | None]:
    """Seconds per reported phase from rank 0's timers (``prepare`` includes the item offsets)."""
    sums: dict[str, float] = {}
    for p in records["phases"]:
        sums[p["phase"]] = sums.get(p["phase"], 0.0) + p["seconds"]
    head = sums.pop("prepare_head", None)
    if head is not None:  # what the head's preparation spent beyond the ALS start and the blend
        rest = head - sums.get("als_start", 0.0) - sums.get("item_item", 0.0)
        sums["prepare"] = sums.get("prepare", 0.0) + max(rest, 0.0)
    return {k: (round(sums[k], 2) if k in sums else None) for k in PHASES}


def summarise_run(
    records: list[dict[str, Any]], out: Path, epochs: int, wall: float, code: int | None
) -> dict[str, Any]:
    """The figures of one run from its ranks' records (rank 0 first)."""
    r0 = records[0] if records else {"phases": [], "epochs": [], "facts": {}}
    if r0["epochs"] and "epochs_planned" in r0["epochs"][-1]:  # the trainer's plan (train.max_tasks)
        epochs = int(r0["epochs"][-1]["epochs_planned"])
    facts = r0["facts"]
    ep = [e["seconds"] for e in r0["epochs"]]
    mean = sum(ep) / len(ep) if ep else None
    tasks = facts.get("tasks_per_epoch")
    phases = _phases(r0)
    before = sum(v for k, v in phases.items() if v is not None and k not in ("meta_training", "save"))
    finished = bool(r0.get("finished"))
    peaks = [r.get("peak_rss_mb") for r in records if r.get("peak_rss_mb")]
    return {
        "completed": finished,
        "stopped_by_budget": code is None,
        "exit_code": code,
        "wall_s": round(wall, 1),
        "phases_s": phases,
        "epochs_planned": epochs,
        "epochs_run": len(ep),
        "epoch_s": [round(s, 2) for s in ep],
        "epoch_s_mean": round(mean, 2) if mean else None,
        "projected_s": round(before + mean * epochs, 0) if mean and not finished else None,
        "validation_curve": [
            {k: round(v, 5) for k, v in e.items() if k == "epoch" or k.startswith("val_")}
            for e in r0["epochs"]
        ],
        "tasks_per_epoch": tasks,
        "tasks_per_s": round(tasks / mean, 1) if tasks and mean else None,
        "peak_rss_gb": round(peaks[0] / 1024, 2) if peaks else None,
        "peak_rss_gb_all_ranks": round(sum(peaks) / 1024, 2) if peaks else None,
        "model_size_mb": _model_size_mb(out) if finished else None,
        "n_users": (facts.get("train_users") or 0) + (facts.get("validation_users") or 0) or None,
        "n_items": facts.get("n_items"),
        "n_interactions": facts.get("n_interactions_read"),
        "item_item": facts.get("item_item")
        or (
            "none: the head blends no item-item matrix (this code skips it above "
            "model.hybrid.item_item_max_items)"
            if r0["phases"] and any(p["phase"] == "prepare_head" for p in r0["phases"])
            else None
        ),
        "trend": facts.get("trend"),
        "rank_mix": facts.get("rank_mix"),
    }


def _run_budgeted(
    cmd: list[str], work: Path, env: dict[str, str], budget_min: float
) -> tuple[int | None, list[str], float]:
    """Run ``cmd`` streaming its output, stopped after ``budget_min``: (exit code or None when
    stopped, its output lines, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=_stream, args=(proc, lines), daemon=True)
    reader.start()
    code: int | None = None
    try:
        code = proc.wait(timeout=budget_min * 60)
    except subprocess.TimeoutExpired:
        print(f"  budget of {budget_min:g} min reached: run stopped", flush=True)
    finally:  # also when this process is interrupted or terminated: never leave the run behind
        if proc.poll() is None:
            _stop(proc)
    wall = time.perf_counter() - t0
    reader.join(timeout=5)
    return code, lines, wall


def run_one(
    name: str, data_args: list[str], nproc: int, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One ``recsys train`` run (``nproc`` processes) with its figures; stopped after the budget."""
    out = work / f"model-{len(list(work.glob('model-*')))}"
    train = ["train", *data_args, "--out", str(out), "--device", args.device]
    train += ["--epochs", str(args.epochs)] if args.epochs_given else []
    train += [] if args.mlflow else ["--no-mlflow"]
    command = "recsys " + shlex.join(train + (["--nproc", str(nproc)] if nproc > 1 else []))
    prefix = work / f"figures-{out.name}"
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, "-m", "benchmarks.scale_training", "--worker", str(prefix), *train]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    }
    env |= {"RECSYS_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
    header(f"scale training: {name}, {nproc} process(es), {args.device}")
    print(f"  command: {command}\n  (run as: {shlex.join(cmd[1:])})", flush=True)
    with CpuShare() as cpu:
        code, lines, wall = _run_budgeted(cmd, work, env, args.budget_min)
    records = []
    for path in sorted(work.glob(f"{prefix.name}.rank*.json")):
        records.append(json.loads(path.read_text()))
    records.sort(key=lambda r: r.get("rank", 0))
    fig = {"log": name, "nproc": nproc, "device": args.device, "command": command}
    fig |= summarise_run(records, out, args.epochs, wall, code)
    fig["cpu_shares"] = cpu.shares
    if code not in (0, None):
        fig["error"] = next((ln.strip() for ln in reversed(lines) if ln.strip()), "failed")
    show(fig)
    return fig


def show(f: dict[str, Any]) -> None:
    def s(v: float | None, unit: str = " s") -> str:
        if v is None:
            return "-"
        return f"{v:,}" if isinstance(v, int) and not unit else f"{v:,.1f}{unit}"

    state = (
        "completed" if f["completed"] else ("stopped by the budget" if f["stopped_by_budget"] else "failed")
    )
    print(
        f"  {f['log']}: {s(f['n_interactions'], '')} interactions, {s(f['n_users'], '')} users, "
        f"{s(f['n_items'], '')} items; {state} in {s(f['wall_s'])} (exit {f['exit_code']})"
    )
    print("  phases: " + ", ".join(f"{k} {s(v)}" for k, v in f["phases_s"].items()))
    print(
        f"  epochs run {f['epochs_run']} of {f['epochs_planned']}: {s(f['epoch_s_mean'])} per epoch, "
        f"{s(f['tasks_per_s'], '')} tasks/s ({f['tasks_per_epoch'] or '-'} tasks per epoch)"
        + (f"; projected for {f['epochs_planned']} epochs: {s(f['projected_s'])}" if f["projected_s"] else "")
    )
    for e in f["validation_curve"]:
        print("    " + ", ".join(f"{k} {v:g}" for k, v in e.items()))
    print(
        f"  peak resident memory {s(f['peak_rss_gb'], ' GB')} (rank 0; all ranks "
        f"{s(f['peak_rss_gb_all_ranks'], ' GB')}); model on disk {s(f['model_size_mb'], ' MB')}"
    )
    print(
        f"  item-item blend: {f['item_item']}; ranking paths: {f.get('rank_mix')}; trend prior: {f['trend']}"
    )
    print("  " + cpu_shares_line(f.get("cpu_shares")), flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        raise SystemExit(worker(argv[1], argv[2:]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--log",
        choices=("synthetic-25m", "synthetic-17k", "gowalla", "both"),
        default="both",
        help="which log (both: synthetic-25m and gowalla)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="share of the log (0.01: a smoke run)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the config's train.epochs)")
    p.add_argument("--nproc", default="1,2", help="comma-separated process counts (default 1,2)")
    p.add_argument("--budget-min", type=float, default=60.0, help="stop each run after this many minutes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--mlflow", action="store_true", help="track the runs in MLflow (default --no-mlflow)")
    p.add_argument("--out", type=Path, help="write the figures to this JSON file")
    p.add_argument("--work", type=Path, help="folder for the models (default: a temporary folder)")
    args = p.parse_args(argv)
    from recsys.config import RecommenderConfig

    default = RecommenderConfig().train
    args.epochs_given = args.epochs is not None
    args.epochs = args.epochs if args.epochs is not None else default.epochs
    header("scale training: the default `recsys train` on large logs")
    print(
        f"  epochs: {args.epochs}"
        + (
            ""
            if args.epochs_given
            else f" (the config default, train.epochs; its task budget train.max_tasks = {default.max_tasks:,} "
            "plans fewer for logs of more training users than max_tasks / epochs)"
        )
        + f", early stopping patience {default.patience}; budget {args.budget_min:g} min per run; "
        f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    logs = []
    if args.log in ("synthetic-25m", "both"):
        logs.append(synthetic_log(args.scale))
    if args.log == "synthetic-17k":
        logs.append(synthetic_17k_log(args.scale))
    if args.log in ("gowalla", "both"):
        logs.append(gowalla_log(args.scale))
    nprocs = [int(x) for x in args.nproc.split(",") if x.strip()]
    runs = []
    with tempfile.TemporaryDirectory(prefix="recsys-scale-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        main_thread = threading.current_thread() is threading.main_thread()
        # `timeout` sends SIGTERM: exit through run_one's clean-up, which stops the run too
        before = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)) if main_thread else None
        try:
            for entry in filter(None, logs):
                for n in nprocs:
                    runs.append(run_one(*entry, n, args, work))
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)
    result = {
        "epochs": args.epochs,
        "scale": args.scale,
        "budget_min": args.budget_min,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    write_figures(args.out, result)
    if args.out:
        print(f"\n  figures written to {args.out}")
    return result


if __name__ == "__main__":
    main()
