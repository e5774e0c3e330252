"""The one rule for user and item ids given by callers (files, frames, API calls, REST requests).

Ids are kept as given. A catalogue (or a column) holds either integers or strings:

- an **integer** catalogue knows Python and numpy integers (not booleans) in the int64 range, and
  strings that are exactly the canonical decimal form of such an integer (ASCII digits, an optional
  leading ``-``, no leading zeros, no sign ``+``, no spaces or underscores: ``str(int(s)) == s``).
  ``"007"``, ``"+8"``, ``" 8"``, ``"7_8"``, ``"٧٨"`` (Arabic-Indic digits), ``"-0"`` or ``7.0`` are
  never integer ids: they are unknown;
- a **string** catalogue knows strings as given (case, spaces and all) and integers by their ``str()``.

Anything else (None, floats, booleans, tuples, bytes...) is never an id. The same rule holds for one
id or a million, in a dict or in a table: :func:`normalise_id` (one value) and :func:`normalise_ids`
(a polars Series, vectorised) are the two forms of it, and a test checks they agree.

Readers apply the same rule to a whole column (:func:`column_ids`): a column becomes integers only when
every value is a canonical integer; otherwise every value stays the string the file holds, so ``"007"``
and ``"7"`` are two different ids.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl

CANONICAL_INT = r"^(0|-?[1-9][0-9]*)$"
"""A canonical decimal integer (ASCII): what ``str(int(s)) == s`` accepts."""
_CANONICAL = re.compile(r"0|-?[1-9][0-9]*", re.ASCII)  # the same, for re.fullmatch
_MAX_DIGITS = 20  # int64 has at most 19 digits (plus a sign); longer strings are never int64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER_TYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


def is_integer_dtype(dtype: pl.DataType) -> bool:
    return dtype in _INTEGER_TYPES


def normalise_id(value: Any, integer: bool) -> int | str | None:
    """One caller-given id as a key of a catalogue of integers (``integer``) or strings; None when it
    cannot be an id of that catalogue (so it is unknown)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if not integer:
            return str(v)
        return v if INT64_MIN <= v <= INT64_MAX else None
    if isinstance(value, str):
        if not integer:
            return value
        if len(value) <= _MAX_DIGITS and _CANONICAL.fullmatch(value):
            v = int(value)
            return v if INT64_MIN <= v <= INT64_MAX else None
        return None
    return None


def normalise_ids(values: pl.Series, integer: bool) -> pl.Series:
    """:func:`normalise_id` for a whole Series: Int64 (``integer``) or String, null where unknown."""
    dtype = values.dtype
    if integer:
        if is_integer_dtype(dtype):
            return values.cast(pl.Int64, strict=False).alias("id")  # UInt64 above int64: null
        if dtype == pl.String:
            canonical = values.str.contains(CANONICAL_INT) & (values.str.len_bytes() <= _MAX_DIGITS)
            as_int = values.cast(pl.Int64, strict=False)  # out of range: null
            return pl.select(pl.when(canonical).then(as_int).otherwise(None)).to_series().alias("id")
        return pl.Series("id", [None] * len(values), dtype=pl.Int64)
    if dtype == pl.String:
        return values.alias("id")
    if is_integer_dtype(dtype):
        return values.cast(pl.String).alias("id")
    return pl.Series("id", [None] * len(values), dtype=pl.String)


def normalise_id_list(values: Any, integer: bool) -> pl.Series:
    """Ids given as a Python sequence (any mix of types), normalised value by value into a Series."""
    out = [normalise_id(v, integer) for v in values]
    return pl.Series("id", out, dtype=pl.Int64 if integer else pl.String)


def column_ids(series: pl.Series) -> pl.Series:
    """A column of ids read from a file or a frame, kept as given: Int64 when every (non-null) value is
    an integer or a canonical integer string in the int64 range; strings otherwise (every value as
    written, integers by their ``str()``; other types by polars' string form). UInt64 columns beyond
    int64 become strings."""
    dtype = series.dtype
    if is_integer_dtype(dtype):
        as_int = series.cast(pl.Int64, strict=False)
        return as_int if as_int.null_count() == series.null_count() else series.cast(pl.String)
    if dtype == pl.String:
        as_int = normalise_ids(series, integer=True)
        return as_int.alias(series.name) if as_int.null_count() == series.null_count() else series
    return series.cast(pl.String)


SMALL_LOOKUP = 256  # requests up to this many ids use a dict instead of a polars join


class IdIndex:
    """Raw ids (integers or strings, as the data gives them) <-> dense indices 0..n-1."""

    def __init__(self, ids: pl.Series) -> None:
        self.ids = ids.alias("id")
        self.dtype = ids.dtype
        # the keys callers' ids are matched against: Int64 for integer catalogues, strings otherwise
        self._integer = is_integer_dtype(ids.dtype)
        keys = ids.cast(pl.Int64 if self._integer else pl.String, strict=False).alias("id")
        self._frame = pl.DataFrame({"id": keys, "idx": np.arange(len(ids), dtype=np.int64)})
        self._dict: dict | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, values: pl.Series | list | np.ndarray) -> np.ndarray:
        """Indices of raw ids, -1 where unknown. Every value is matched by the one id rule of
        :mod:`recsys.data.ids`, whatever the number of values and however they are given."""
        if not isinstance(values, pl.Series) and len(values) <= SMALL_LOOKUP:
            return self._lookup_small(values)
        if isinstance(values, pl.Series):
            s = normalise_ids(values, self._integer)
        else:
            s = normalise_id_list(values, self._integer)
        joined = pl.DataFrame({"id": s}).join(self._frame, on="id", how="left", maintain_order="left")
        return joined["idx"].fill_null(-1).to_numpy().astype(np.int64)

    def _lookup_small(self, values) -> np.ndarray:
        """Dictionary lookups for a handful of ids (a scoring request), avoiding a polars join."""
        if self._dict is None:
            self._dict = dict(zip(self._frame["id"].to_list(), range(len(self.ids)), strict=True))
            self._dict.pop(None, None)
        out = np.empty(len(values), dtype=np.int64)
        for k, v in enumerate(values):
            key = normalise_id(v, self._integer)
            out[k] = -1 if key is None else self._dict.get(key, -1)
        return out

    def to_list(self) -> list:
        return self.ids.to_list()


def coerce_ids(values: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Ids as ``dtype`` by the one id rule (:mod:`recsys.data.ids`); values that are not ids of that
    type become null (so they are unknown)."""
    if values.dtype == dtype:
        return values.alias("id")
    return normalise_ids(values, is_integer_dtype(dtype)).cast(dtype, strict=False).alias("id")
