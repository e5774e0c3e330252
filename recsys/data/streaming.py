"""Large interaction logs: polars lazy scans and the streaming engine, straight to a :class:`UserLog`.

For logs of tens of millions of rows the eager readers (which keep every column as text to report
the exact line of a bad value) cost too much memory. This path scans CSV or Parquet lazily, validates
with aggregate expressions evaluated in the same streaming pass, de-duplicates (user, item) pairs
(latest timestamp wins), maps ids to dense indices and sorts by user and time — collecting only
four numeric columns. Where validation finds a problem it re-reads the file with the eager reader,
whose error names the line and field. No Python object is built per interaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.ids import IdIndex, column_ids
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.data.spec import TableSpec
from recsys.data.tables import read_interactions_eager
from recsys.data.tasks import UserLog
from recsys.errors import DataError
from recsys.utils.io import check_input_file

log = logging.getLogger(__name__)


@dataclass
class StreamedLog:
    """What :func:`stream_user_log` returns: the grouped log and its id mappings."""

    log: UserLog
    items: IdIndex
    rows_read: int
    duplicates_dropped: int


def scan_log(path: str | Path, columns: dict[str, str] | None = None, separator: str = ",") -> pl.LazyFrame:
    """A lazy frame in the canonical schema (ids as read, rating Float32, timestamp Int64)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    cols = columns or {USER: USER, ITEM: ITEM, RATING: RATING, TIMESTAMP: TIMESTAMP}
    check_input_file(path, "interactions file", None)  # regular files only (streamed: no size cap)
    if path.suffix.lower() in (".parquet", ".pq"):
        lf = pl.scan_parquet(path)
    else:
        sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else separator
        # ids as written (strings): column_ids decides integers or strings once collected
        ids_as_text = {cols[k]: pl.String for k in (USER, ITEM) if k in cols}
        lf = pl.scan_csv(path, separator=sep, infer_schema_length=10_000, schema_overrides=ids_as_text)
    names = lf.collect_schema().names()
    missing = [c for k, c in cols.items() if k in (USER, ITEM) and c not in names]
    if missing:
        raise DataError("missing column", path=str(path), field=missing[0], expected=f"one of {names}")
    exprs = [pl.col(cols[USER]).alias(USER), pl.col(cols[ITEM]).alias(ITEM)]
    if cols.get(RATING) in names:
        exprs.append(pl.col(cols[RATING]).cast(pl.Float32, strict=False).alias(RATING))
    if cols.get(TIMESTAMP) in names:
        exprs.append(pl.col(cols[TIMESTAMP]).cast(pl.Int64, strict=False).alias(TIMESTAMP))
    return lf.select(exprs)


def _ids_as_given(frame: pl.DataFrame) -> pl.DataFrame:
    """User and item ids by the rule of :mod:`recsys.data.ids` (as the eager readers keep them)."""
    return frame.with_columns(column_ids(frame[USER]).alias(USER), column_ids(frame[ITEM]).alias(ITEM))


def collect_deduplicated(
    path: str | Path,
    columns: dict[str, str] | None = None,
    *,
    rating_scale: tuple[float, float] | None = None,
    separator: str = ",",
) -> tuple[pl.DataFrame, int]:
    """(canonical frame without duplicate (user, item) pairs, rows read), validated.

    One streaming pass reads the file and drops duplicates (the latest timestamp wins); validation then
    runs on the collected columns. On a bad value the eager reader re-reads the file to name the line.
    """
    lf = scan_log(path, columns, separator)
    schema = lf.collect_schema()
    has_time = TIMESTAMP in schema
    rows = lf.select(pl.len()).collect(engine="streaming").item()
    if has_time:
        lf = lf.sort(TIMESTAMP, maintain_order=True)
    frame = lf.unique(subset=[USER, ITEM], keep="last", maintain_order=False).collect(engine="streaming")
    frame = _ids_as_given(frame)
    _validate(frame, path, columns, rating_scale, separator)
    return frame, int(rows)


def _validate(frame: pl.DataFrame, path, columns, rating_scale, separator) -> None:
    """Raise the eager reader's line-level error where ``frame`` holds a null id, rating or time."""
    checks = {"user": frame[USER].null_count(), "item": frame[ITEM].null_count()}
    if RATING in frame.columns:
        r = frame[RATING]
        bad = r.is_null() | r.is_nan()
        if rating_scale is not None:
            bad = bad | (r < rating_scale[0]) | (r > rating_scale[1])
        checks["rating"] = int(bad.sum())
    if TIMESTAMP in frame.columns:
        checks["timestamp"] = frame[TIMESTAMP].null_count()
    problems = {k: v for k, v in checks.items() if v}
    if problems:
        cols = columns or {c: c for c in frame.columns}
        read_interactions_eager(
            TableSpec(path=str(path), columns=cols, separator=separator),
            None,
            rating_scale=rating_scale,
        )
        raise DataError(f"invalid values ({problems})", path=str(path))


def stream_user_log(
    path: str | Path,
    columns: dict[str, str] | None = None,
    *,
    rating_scale: tuple[float, float] | None = None,
    separator: str = ",",
) -> StreamedLog:
    """Ingest, validate, de-duplicate and encode a large log into a :class:`UserLog`.

    The streaming engine reads the four canonical columns; ids become dense int32 codes at once, so
    de-duplication (the latest timestamp wins, then the later row) and the sort by user and time run
    on a compact integer table instead of the raw ids.
    """
    frame = _ids_as_given(scan_log(path, columns, separator).collect(engine="streaming"))
    rows = frame.height
    _validate(frame, path, columns, rating_scale, separator)
    has_rating, has_time = RATING in frame.columns, TIMESTAMP in frame.columns
    user_ids = frame[USER].unique().sort()
    item_ids = frame[ITEM].unique().sort()
    encoded = pl.DataFrame(
        {
            "u": frame[USER].rank("dense").cast(pl.Int32) - 1,
            "i": frame[ITEM].rank("dense").cast(pl.Int32) - 1,
        }
    )
    if has_rating:
        encoded = encoded.with_columns(frame[RATING])
    if has_time:
        encoded = encoded.with_columns(frame[TIMESTAMP])
    del frame
    # duplicates of a (user, item) pair sit together after this stable sort, the one to keep last
    encoded = encoded.sort(["u", "i", TIMESTAMP] if has_time else ["u", "i"], maintain_order=True)
    last = (pl.col("u") != pl.col("u").shift(-1)) | (pl.col("i") != pl.col("i").shift(-1))
    encoded = encoded.filter(last.fill_null(True))
    if has_time:
        encoded = encoded.sort(["u", TIMESTAMP], maintain_order=True)
    counts = np.bincount(encoded["u"].to_numpy(), minlength=len(user_ids))
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    ratings = (
        encoded[RATING].to_numpy().astype(np.float32) if has_rating else np.ones(encoded.height, np.float32)
    )
    times = encoded[TIMESTAMP].to_numpy() if has_time else None
    user_log = UserLog(user_ids, indptr, encoded["i"].to_numpy().astype(np.int64), ratings, times)
    return StreamedLog(user_log, IdIndex(item_ids), int(rows), int(rows) - encoded.height)
