"""Reading one table file, built on polars: raw reads, column checks and conversions, the in-memory
interaction reader (:mod:`recsys.data.readers` chooses the interaction reader and reads side tables).

Every reader validates what it reads and raises :class:`~recsys.errors.DataError` naming the file,
the line, the field and what was expected, instead of a stack trace from inside a library. Large
CSV/Parquet logs are scanned lazily and collected with polars' streaming engine.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.ids import column_ids
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.data.spec import TableSpec
from recsys.errors import DataError
from recsys.utils import io as io_utils
from recsys.utils.io import check_input_file, read_bytes_bounded

log = logging.getLogger(__name__)

ROW = "__row"  # 0-based data row, to report line numbers


@dataclass
class ReadReport:
    """What a reader noticed while reading (reported to the user, never silently dropped)."""

    rows_read: int = 0
    duplicates_dropped: int = 0


def resolve(path: str, base_dir: str | Path | None) -> Path:
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8")


def _line_of(spec: TableSpec, row: int) -> int:
    """1-based file line of a 0-based data row (exact for files without multi-line quoted fields)."""
    return row + 1 + (1 if spec.header and spec.format != "parquet" else 0)


def _check_utf8(path: Path, data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"byte 0x{data[exc.start]:02x} is not valid UTF-8",
            path=str(path),
            line=line,
            expected="UTF-8 text (for Latin-1 files set encoding = 'latin-1' in the spec)",
        ) from None


def _locate_ragged(path: Path, text: str, spec: TableSpec) -> DataError:
    """Find the first line whose field count differs from the header (error path only)."""
    quote = spec.quote_char or None
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=spec.separator, quotechar=quote, quoting=csv.QUOTE_MINIMAL
    )
    expected = None
    try:
        for row in reader:
            if not row:
                continue
            if expected is None:
                expected = len(spec.names) if (spec.names and not spec.header) else len(row)
                if spec.header:
                    continue
            if len(row) != expected:
                return DataError(
                    "wrong number of fields",
                    path=str(path),
                    line=reader.line_num,
                    expected=f"{expected} fields separated by {spec.separator!r}",
                    got=f"{len(row)} fields",
                )
    except csv.Error as exc:  # a stray quote or carriage return: the line is garbled
        return DataError(
            f"garbled line ({exc})",
            path=str(path),
            line=reader.line_num,
            expected=f"delimited text separated by {spec.separator!r}",
        )
    return DataError(
        "could not be parsed as delimited text", path=str(path), expected=f"separator {spec.separator!r}"
    )


def read_raw(spec: TableSpec, base_dir: str | Path | None = None) -> pl.DataFrame:
    """Read a table as written, all columns as strings (lists kept for Parquet), plus a row index."""
    path = resolve(spec.path, base_dir)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if path.is_dir():
        raise DataError("is a directory, expected a file", path=str(path))
    # a regular file of bounded size: a FIFO, /dev/zero or a huge file is refused before reading
    check_input_file(path, "input table", io_utils.MAX_INPUT_BYTES)
    if spec.format == "parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for damaged files
            raise DataError(
                f"not a readable Parquet file ({type(exc).__name__}: {exc})", path=str(path)
            ) from None
        return frame.with_row_index(ROW)
    data = read_bytes_bounded(path, "input table", io_utils.MAX_INPUT_BYTES, error=DataError)
    if not data.strip():
        raise DataError("file is empty", path=str(path), expected="at least one row")
    if _is_utf8(spec.encoding):
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        _check_utf8(path, data)
        text = data.decode("utf-8")
    else:
        text = data.decode("latin-1")
    if spec.format == "dat":
        return _read_dat(path, text, spec)
    try:
        frame = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            separator=spec.separator,
            has_header=spec.header,
            new_columns=None if spec.header else spec.names,
            infer_schema=False,
            quote_char=spec.quote_char,
        )
    except pl.exceptions.PolarsError:
        raise _locate_ragged(path, text, spec) from None
    if frame.height == 0:
        raise DataError("file has a header but no rows", path=str(path), expected="at least one row")
    if not spec.header and spec.names and frame.width != len(spec.names):
        raise DataError(
            "wrong number of columns",
            path=str(path),
            expected=f"{len(spec.names)} ({spec.names})",
            got=frame.width,
        )
    return frame.with_row_index(ROW)


def _read_dat(path: Path, text: str, spec: TableSpec) -> pl.DataFrame:
    """Lines split on a (possibly multi-character) separator, such as MovieLens' ``::``."""
    lines = text.splitlines()
    header = None
    start = 0
    if spec.header:
        header = lines[0].split(spec.separator)
        start = 1
    names = header or spec.names
    if not names:
        raise DataError("a file without header needs 'names' in its spec", path=str(path))
    rows = pl.DataFrame({"line": lines[start:]}).with_row_index(ROW)
    rows = rows.filter(pl.col("line").str.strip_chars() != "")
    if rows.height == 0:
        raise DataError("file has no rows", path=str(path), expected="at least one row")
    parts = rows.select(ROW, pl.col("line").str.split(spec.separator).alias("parts"))
    counts = parts.select(pl.col("parts").list.len()).to_series()
    bad = (counts != len(names)).arg_true()
    if len(bad):
        r = int(bad[0])
        raise DataError(
            "wrong number of fields",
            path=str(path),
            line=int(parts[ROW][r]) + 1 + start,
            expected=f"{len(names)} fields separated by {spec.separator!r}",
            got=f"{int(counts[r])} fields: {lines[int(parts[ROW][r]) + start][:60]!r}",
        )
    return parts.select(ROW, *[pl.col("parts").list.get(i).alias(name) for i, name in enumerate(names)])


