"""What a training log must hold before meta-training starts, and the quiet fixes it gets.

Checked up front so that a small, odd or degenerate log fails with one clear line (or trains) instead of
crashing deep inside task sampling:

* timestamps that are all equal (all 0 is common in exports) carry no order: the log is treated as one
  without timestamps, with a warning (:func:`drop_constant_timestamps`);
* ratings that are all the same value carry no rating signal: the log is treated as implicit feedback,
  with a warning (:func:`single_rating_value`);
* meta-learning needs users who are tasks (a support and a query: at least 2 ratings each) and a
  catalogue to rank (:func:`check_trainable`);
* a frame given to ``fit`` directly (not through the readers) has ids, numeric ratings on the scale and
  usable timestamps (:func:`check_training_frame`, :func:`check_timestamps`).
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.errors import DataError, shown

log = logging.getLogger(__name__)

MIN_TASK_USERS = 10
"""Fewest users with at least ``min_user_ratings`` ratings (each one a task) the meta-learner trains on.
Below this the log cannot teach adaptation: there are not enough tasks to learn from and to validate on."""

MIN_ITEMS = 2
"""Fewest distinct items: with one item there is nothing to rank and nothing to adapt."""


def drop_constant_timestamps(frame: pl.DataFrame, where: str = "interactions") -> pl.DataFrame:
    """``frame`` without its timestamp column when every timestamp is the same (they order nothing)."""
    if TIMESTAMP not in frame.columns or frame.height == 0:
        return frame
    if frame[TIMESTAMP].n_unique() > 1:
        return frame
    value = frame[TIMESTAMP][0]
    what = "no row has a timestamp" if value is None else f"every timestamp is the same ({value})"
    log.warning("%s: %s; treating the log as one without timestamps", where, what)
    return frame.drop(TIMESTAMP)


def single_rating_value(frame: pl.DataFrame) -> float | None:
    """The one rating value of a log whose ratings are all equal (None otherwise, or without ratings)."""
    if RATING not in frame.columns or frame.height == 0 or frame[RATING].n_unique() > 1:
        return None
    return float(frame[RATING][0])


def task_user_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """(user_id, n) for every user of the log."""
    return frame.group_by(USER).len(name="n")


def check_trainable(frame: pl.DataFrame, *, min_user_ratings: int = 2, context: str = "") -> None:
    """Raise one clear :class:`DataError` when ``frame`` is too small or too narrow to meta-train on.

    ``context`` says where the log came from (e.g. "after the temporal holdout") in the message."""
    where = f" {context}" if context else ""
    need = max(2, min_user_ratings)
    counts = task_user_counts(frame)["n"].to_numpy() if frame.height else np.zeros(0, np.int64)
    tasks = int((counts >= need).sum())
    n_items = frame[ITEM].n_unique() if frame.height else 0
    if frame.height == 0:
        raise DataError(f"the log{where} has no interactions to train on")
    if n_items < MIN_ITEMS:
        raise DataError(
            f"the log{where} has {n_items} distinct item(s); a recommender needs at least {MIN_ITEMS} "
            "items to rank"
        )
    if tasks < MIN_TASK_USERS:
        raise DataError(
            f"the log{where} has {tasks} user(s) with >= {need} ratings (of {len(counts)} users, "
            f"{frame.height} interactions); the meta-learner needs at least {MIN_TASK_USERS}: each user "
            "is a task with a support and a query. Log more users or more interactions per user "
            "(users with a single rating teach nothing about adapting)"
        )


def choose_validation_users(
    frame: pl.DataFrame, fraction: float, rng: np.random.Generator, *, min_ratings: int = 2
) -> pl.Series:
    """A seeded random ``fraction`` of the users who can be validation tasks (``min_ratings`` or more
    ratings), sorted by id; never all of them (at least one stays to train). When every user qualifies
    this is the same draw as a plain random ``fraction`` of all users."""
    counts = task_user_counts(frame).sort(USER)
    eligible = counts.filter(pl.col("n") >= max(2, min_ratings))[USER]
    n_val = round(fraction * len(eligible))
    n_val = max(0, min(n_val, len(eligible) - 1))
    picked = np.sort(rng.permutation(len(eligible))[:n_val])
    return eligible.gather(picked)


def check_timestamps(ts: pl.Series) -> None:
    """Timestamps of a frame given to ``fit``: numbers (seconds), integer strings, dates or datetimes;
    finite where present. Anything else is a DataError naming the column and the first bad row. No
    timestamp at all (every value missing) is a log without timestamps; some missing is an error."""
    missing = ts.is_null()
    if missing.any() and not missing.all():
        row = int(missing.arg_true()[0])
        raise DataError(
            f"interactions: {int(missing.sum())} timestamp(s) missing",
            field=TIMESTAMP,
            expected="a timestamp on every row (or none at all)",
            got=f"null at row {row}",
        )
    if ts.dtype.is_temporal() and not isinstance(ts.dtype, (pl.Duration, pl.Time)):
        return
    if ts.dtype.is_numeric() and ts.dtype != pl.Boolean:
        if not ts.dtype.is_float():
            return
        values = ts.cast(pl.Float64)
        bad, what = values.is_nan() | values.is_infinite(), "not finite"
    elif ts.dtype == pl.String:
        bad = ts.str.strip_chars().cast(pl.Int64, strict=False).is_null() & ts.is_not_null()
        what = "not whole seconds"
    else:
        raise DataError(
            "interactions: timestamps are not numbers or dates",
            field=TIMESTAMP,
            expected="seconds since 1970 (integers) or dates",
            got=str(ts.dtype),
        )
    bad = bad.fill_null(False)
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataError(
            f"interactions: {int(bad.sum())} timestamp(s) {what}",
            field=TIMESTAMP,
            expected="seconds since 1970 (integers) or dates",
            got=f"{shown(ts[row])} at row {row}",
        )


def check_training_frame(inter: pl.DataFrame, rating_scale: tuple[float, float] | None) -> None:
    """Interactions given to ``fit`` as a frame (not through the readers): ids present, ratings numbers,
    finite and on the scale. Errors name the first bad row."""
    for col in (USER, ITEM):
        nulls = inter[col].is_null()
        if nulls.any():
            raise DataError(
                f"interactions: {int(nulls.sum())} row(s) without {col}",
                field=col,
                expected="an id on every row",
                got=f"null at row {int(nulls.arg_true()[0])}",
            )
        if inter[col].dtype.is_nested() or inter[col].dtype in (pl.Binary, pl.Object):
            raise DataError(
                "interactions: unsupported id type",
                field=col,
                expected="integer or string ids",
                got=str(inter[col].dtype),
            )
        dtype = inter[col].dtype
        if dtype.is_float() or dtype.is_temporal() or dtype in (pl.Boolean, pl.Null) or dtype.is_decimal():
            raise DataError(
                "interactions: ids must be integers or strings (cast the column: "
                "integers are matched as integers, anything else as the exact string)",
                field=col,
                expected="integer or string ids",
                got=str(dtype),
            )
    if TIMESTAMP in inter.columns:
        check_timestamps(inter[TIMESTAMP])
    if RATING not in inter.columns:
        return
    r = inter[RATING]
    if r.dtype == pl.Boolean or not r.dtype.is_numeric():
        raise DataError(
            "interactions: ratings are not numbers", field=RATING, expected="numbers", got=str(r.dtype)
        )
    values = r.cast(pl.Float64)
    bad = values.is_null() | values.is_nan() | values.is_infinite()
    if rating_scale is not None:
        bad = bad | (values < rating_scale[0]) | (values > rating_scale[1])
    bad = bad.fill_null(True)
    if bad.any():
        row = int(bad.arg_true()[0])
        scale = f" in [{rating_scale[0]:g}, {rating_scale[1]:g}]" if rating_scale else ""
        raise DataError(
            f"interactions: {int(bad.sum())} rating(s) missing, not finite or off the scale",
            field=RATING,
            expected=f"a finite rating{scale}",
            got=f"{shown(r[row])} at row {row}",
        )
