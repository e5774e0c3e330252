"""Scoring at scale with the item-item blend: one ``recommend`` at 62k and at 1M items, and model load.

For each catalogue size a synthetic log (ML-25M-like popularity, genres and a category per item) is
fitted with the default config and **meta-training skipped** (:func:`no_meta_training`: zero epochs,
which the config itself refuses): ``ColdStartRecommender.fit`` still runs every other step of the
recipe, the ALS start, the item-item blend (whatever kind the default picks for that catalogue: dense,
sparse or none) and the trend choice, so the scoring path is the default model's; only the network's
weights stay at their initial values, which latency does not depend on. The blend's kind is read from the model's ``info["item_item"]``:
when the default fits no blend for a catalogue, the figures say so (they are then without it).
Validation users are capped (``--validation-users``): choosing the blend and the trend scores every
validation user over the whole catalogue.

Figures: p50 / p99 of ``rec.recommend(5 ratings, n=10)``, the model's size on disk, and the load time
of the saved model: ``ColdStartRecommender.load`` in a warm process (median of 3) and a fresh
``python`` process importing recsys and loading it.

Usage: ``python -m benchmarks.scale_scoring [--items 62000,1000000] [--requests 200] [--out F.json]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CpuShare, cpu_shares_line, fast_synthetic, header, percentile, write_figures

ROOT = Path(__file__).resolve().parent.parent
KEYS = (
    "n_items",
    "n_interactions",
    "item_item",
    "blend_active",
    "fit_s",
    "p50_ms",
    "p99_ms",
    "model_size_mb",
    "load_s",
    "load_fresh_process_s",
)
"""The figures of each catalogue size."""


@contextlib.contextmanager
def no_meta_training():
    """``recsys.training.meta_train`` replaced by "no epoch" while the block runs (the rest of the recipe
    unchanged)."""
    from recsys import training
    from recsys.meta.trainer import TrainState

    real = training.meta_train
    training.meta_train = lambda learner, *args, **kwargs: TrainState(finished=True)
    try:
        yield
    finally:
        training.meta_train = real


def _requests(frame, n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` new users' 5 ratings, on items drawn from the log (so the model knows them)."""
    items = frame["item_id"].to_numpy()
    return [
        {int(i): float(rng.integers(1, 6)) for i in rng.choice(items, 5, replace=False)} for _ in range(n)
    ]


def _fresh_load_s(path: Path) -> float:
    code = (
        "import time; t = time.perf_counter()\n"
        "from recsys import ColdStartRecommender\n"
        f"ColdStartRecommender.load({str(path)!r}); print(time.perf_counter() - t)\n"
    )
    paths = [os.environ.get("RECSYS_BENCH_ROOT", str(ROOT)), os.environ.get("PYTHONPATH")]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, paths))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def catalogue(n_items: int, n_requests: int, validation_users: int, device: str = "cpu") -> dict[str, Any]:
    """Fit (zero epochs), save, load and time ``recommend`` on a catalogue of ``n_items`` items."""
    from recsys import ColdStartRecommender
    from recsys.config import RecommenderConfig

    n_users = max(2000, min(50_000, n_items // 20))
    per_user = max(20, 2 * n_items // n_users)
    header(f"scoring at scale: {n_items:,} items, the default model's blend included")
    ds = fast_synthetic(n_users, n_items, per_user=per_user, seed=0, popularity="sqrt")
    cfg = RecommenderConfig().replace(train={"device": device})
    rec = ColdStartRecommender(cfg)
    t0 = time.perf_counter()
    with no_meta_training():
        rec.fit_dataset(ds, validation_users=list(range(validation_users)))
    fit_s = time.perf_counter() - t0
    active = bool(rec.learner.head.item_item_active)
    kind = rec.info.get("item_item") or (
        "none: the default fitted no item-item blend for this catalogue (model.hybrid.item_item_max_items "
        f"= {cfg.model.hybrid.item_item_max_items:,}); the figures are WITHOUT the blend"
    )
    print(
        f"  {ds.interactions.height:,} interactions, {n_users:,} users; fitted without meta-training in {fit_s:.0f} s "
        f"({validation_users} validation users); item-item blend: {kind}"
    )
    with tempfile.TemporaryDirectory(prefix="recsys-scale-scoring-") as tmp:
        path = rec.save(Path(tmp) / "model")
        size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            loaded = ColdStartRecommender.load(path)
            loads.append(time.perf_counter() - t0)
        fresh = _fresh_load_s(Path(path))
    loaded.to(device)
    reqs = _requests(ds.interactions, n_requests + 5, np.random.default_rng(1))
    for r in reqs[:5]:  # warm-up: the item side is computed once and cached
        loaded.recommend(r, n=10)
    times = []
    with CpuShare() as cpu:
        for r in reqs[5:]:
            t0 = time.perf_counter()
            loaded.recommend(r, n=10)
            times.append(time.perf_counter() - t0)
    p50, p99 = percentile(times, 50) * 1e3, percentile(times, 99) * 1e3
    print(
        f"  recommend(5 ratings, n=10) of {n_items:,}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({n_requests} requests; "
        f"blend {'in' if active else 'NOT in'} the scores); requests' {cpu_shares_line(cpu.shares)}\n"
        f"  model {size:,.1f} MB on disk; ColdStartRecommender.load {statistics.median(loads):.2f} s (warm process, "
        f"median of 3), {fresh:.2f} s in a fresh process (imports included)",
        flush=True,
    )
    return {
        "n_items": int(rec.space.n_items),
        "n_interactions": ds.interactions.height,
        "item_item": kind,
        "blend_active": active,
        "fit_s": round(fit_s, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "model_size_mb": round(size, 1),
        "load_s": round(statistics.median(loads), 3),
        "load_fresh_process_s": round(fresh, 3),
        "cpu_shares_during_requests": cpu.shares,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", default="62000,1000000", help="comma-separated catalogue sizes")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--validation-users", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_PROGRESS", "0")
    import logging

    logging.getLogger("recsys").setLevel(logging.WARNING)
    sizes = [int(x) for x in args.items.split(",") if x.strip()]
    result = {
        "command": "python -m benchmarks.scale_scoring "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "catalogues": [catalogue(n, args.requests, args.validation_users, args.device) for n in sizes],
    }
    print(f"  command: {result['command']}")
    write_figures(args.out, result)
    return result


if __name__ == "__main__":
    main()