def _require_columns(frame: pl.DataFrame, wanted: dict[str, str], path: Path, spec: TableSpec) -> None:
    have = [c for c in frame.columns if c != ROW]
    for canonical, column in wanted.items():
        if column not in frame.columns:
            hint = ""
            if len(have) == 1:
                for sep in ("\t", ",", ";", "|", "::"):
                    if sep != spec.separator and sep in have[0]:
                        hint = f" (the header looks separated by {sep!r}, not {spec.separator!r})"
                        break
            raise DataError(
                f"missing column{hint}",
                path=str(path),
                field=column,
                expected=f"a column '{column}' for {canonical}; the file has {have}",
            )


def _first_bad(frame: pl.DataFrame, mask: pl.Series) -> int | None:
    idx = mask.arg_true()
    return int(idx[0]) if len(idx) else None


def _unsupported_type(dtype: pl.DataType) -> bool:
    """Column types no field can hold: nested values (lists, structs), binary blobs, durations, times."""
    return dtype.is_nested() or dtype in (pl.Binary, pl.Object, pl.Time) or isinstance(dtype, pl.Duration)


@contextlib.contextmanager
def _converting(path: Path, field_name: str, expected: str) -> Iterator[None]:
    """Turn a failed polars conversion of a column into a DataError naming the file and the field."""
    try:
        yield
    except DataError:
        raise
    except (pl.exceptions.PolarsError, ValueError, TypeError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot read the column ({first[:120]})", path=str(path), field=field_name, expected=expected
        ) from None


def _check_scalar(raw: pl.Series, path: Path, field_name: str, expected: str) -> None:
    if _unsupported_type(raw.dtype):
        raise DataError(
            "unsupported column type", path=str(path), field=field_name, expected=expected, got=raw.dtype
        )


def _ids(raw: pl.Series, path: Path, field_name: str) -> pl.Series:
    expected = "integer or string ids"
    _check_scalar(raw, path, field_name, expected)
    with _converting(path, field_name, expected):
        return _cast_ids(raw)


def _cast_ids(series: pl.Series) -> pl.Series:
    """Keep ids as given: integers when every value is a canonical integer, strings (as written)
    otherwise (the rule of :mod:`recsys.data.ids`: ``"007"`` and ``"7"`` stay two ids)."""
    if series.dtype == pl.String:
        padded = int((series.str.strip_chars() != series).sum())
        if padded:
            log.warning(
                "%s: %d id(s) with leading or trailing spaces, kept as given (so ' 8' is not 8)",
                series.name,
                padded,
            )
    return column_ids(series)


def _numeric(
    frame: pl.DataFrame, column: str, path: Path, spec: TableSpec, field_name: str, *, required: bool
) -> pl.Series:
    raw = frame[column]
    if _unsupported_type(raw.dtype) or raw.dtype.is_temporal():
        raise DataError(
            "unsupported column type", path=str(path), field=field_name, expected="numbers", got=raw.dtype
        )
    if raw.dtype.is_numeric():
        with _converting(path, field_name, "numbers"):
            values = raw.cast(pl.Float64)
    else:
        values = raw.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        bad = _first_bad(
            frame, values.is_null() & raw.is_not_null() & (raw.cast(pl.String).str.strip_chars() != "")
        )
        if bad is not None:
            raise DataError(
                "not a number",
                path=str(path),
                line=_line_of(spec, int(frame[ROW][bad])),
                field=field_name,
                expected="a number",
                got=raw[bad],
            )
    if required:
        bad = _first_bad(frame, values.is_null())
        if bad is not None:
            raise DataError(
                "missing value (truncated line?)",
                path=str(path),
                line=_line_of(spec, int(frame[ROW][bad])),
                field=field_name,
                expected="a number",
            )
    bad = _first_bad(frame, values.is_nan().fill_null(False) | values.is_infinite().fill_null(False))
    if bad is not None:
        raise DataError(
            "not a finite number",
            path=str(path),
            line=_line_of(spec, int(frame[ROW][bad])),
            field=field_name,
            expected="a finite number",
            got=raw[bad],
        )
    return values


