"""Readers for interaction logs and side-feature tables, built on polars.

Every reader validates what it reads and raises :class:`~recsys.errors.DataError` naming the file,
the line, the field and what was expected, instead of a stack trace from inside a library. Large
CSV/Parquet logs are scanned lazily and collected with polars' streaming engine
(:mod:`recsys.data.streaming`); the others are read in memory (:mod:`recsys.data.tables`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import polars as pl

from recsys.data.melu import read_melu_interactions
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.data.spec import FieldKind, FieldSpec, TableSpec
from recsys.data.streaming import collect_deduplicated
from recsys.data.tables import (
    ReadReport,
    _check_scalar,
    _converting,
    _ids,
    _is_utf8,
    _numeric,
    _require_columns,
    read_interactions_eager,
    read_raw,
    resolve,
)

log = logging.getLogger(__name__)


def read_interactions(
    spec: TableSpec,
    base_dir: str | Path | None = None,
    *,
    rating_scale: tuple[float, float] | None = None,
    implicit: bool = False,
    report: ReadReport | None = None,
    streaming: bool | None = None,
) -> pl.DataFrame:
    """Read an interaction log into the canonical schema, validated and de-duplicated.

    Duplicate (user, item) pairs keep the latest row by timestamp (the last in file order when there
    is no timestamp); how many were dropped is logged and recorded in ``report``.
    """
    if spec.format == "melu-json":
        return read_melu_interactions(spec, base_dir)
    path = resolve(spec.path, base_dir)
    cols = spec.columns or {USER: USER, ITEM: ITEM, RATING: RATING, TIMESTAMP: TIMESTAMP}
    if streaming is None:
        streaming = _worth_streaming(path, spec)
    if streaming and not implicit:
        frame, rows = collect_deduplicated(path, cols, rating_scale=rating_scale, separator=spec.separator)
        if report is not None:
            report.rows_read += rows
            report.duplicates_dropped += rows - frame.height
        return frame
    return read_interactions_eager(
        spec, base_dir, rating_scale=rating_scale, implicit=implicit, report=report
    )


STREAMING_MB_ENV = "RECSYS_STREAMING_MB"


def _worth_streaming(path: Path, spec: TableSpec) -> bool:
    """Large plain CSV/TSV/Parquet logs go through the lazy/streaming path
    (above ``$RECSYS_STREAMING_MB`` megabytes, default 256)."""
    if spec.format not in ("csv", "tsv", "parquet") or not path.exists():
        return False
    if spec.format != "parquet" and (
        not _is_utf8(spec.encoding) or not spec.header or len(spec.separator) != 1
    ):
        return False
    limit = float(os.environ.get(STREAMING_MB_ENV, "256"))
    return path.stat().st_size > limit * 2**20


def read_side_table(spec: TableSpec, base_dir: str | Path | None, key_name: str) -> pl.DataFrame:
    """Read a user or item table: the key column renamed to ``key_name`` plus one column per field.

    Categorical and text fields become strings, multi-valued fields lists of strings, numeric and
    dense fields floats (nulls where missing).
    """
    path = resolve(spec.path, base_dir)
    out = side_table_columns(read_raw(spec, base_dir), spec, path, key_name)
    n = out.height
    out = out.unique(subset=[key_name], keep="first", maintain_order=True)
    if out.height < n:
        log.warning(
            "%s: %d duplicate %s rows ignored (the first of each kept)", path, n - out.height, key_name
        )
    return out


def side_table_columns(frame: pl.DataFrame, spec: TableSpec, path: Path, key_name: str) -> pl.DataFrame:
    """:func:`read_side_table`'s columns of a table read by ``read_raw``, every row kept (duplicate
    keys too): the key renamed to ``key_name``, one column per field, values converted by kind."""
    key = spec.key or key_name
    _require_columns(frame, {key_name: key}, path, spec)
    for f in spec.fields:
        for column in f.from_flags or [f.column]:
            _require_columns(frame, {f.name: column}, path, spec)
    ids = frame[key]
    if spec.id_prefix and ids.dtype == pl.String:
        ids = ids.str.strip_prefix(spec.id_prefix)
    columns: dict[str, pl.Series] = {key_name: _ids(ids, path, key).alias(key_name)}
    for f in spec.fields:
        columns[f.name] = _field_values(frame, f, path, spec).alias(f.name)
    return pl.DataFrame(columns)


def _field_values(frame: pl.DataFrame, f: FieldSpec, path: Path, spec: TableSpec) -> pl.Series:
    """One field's values; a column of a type the field cannot hold is a DataError naming it."""
    for column in f.from_flags or [f.column]:
        raw = frame[column]
        lists_ok = f.kind is FieldKind.MULTI and not f.from_flags and isinstance(raw.dtype, pl.List)
        if not lists_ok:
            _check_scalar(raw, path, column, f"one {f.kind.value} value per row")
    with _converting(path, f.column, f"{f.kind.value} values"):
        return _field_values_unchecked(frame, f, path, spec)


def _field_values_unchecked(frame: pl.DataFrame, f: FieldSpec, path: Path, spec: TableSpec) -> pl.Series:
    if f.from_flags:
        flags = [frame[c].cast(pl.String).str.strip_chars() == "1" for c in f.from_flags]
        tokens = pl.DataFrame({c: s for c, s in zip(f.from_flags, flags, strict=True)})
        return tokens.select(
            pl.concat_list(
                [
                    pl.when(pl.col(c)).then(pl.lit(c)).otherwise(pl.lit(None, dtype=pl.String))
                    for c in f.from_flags
                ]
            ).list.drop_nulls()
        ).to_series()
    raw = frame[f.column]
    if f.kind in (FieldKind.NUMERIC, FieldKind.DENSE):
        if f.null_values and raw.dtype == pl.String:
            frame = frame.with_columns(pl.col(f.column).replace(f.null_values, None))
        return _numeric(frame, f.column, path, spec, f.column, required=False)
    if f.kind is FieldKind.MULTI:
        if raw.dtype == pl.List(pl.String):
            tokens = raw
        elif isinstance(raw.dtype, pl.List):
            tokens = raw.cast(pl.List(pl.String))
        else:
            tokens = raw.cast(pl.String).str.split(f.separator)
        if f.strip:
            tokens = tokens.list.eval(pl.element().str.strip_chars())
        if f.truncate:
            tokens = tokens.list.eval(pl.element().str.slice(0, f.truncate))
        drop = ["", *(f.null_values or [])]
        tokens = tokens.list.eval(pl.element().filter(~pl.element().is_in(drop)))
        if f.max_tokens:
            tokens = tokens.list.head(f.max_tokens)
        return tokens.fill_null([])
    values = raw.cast(pl.String).str.strip_chars()
    if f.truncate:
        values = values.str.slice(0, f.truncate)
    return values.replace(["", *(f.null_values or [])], None)


def is_finite(x: float) -> bool:
    return x is not None and not (isinstance(x, float) and (math.isnan(x) or math.isinf(x)))
