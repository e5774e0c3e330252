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

FILES = {
    "ratings.dat": ("ratings.csv", ["user_id", "item_id", "rating", "timestamp"]),
    "users.dat": ("users.csv", ["user_id", "gender", "age", "occupation", "zip"]),
    "movies.dat": ("movies.csv", ["item_id", "title", "genres"]),
}


def read_grouplens(path: Path, names: list[str]) -> pl.DataFrame:
    """A ``::``-separated, Latin-1 GroupLens file as string columns ``names``."""
    rows = [line.split("::") for line in path.read_text(encoding="latin-1").splitlines() if line]
    bad = next((i for i, r in enumerate(rows, 1) if len(r) != len(names)), None)
    if bad is not None:
        raise ValueError(
            f"{path}, line {bad}: expected {len(names)} '::'-separated fields ({', '.join(names)})"
        )
    return pl.DataFrame({n: [r[i] for r in rows] for i, n in enumerate(names)})


def export(source: Path, out: Path) -> dict[str, int]:
    """Write ``ratings.csv``, ``users.csv``, ``movies.csv`` and ``spec.toml`` to ``out``; row counts."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, (target, columns) in FILES.items():
        frame = read_grouplens(source / name, columns)
        if name == "ratings.dat":
            frame = frame.with_columns(
                pl.col("user_id", "item_id", "timestamp").cast(pl.Int64), pl.col("rating").cast(pl.Float64)
            )
        elif name == "users.dat":  # the zip code's first two digits, as the built-in spec does
            frame = frame.with_columns(pl.col("user_id").cast(pl.Int64), pl.col("zip").str.slice(0, 2))
        else:
            frame = frame.with_columns(pl.col("item_id").cast(pl.Int64))
        atomic_write_text(out / target, frame.write_csv())
        counts[target] = frame.height
    atomic_write_text(out / "spec.toml", SPEC)
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pipelines.ml1m_as_csv", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="Folder with GroupLens ratings.dat, users.dat, movies.dat.")
    p.add_argument("out", type=Path, help="Folder to write the CSV files and spec.toml to.")
    args = p.parse_args(argv)
    for target, n in export(args.source, args.out).items():
        print(f"{args.out / target}: {n:,} rows")


if __name__ == "__main__":
    main()
