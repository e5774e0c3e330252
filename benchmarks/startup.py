"""Start-up: the wall time of one ``recsys recommend`` process, from a model folder and from a
``models:/NAME@alias`` URI, beside the floor (``python -c "import torch"``, ``... "import mlflow"``).

A small model is trained and registered once (``recsys train --register``, into a temporary local
sqlite MLflow store, then ``recsys tracking promote NAME 1 --alias champion``); then each command runs
``--repeats`` times in fresh processes, interleaved so machine noise hits all alike, and the median is
reported (the floor is shared by the revisions). ``python -X importtime`` gives the top modules by
cumulative import time of each command. ``--compare-rev REV`` runs the same steps with the code of git revision REV (extracted with
``git archive`` into a temporary folder, put first on ``PYTHONPATH``), side by side.

Usage: ``python -m benchmarks.startup [--repeats 5] [--data ml-100k|synthetic] [--compare-rev ddd1bff]
[--out F.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import find_data_root, header, write_figures

ROOT = Path(__file__).resolve().parent.parent
NAME = "startup-bench"
ML100K_RATINGS = {"50": 5, "181": 5, "172": 4, "1": 3, "100": 2}
"""The README's example ratings (ML-100k item ids)."""
KEYS = (
    "folder_s",
    "uri_s",
    "import_torch_s",
    "import_mlflow_s",
    "python_s",
    "importtime_folder",
    "importtime_uri",
)
"""The figures of each code revision."""


def _env(code_root: Path) -> dict[str, str]:
    """The code at ``code_root`` first on the path; no MLflow URI from the environment (every command
    names its store: with ``MLFLOW_TRACKING_URI`` set, ``recommend --model models:/...`` looked the
    alias up in that store rather than in ``--tracking-uri``'s)."""
    paths = [str(code_root), os.environ.get("PYTHONPATH")]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    return env | {"PYTHONPATH": os.pathsep.join(filter(None, paths)), "RECSYS_PROGRESS": "0"}


def _run(cmd: list[str], code_root: Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(code_root), capture_output=True, text=True)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): " + " | ".join(tail))
    return proc


def recsys_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "recsys", *args]