def read_interactions_eager(
    spec: TableSpec,
    base_dir: str | Path | None = None,
    *,
    rating_scale: tuple[float, float] | None = None,
    implicit: bool = False,
    report: ReadReport | None = None,
) -> pl.DataFrame:
    """Read a CSV/TSV/Parquet/``.dat`` interaction log in memory (see
    :func:`recsys.data.readers.read_interactions`, which also dispatches to the MeLU and streaming readers).

    Long on purpose: the column-by-column checks of one table in reading order (ids, ratings, scale, float
    range, timestamps, de-duplication), each raising with the file and line."""
    path = resolve(spec.path, base_dir)
    cols = spec.columns or {USER: USER, ITEM: ITEM, RATING: RATING, TIMESTAMP: TIMESTAMP}
    frame = read_raw(spec, base_dir)
    required = {k: v for k, v in cols.items() if k in (USER, ITEM)}
    if USER not in cols or ITEM not in cols:
        raise DataError("the spec must map user_id and item_id to columns", path=str(path))
    _require_columns(frame, required, path, spec)
    optional_present = {k: v for k, v in cols.items() if k in (RATING, TIMESTAMP) and v in frame.columns}
    if spec.columns:  # explicitly mapped optional columns must exist
        _require_columns(frame, {k: v for k, v in cols.items() if k in (RATING, TIMESTAMP)}, path, spec)

    out: dict[str, pl.Series] = {}
    for canonical in (USER, ITEM):
        column = cols[canonical]
        raw = frame[column]
        empty = raw.is_null()
        if raw.dtype == pl.String:
            empty = empty | (raw.str.strip_chars() == "")
        bad = _first_bad(frame, empty)
        if bad is not None:
            raise DataError(
                "missing id (truncated line?)",
                path=str(path),
                line=_line_of(spec, int(frame[ROW][bad])),
                field=column,
                expected="a non-empty id",
            )
        ids = raw
        if spec.id_prefix and ids.dtype == pl.String:
            ids = ids.str.strip_prefix(spec.id_prefix)
        out[canonical] = _ids(ids, path, column).alias(canonical)

    if RATING in optional_present and not implicit:
        ratings = _numeric(
            frame, optional_present[RATING], path, spec, optional_present[RATING], required=True
        )
        if rating_scale is not None:
            lo, hi = rating_scale
            bad = _first_bad(frame, (ratings < lo) | (ratings > hi))
            if bad is not None:
                raise DataError(
                    "rating outside the declared scale",
                    path=str(path),
                    line=_line_of(spec, int(frame[ROW][bad])),
                    field=optional_present[RATING],
                    expected=f"a rating in [{lo:g}, {hi:g}]",
                    got=frame[optional_present[RATING]][bad],
                )
        bad = _first_bad(frame, ratings.abs() > np.finfo(np.float32).max)
        if bad is not None:
            raise DataError(
                "rating too large",
                path=str(path),
                line=_line_of(spec, int(frame[ROW][bad])),
                field=optional_present[RATING],
                expected="a rating that fits a 32-bit float",
                got=frame[optional_present[RATING]][bad],
            )
        out[RATING] = ratings.cast(pl.Float32).alias(RATING)
    if TIMESTAMP in optional_present:
        out[TIMESTAMP] = _timestamps(frame, optional_present[TIMESTAMP], path, spec)

    result = pl.DataFrame(out)
    n = result.height
    result = dedupe_interactions(result)
    dropped = n - result.height
    if dropped:
        log.warning("%s: dropped %d duplicate (user, item) rows, keeping the latest of each", path, dropped)
    if report is not None:
        report.rows_read += n
        report.duplicates_dropped += dropped
    return result


def _timestamps(frame: pl.DataFrame, column: str, path: Path, spec: TableSpec) -> pl.Series:
    raw = frame[column]
    dates = None
    if raw.dtype in (pl.Date,) or isinstance(raw.dtype, pl.Datetime):
        dates = raw.cast(pl.Datetime("us"))
    elif raw.dtype == pl.String:
        numeric = raw.str.strip_chars().cast(pl.Float64, strict=False)
        if numeric.null_count() > raw.null_count():
            try:
                parsed = raw.str.to_datetime(strict=False, time_unit="us")
            except pl.exceptions.PolarsError:  # no date format fits: reported as "not a number" below
                parsed = None
            if parsed is not None and parsed.null_count() == raw.null_count():
                dates = parsed
    if dates is not None:
        bad = _first_bad(frame, dates.is_null())
        if bad is not None:
            raise DataError(
                "missing value (truncated line?)",
                path=str(path),
                line=_line_of(spec, int(frame[ROW][bad])),
                field=column,
                expected="a timestamp",
            )
        return dates.dt.epoch("s").alias(TIMESTAMP)
    values = _numeric(frame, column, path, spec, column, required=True)
    bad = _first_bad(frame, values.abs() >= 2.0**62)
    if bad is not None:
        raise DataError(
            "timestamp out of range",
            path=str(path),
            line=_line_of(spec, int(frame[ROW][bad])),
            field=column,
            expected="seconds since 1970 (or an ISO date)",
            got=raw[bad],
        )
    return values.cast(pl.Int64).alias(TIMESTAMP)


def dedupe_interactions(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep the latest row of each (user, item) pair; file order is the tie-breaker."""
    if TIMESTAMP in frame.columns:
        frame = frame.with_row_index("__order").sort([TIMESTAMP, "__order"]).drop("__order")
    return frame.unique(subset=[USER, ITEM], keep="last", maintain_order=True)
