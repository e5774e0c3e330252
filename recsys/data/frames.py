"""User-supplied frames at the edge: polars, or pandas converted to polars (pandas only at the edges)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recsys.data.schema import ITEM, USER


def to_polars(frame: Any) -> pl.DataFrame | None:
    """Accept polars or pandas frames (pandas only at the edges)."""
    if frame is None or isinstance(frame, pl.DataFrame):
        return frame
    try:
        import pandas as pd

        if isinstance(frame, pd.DataFrame):
            return pl.from_pandas(_mixed_ids_as_strings(frame))
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NAType"


def _mixed_ids_as_strings(frame: Any) -> Any:
    """A pandas frame whose id columns (``user_id``, ``item_id``) are object columns mixing integers
    and strings, with those columns as strings (integers by their ``str()``, the id rule of
    :mod:`recsys.data.ids`); Arrow cannot convert such columns. Other frames are returned as they are."""
    if not frame.columns.is_unique:
        return frame
    mixed = {}
    for col in (USER, ITEM):
        if col in frame.columns and frame[col].dtype == object:
            values = frame[col].tolist()
            kinds = {type(v) for v in values if not _missing(v)}
            ids = all(
                issubclass(k, (int, np.integer, str)) and not issubclass(k, (bool, np.bool_)) for k in kinds
            )
            if len(kinds) > 1 and ids:
                mixed[col] = [None if _missing(v) else v if isinstance(v, str) else str(v) for v in values]
    return frame.assign(**mixed) if mixed else frame
