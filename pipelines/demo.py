"""End-to-end demo on MovieLens-100k (``make demo``): download, meta-train, evaluate against the
baselines, track everything in the local MLflow store, register, recommend for a new user.

Runs from the repository root; the store is ``./mlflow.db`` with artifacts in ``./mlartifacts``. The
evaluation is sized to stay well under 10 minutes on 2 CPU cores: change the constants below.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

# ---- sizing (the lead tunes these) -----------------------------------------------------------------
DATASET = "ml-100k"
PROTOCOL = "temporal"  # which users are held out as new users for training and evaluation
EVAL_PROTOCOLS = ("temporal",)
EVAL_SHOTS = (1, 3, 5, 10, 20)
EVAL_SEEDS = 1
BASELINES = "all"  # or e.g. "item-mean,popularity,mf-als,item-knn,ease"
ABLATIONS = "no-adaptation"  # re-scores the model without its support (free); see `recsys evaluate --help`
TUNE_BASELINES = True
CONFIG: Path | None = None  # None: the engine's default config
EPOCHS: int | None = None  # None: the config's train.epochs (early stopping on validation users)
REGISTERED_NAME = "recsys-ml-100k"
EXPERIMENT = "recsys-demo"
OUT = Path("runs/demo")
# a new user who rated 5 movies (matched by title in the catalogue, with or without the year)
SAMPLE_USER = {
    "Star Wars (1977)": 5.0,
    "Empire Strikes Back, The (1980)": 5.0,
    "Raiders of the Lost Ark (1981)": 4.0,
    "Toy Story (1995)": 4.0,
    "English Patient, The (1996)": 1.0,
}
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def fetch() -> Path:
    """ml-100k into the data folder ($RECSYS_DATA_DIR or ./data): cached, or copied from ../shared."""
    from recsys.data.dataset import data_dir
    from recsys.data.download import download

    shared = SHARED / DATASET
    return download(DATASET, data_dir(), from_dir=SHARED if shared.is_dir() else None)


def sample_ratings(rec, titles: dict[str, float]) -> dict:
    """The sample user's ratings keyed by item id (titles not in the catalogue are skipped)."""

    def key(title: str) -> str:
        return re.sub(r"\s*\(\d{4}\)\s*$", "", title).strip().lower()

    by_title: dict[str, object] = {}
    for item, title in zip(rec.item_ids, rec.space.titles, strict=True):
        if title:
            by_title.setdefault(key(title), item)
    ratings = {by_title[key(t)]: r for t, r in titles.items() if key(t) in by_title}
    if len(ratings) < len(titles):  # unexpected catalogue: rate the most popular items instead
        import numpy as np

        top = np.argsort(-rec.space.popularity)[: len(titles)]
        ratings = {rec.item_ids[int(i)]: r for i, r in zip(top, titles.values(), strict=False)}
    return ratings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=EPOCHS, help="Override train.epochs.")
    p.add_argument(
        "--quick", action="store_true", help="A smoke run: 2 epochs, K=5, two baselines (minutes -> seconds)."
    )
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    t0 = time.perf_counter()

    from pipelines.train_and_register import build_parser, run
    from recsys.evaluation.report import markdown
    from recsys.recommender import ColdStartRecommender

    folder = fetch()
    print(f"[data] {DATASET} ready in {folder}")
    from recsys.cli.data import format_stats
    from recsys.data import load_dataset

    print(format_stats(load_dataset(folder).stats()))
    flags = [
        "--dataset", DATASET, "--protocol", PROTOCOL, "--eval-protocols", ",".join(EVAL_PROTOCOLS),
        "--shots", ",".join(map(str, EVAL_SHOTS)), "--seeds", str(EVAL_SEEDS), "--baselines", BASELINES,
        "--ablations", ABLATIONS, "--registered-name", REGISTERED_NAME, "--experiment", EXPERIMENT,
        "--out", str(OUT), "--run-name", "demo",
    ]  # fmt: skip
    if CONFIG:
        flags += ["--config", str(CONFIG)]
    if not TUNE_BASELINES:
        flags.append("--no-tune")
    epochs = 2 if args.quick and args.epochs is None else args.epochs
    if epochs is not None:
        flags += ["--epochs", str(epochs)]
    if args.quick:
        flags += ["--shots", "5", "--baselines", "item-mean,popularity", "--no-tune"]
    result = run(build_parser().parse_args(flags))

    print()
    if result.report:
        print(markdown(result.report))
    if result.version is None:
        print("the model was not registered (tracking store unreachable)")
        return 1
    promoted = result.decision is not None and result.decision.promoted
    uri = f"models:/{REGISTERED_NAME}@champion" if promoted else f"models:/{REGISTERED_NAME}/{result.version}"
    rec = ColdStartRecommender.load(uri)
    ratings = sample_ratings(rec, SAMPLE_USER)
    print(f"A new user rated {len(ratings)} movies:")
    for item, r in ratings.items():
        print(f"  {r:.0f}/5  {rec.title(item)}")
    print(f"Top 10 for them ({uri}):")
    for rank, (item, score) in enumerate(rec.recommend(ratings, n=10), 1):
        print(f"  {rank:2d}. {rec.title(item) or item}  ({score:.2f})")
    print()
    print(f"Everything is in the local MLflow store (experiment {EXPERIMENT!r}, run {result.run_id}):")
    print("  mlflow ui --backend-store-uri sqlite:///mlflow.db     # then open http://127.0.0.1:5000")
    print("Serve the champion (REST, POST /invocations):")
    print(
        f"  MLFLOW_TRACKING_URI=sqlite:///mlflow.db mlflow models serve -m models:/{REGISTERED_NAME}@champion "
        "--env-manager local -p 5001"
    )
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
