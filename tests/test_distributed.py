"""DistributedDataParallel training (gloo, 2 CPU processes) matches single-process training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from recsys.utils.checkpoint import load_tensors

WORKER = Path(__file__).with_name("distributed_worker.py")
REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    single = _run([sys.executable, str(WORKER), str(tmp_path / "single.safetensors")])
    assert single.returncode == 0, single.stderr
    multi = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(WORKER),
            str(tmp_path / "multi.safetensors"),
        ]
    )
    assert multi.returncode == 0, multi.stderr
    a, meta_a = load_tensors(tmp_path / "single.safetensors")
    b, meta_b = load_tensors(tmp_path / "multi.safetensors")
    assert meta_a["world"] == 1 and meta_b["world"] == 2 and meta_a["steps"] == meta_b["steps"] > 4
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=name)
    init, _ = load_tensors(str(tmp_path / "multi.safetensors") + ".init")
    moved = max((a[n] - init[n]).abs().max().item() for n in a if a[n].numel())
    assert moved > 1e-2  # training really changed the weights, so the match is not trivial
