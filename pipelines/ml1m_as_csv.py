"""Write MovieLens-1M's GroupLens files as plain CSV files with a spec, the way a user brings a log.

The built-in ``ml-1m`` loader knows the GroupLens layout; this export goes through the generic path
instead (CSV files, a spec declaring the field kinds, nothing MovieLens-specific), so that the
defaults can be checked on a second rating dataset as any other log would be::

    python -m pipelines.ml1m_as_csv ../shared/data/ml-1m data/ml1m-csv
    recsys evaluate --dataset data/ml1m-csv --protocol temporal,random --shots 3,5,10 --seeds 3 \\
        --ablations none --out reports/ml1m-csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from recsys.data.dataset import builtin_specs
from recsys.data.tables import ROW, read_raw
from recsys.utils.io import atomic_write_text

SPEC = """\
# MovieLens-1M as plain CSV files, read through the generic interaction-log path.
name = "ml1m-csv"
rating_scale = [1, 5]
title_field = "title"

[interactions]
path = "ratings.csv"

[users]
path = "users.csv"
fields = [
  { name = "gender" },
  { name = "age", kind = "categorical" },
  { name = "occupation", kind = "categorical" },
  { name = "zip", kind = "categorical" },
]

[items]
path = "movies.csv"
fields = [
  { name = "genres", kind = "multi", separator = "|" },
  { name = "title", kind = "text" },
]
"""


def export(source: Path, out: Path) -> dict[str, int]:
    """Write ``ratings.csv``, ``users.csv``, ``movies.csv`` and ``spec.toml`` to ``out``; row counts.

    The GroupLens files are read as raw string tables by the built-in ``ml-1m`` spec's readers (bad
    lines are a :class:`~recsys.errors.DataError` naming the file and line)."""
    grouplens = next(s for s in builtin_specs()["ml-1m"] if s.layout == "grouplens")
    ratings, users, movies = (
        read_raw(t, source).drop(ROW) for t in (grouplens.interactions, grouplens.users, grouplens.items)
    )
    frames = {
        "ratings.csv": ratings.with_columns(
            pl.col("user_id", "item_id", "timestamp").cast(pl.Int64), pl.col("rating").cast(pl.Float64)
        ),
        # the zip code's first two digits, as the built-in spec does
        "users.csv": users.select(
            pl.col("user_id").cast(pl.Int64),
            "gender",
            "age",
            "occupation",
            pl.col("zip_code").str.slice(0, 2).alias("zip"),
        ),
        "movies.csv": movies.with_columns(pl.col("item_id").cast(pl.Int64)),
    }
    out.mkdir(parents=True, exist_ok=True)
    for target, frame in frames.items():
        atomic_write_text(out / target, frame.write_csv())
    atomic_write_text(out / "spec.toml", SPEC)
    return {target: frame.height for target, frame in frames.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pipelines.ml1m_as_csv", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="Folder with GroupLens ratings.dat, users.dat, movies.dat.")
    p.add_argument("out", type=Path, help="Folder to write the CSV files and spec.toml to.")
    args = p.parse_args(argv)
    for target, n in export(args.source, args.out).items():
        print(f"{args.out / target}: {n:,} rows")


if __name__ == "__main__":
    main()
