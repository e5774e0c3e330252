"""`make bench`: the five speed and scale comparisons, sized for 2 CPU cores (about 15 minutes).

1. meta-training throughput (vectorised vs per-user loop vs the MeLU reference's approach) and
2. the meta overhead — :mod:`benchmarks.meta_throughput`;
3. scoring latency and batched throughput — :mod:`benchmarks.scoring_latency`;
4. large logs, polars streaming vs pandas — :mod:`benchmarks.large_logs`;
5. sparse vs dense embedding gradients — :mod:`benchmarks.sparse_embeddings`.

Each module runs alone too (``python -m benchmarks.<name> --help``). Figures are printed, never
asserted. Set ``BENCH_QUICK=1`` for a smaller smoke run.
"""

from __future__ import annotations

import os
import platform
import time

import torch


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    print(
        f"recsys benchmarks on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads){' [quick]' if quick else ''}"
    )
    t0 = time.perf_counter()
    from benchmarks import large_logs, meta_throughput, scoring_latency, sparse_embeddings

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
    print(f"\nall benchmarks: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