def prepare(code_root: Path, work: Path, data: list[str], epochs: int) -> dict[str, list[str]]:
    """Train, register and promote a model with the code at ``code_root``; the two recommend commands."""
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    model = work / "model"
    t0 = time.perf_counter()
    train = recsys_cmd("train", *data, "--epochs", str(epochs), "--out", str(model), "--tracking-uri", uri)
    _run([*train, "--register", NAME], code_root, work)
    _run(
        recsys_cmd("tracking", "promote", NAME, "1", "--alias", "champion", "--tracking-uri", uri),
        code_root,
        work,
    )
    print(
        f"  {code_root}: model trained, registered and promoted in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    ratings = work / "ratings.json"
    ratings.write_text(json.dumps(ML100K_RATINGS if "ml-100k" in data else {str(i): 4 for i in range(1, 6)}))
    common = ["--ratings", str(ratings), "-n", "10", "--ignore-unknown"]
    return {
        "folder": recsys_cmd("recommend", "--model", str(model), *common),
        "uri": recsys_cmd("recommend", "--model", f"models:/{NAME}@champion", "--tracking-uri", uri, *common),
    }


def parse_importtime(stderr: str, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` modules by cumulative time from ``python -X importtime``'s report (on stderr)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        rows.append({"module": name, "cumulative_s": int(cum_us) / 1e6, "self_s": int(self_us) / 1e6})
    rows.sort(key=lambda r: -r["cumulative_s"])
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows[:top]]


def importtime(cmd: list[str], code_root: Path, cwd: Path, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` modules by cumulative import time (``python -X importtime``) of ``cmd``."""
    return parse_importtime(_run([cmd[0], "-X", "importtime", *cmd[1:]], code_root, cwd).stderr, top)


def measure(jobs: dict[Any, tuple[list[str], Path, Path]], repeats: int) -> dict[Any, list[float]]:
    """Wall seconds of each job (command, code root, working folder), ``repeats`` times, interleaved
    (the revisions' commands and the floor alike, so machine noise hits all alike)."""
    times: dict[Any, list[float]] = {k: [] for k in jobs}
    for _ in range(repeats):
        for name, (cmd, code_root, cwd) in jobs.items():
            t0 = time.perf_counter()
            _run(cmd, code_root, cwd)
            times[name].append(time.perf_counter() - t0)
    return times


def extract(rev: str, into: Path) -> Path:
    """The tracked files of git revision ``rev`` in ``into`` (``git archive``)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


FLOOR = {
    "python": [sys.executable, "-c", "pass"],
    "import_torch": [sys.executable, "-c", "import torch"],
    "import_mlflow": [sys.executable, "-c", "import mlflow"],
}
"""The floor: the interpreter alone, and the two heavy imports a scoring command may need."""


def bench(revisions: list[tuple[str, Path, Path]], data: list[str], args, tmp: Path) -> list[dict[str, Any]]:
    """Each revision's (label, code root, working folder) figures; every command timed interleaved."""
    commands = {label: prepare(root, work, data, args.epochs) for label, root, work in revisions}
    jobs: dict[Any, tuple[list[str], Path, Path]] = {("floor", k): (c, ROOT, tmp) for k, c in FLOOR.items()}
    for label, root, work in revisions:
        jobs |= {(label, k): (c, root, work) for k, c in commands[label].items()}
    times = measure(jobs, args.repeats)
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    figures = []
    for label, root, work in revisions:
        cmds = commands[label]
        fig = {
            "revision": label,
            "folder_s": med[(label, "folder")],
            "uri_s": med[(label, "uri")],
            "import_torch_s": med[("floor", "import_torch")],
            "import_mlflow_s": med[("floor", "import_mlflow")],
            "python_s": med[("floor", "python")],
            "runs_s": {k[1]: [round(t, 3) for t in v] for k, v in times.items() if k[0] in (label, "floor")},
            "commands": {k: "recsys " + shlex.join(v[3:]) for k, v in cmds.items()},
            "importtime_folder": importtime(cmds["folder"], root, work),
            "importtime_uri": importtime(cmds["uri"], root, work),
        }
        show(fig, args.repeats)
        figures.append(fig)
    return figures


def show(f: dict[str, Any], repeats: int) -> None:
    print(f"  code: {f['revision']} (median of {repeats} fresh processes each)")
    print(f"    {f['folder_s']:6.2f} s  {f['commands']['folder']}   (target <= 1.5 s)")
    print(f"    {f['uri_s']:6.2f} s  {f['commands']['uri']}   (target <= 4 s)")
    print(
        f"    floor: python -c 'import torch' {f['import_torch_s']:.2f} s, 'import mlflow' "
        f"{f['import_mlflow_s']:.2f} s, 'pass' {f['python_s']:.2f} s"
    )
    for key in ("importtime_folder", "importtime_uri"):
        print(f"    python -X importtime, {key.split('_')[1]}: top {len(f[key])} by cumulative time")
        for r in f[key]:
            print(f"      {r['cumulative_s']:6.3f} s cumulative ({r['self_s']:.3f} s self)  {r['module']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--data", choices=("ml-100k", "synthetic"), default="ml-100k", help="(synthetic if absent)"
    )
    p.add_argument(
        "--epochs", type=int, default=1, help="training epochs of the model (start-up does not depend)"
    )
    p.add_argument("--compare-rev", help="also measure the code of this git revision (e.g. ddd1bff)")
    p.add_argument("--out", type=Path, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    header("start-up: one `recsys recommend` process")
    print(
        f"  {os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"{sys.executable}",
        flush=True,
    )
    result: dict[str, Any] = {"repeats": args.repeats, "load_average_start": os.getloadavg(), "revisions": []}
    with tempfile.TemporaryDirectory(prefix="recsys-startup-") as tmp:
        tmp_path = Path(tmp)
        root = find_data_root("ml-100k") if args.data == "ml-100k" else None
        if root is not None:
            os.environ["RECSYS_DATA_DIR"] = str(Path(root).resolve())
            data = ["--dataset", "ml-100k"]
        else:
            synth = tmp_path / "synth"
            _run(recsys_cmd("data", "synth", "--out", str(synth), "--users", "300", "--items", "200",
                            "--interactions", "6000"), ROOT, tmp_path)  # fmt: skip
            data = ["--dataset", str(synth)]
        result["data"] = data[1]
        revisions = [("working tree", ROOT, tmp_path / "current")]
        if args.compare_rev:
            old = extract(args.compare_rev, tmp_path / f"rev-{args.compare_rev}")
            revisions.append((f"git {args.compare_rev}", old, tmp_path / "compare"))
        result["revisions"] = bench(revisions, data, args, tmp_path)
    result["load_average_end"] = os.getloadavg()
    write_figures(args.out, result)
    return result


if __name__ == "__main__":
    main()
