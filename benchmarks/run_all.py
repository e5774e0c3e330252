"""`make bench`: the speed and scale comparisons, sized for 2 CPU cores (the first five: about 8 minutes).

1. meta-training throughput (vectorised vs per-user loop vs the MeLU reference's approach) and
2. the meta overhead — :mod:`benchmarks.meta_throughput`;
3. scoring latency and batched throughput — :mod:`benchmarks.scoring_latency`;
4. large logs, polars streaming vs pandas — :mod:`benchmarks.large_logs`;
5. sparse vs dense embedding gradients — :mod:`benchmarks.sparse_embeddings`;
6. scoring at scale with the default item-item blend (62k and 1M items) and model load time —
   :mod:`benchmarks.scale_scoring`;
7. start-up of one ``recsys recommend`` process (model folder, ``models:/`` URI), beside the code
   before the fast-start work (:data:`STARTUP_BASELINE`) — :mod:`benchmarks.startup`.

Training the default model on the 25M-row log and on Gowalla takes hours on 2 cores: it is
``make bench-scale`` (:mod:`benchmarks.scale_training`), not part of this run.

Each module runs alone too (``python -m benchmarks.<name> --help``). Figures are printed, never
asserted. Set ``BENCH_QUICK=1`` for a smaller smoke run.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch

STARTUP_BASELINE = "ddd1bff"
"""The commit before the fast-start work (issue 19, point 7): start-up is measured beside it."""


def _has_revision(rev: str) -> bool:
    root = Path(__file__).resolve().parent.parent
    probe = ["git", "-C", str(root), "cat-file", "-e", f"{rev}^{{commit}}"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    print(
        f"recsys benchmarks on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads){' [quick]' if quick else ''}"
    )
    t0 = time.perf_counter()
    from benchmarks import (
        large_logs,
        meta_throughput,
        scale_scoring,
        scoring_latency,
        sparse_embeddings,
        startup,
    )

    meta_throughput.main(["--batches", "2" if quick else "3", "--repeats", "2" if quick else "3"])
    scoring_latency.main(
        [
            "--epochs",
            "0",
            "--requests",
            "100" if quick else "300",
            "--batch-users",
            "2000" if quick else "10000",
            "--big-items",
            "200000" if quick else "1000000",
        ]
    )
    if quick:
        large_logs.main(["--interactions", "2000000", "--users", "13000", "--items", "5000"])
    else:
        large_logs.main([])
    sparse_embeddings.main(["--items", "200000" if quick else "1000000", "--steps", "4" if quick else "8"])
    scale_scoring.main(
        ["--items", "20000" if quick else "62000,1000000", "--requests", "50" if quick else "200"]
    )
    compare = ["--compare-rev", STARTUP_BASELINE] if _has_revision(STARTUP_BASELINE) else []
    if not compare:
        print(f"\n(start-up: git revision {STARTUP_BASELINE} not found, measured without the comparison)")
    startup.main(["--repeats", "2" if quick else "5", *compare])
    print(f"\nall benchmarks: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
