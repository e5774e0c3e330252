"""Requests: new users' ratings as a table, encoded and scored to top-N, vectorised over users.

Shared by the front (:meth:`ColdStartRecommender.recommend_batch <recsys.recommender.ColdStartRecommender>`
over a table), ``recsys recommend-batch`` and the pyfunc model; it takes the recommender as an argument and
imports it only for type checking, so the front can import it.

The input is one row per (user, rated item): a user key column (``user_id`` by default), ``item_id``,
``rating`` and, optionally, the model's user-feature columns (the first non-null value per user is
used). A row whose ``item_id`` and ``rating`` are both null declares a user with no ratings (pure cold
start, features only). The output has one row per user and rank: the user key, ``rank`` (1 = best),
``item_id``, ``score`` (predicted rating) and ``title`` when the catalogue has titles.

Validation is vectorised (no Python loop per rating): every problem is a
:class:`~recsys.errors.ScoringInputError` (or :class:`~recsys.errors.UnknownItemError`) naming the row,
the user and the item.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.data.frames import to_polars
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.errors import FeatureMismatchError, ScoringInputError, UnknownItemError, shown
from recsys.metrics.topk import exclusion_mask, top_n
from recsys.utils.progress import progress

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("rank", ITEM, "score", "title")
IGNORED_COLUMNS = (TIMESTAMP, "title")


@dataclass
class EncodedRequests:
    """New users' ratings as padded catalogue indices, ready to score."""

    user_ids: pl.Series
    """One entry per user, in order of first appearance in the input."""
    items: np.ndarray
    """[n_users, S] catalogue indices, -1 = padding."""
    ratings: np.ndarray
    """[n_users, S] ratings (0 at padding)."""
    features: list[dict[str, Any] | None] | None
    """Per-user feature dicts (None when the input has no feature columns)."""
    unknown_items: int = 0
    """Ratings of items the model does not know (skipped with ``on_unknown='ignore'``)."""

    def __len__(self) -> int:
        return len(self.user_ids)


def _row_hint(frame: pl.DataFrame, mask: pl.Series, user_col: str, what: str) -> str:
    bad = frame.filter(mask)
    first = bad.row(0, named=True)
    return (
        f"{bad.height} row(s) with {what}; first: row {first['_row']}, user {shown(first[user_col])}"
        + (f", item {shown(first[ITEM])}" if ITEM in first else "")
        + (f", rating {shown(first[RATING])}" if RATING in first else "")
    )


def encode_frame(
    rec: ColdStartRecommender,
    frame: Any,
    *,
    user_col: str = USER,
    on_unknown: str = "error",
) -> EncodedRequests:
    """Validate a ratings table and turn it into padded arrays (see the module docstring)."""
    rec._require_fitted()
    if on_unknown not in ("error", "ignore"):
        raise ScoringInputError(f"on_unknown must be 'error' or 'ignore', got {shown(on_unknown)}")
    if not isinstance(user_col, str):
        raise ScoringInputError(f"user_col must be a column name, got {shown(user_col)}")
    if frame is not None and not isinstance(frame, pl.DataFrame) and type(frame).__name__ != "DataFrame":
        raise ScoringInputError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")
    try:
        frame = to_polars(frame)
    except Exception as exc:  # pandas -> Arrow conversion: mixed types in a column, duplicate names...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ScoringInputError(f"cannot read the ratings table ({type(exc).__name__}: {first})") from None
    if frame is None or frame.height == 0:
        raise ScoringInputError("no ratings given: the input table is empty")
    space = rec.space
    missing = [c for c in (user_col, ITEM) if c not in frame.columns]
    if RATING not in frame.columns and not space.implicit:
        missing.append(RATING)
    if missing:
        raise ScoringInputError(
            f"the ratings table needs column(s) {missing}; got {shown(frame.columns, 200)} "
            f"(one row per rating: {user_col}, {ITEM}, {RATING}, optional user features)"
        )
    feature_names = [f.name for f in space.user_encoder.fields]
    extra = [c for c in frame.columns if c not in (user_col, ITEM, RATING, *IGNORED_COLUMNS)]
    unknown_cols = [c for c in extra if c not in feature_names]
    if unknown_cols:
        raise FeatureMismatchError(
            f"unknown column(s) {shown(unknown_cols, 200)}; the model's user features are {feature_names}"
        )
    feats = [c for c in feature_names if c in frame.columns]
    for col, what in ((user_col, "user keys"), (ITEM, "item ids"), (RATING, "ratings")):
        dtype = frame.schema.get(col)
        if dtype is not None and (dtype.is_nested() or dtype == pl.Object):
            raise ScoringInputError(
                f"column {col!r} must hold {what}, one per row; got values of type {dtype}"
            )

    if RATING not in frame.columns:
        frame = frame.with_columns(pl.lit(1.0).alias(RATING))
    frame = frame.with_row_index("_row")
    if frame[user_col].null_count():
        raise ScoringInputError(_row_hint(frame, frame[user_col].is_null(), user_col, f"no {user_col}"))
    raw_rating = frame[RATING]
    if raw_rating.dtype == pl.Boolean or not (raw_rating.dtype.is_numeric() or raw_rating.dtype == pl.Null):
        # the API's rule (recsys.recommender.check_rating): numbers only, so "5" or true is not a rating
        if raw_rating.is_not_null().any():
            raise ScoringInputError(
                _row_hint(frame, raw_rating.is_not_null(), user_col, "a rating that is not a number")
            )
        raw_rating = pl.Series(RATING, [None] * len(raw_rating), dtype=pl.Float64)
    frame = frame.with_columns(raw_rating.cast(pl.Float64).alias(RATING))

    item_null = frame[ITEM].is_null()
    rating_null = frame[RATING].is_null()
    if (item_null & ~rating_null).any():
        raise ScoringInputError(_row_hint(frame, item_null & ~rating_null, user_col, "a rating but no item"))
    rating_missing = ~item_null & (rating_null | frame[RATING].is_nan().fill_null(False))
    if rating_missing.any():
        raise ScoringInputError(_row_hint(frame, rating_missing, user_col, "a missing or NaN rating"))
    if frame[RATING].is_infinite().any():
        raise ScoringInputError(_row_hint(frame, frame[RATING].is_infinite(), user_col, "an infinite rating"))
    scale = space.rating_scale
    if scale is not None:
        off = ~item_null & ((frame[RATING] < scale[0]) | (frame[RATING] > scale[1])).fill_null(False)
        if off.any():
            raise ScoringInputError(
                _row_hint(frame, off, user_col, f"a rating outside the scale [{scale[0]:g}, {scale[1]:g}]")
            )

    users = frame.select(user_col).unique(maintain_order=True).with_row_index("_u")
    frame = frame.join(users, on=user_col, how="left", maintain_order="left")

    features = None
    if feats:
        agg = frame.group_by("_u").agg([pl.col(c).drop_nulls().first() for c in feats]).sort("_u").drop("_u")
        features = [{k: v for k, v in row.items() if v is not None} or None for row in agg.to_dicts()]

    rated = frame.filter(~item_null)
    idx = space.items.lookup(rated[ITEM]) if rated.height else np.zeros(0, np.int64)
    unknown = idx < 0
    n_unknown = int(unknown.sum())
    if n_unknown:
        if on_unknown == "error":
            bad_ids = rated.filter(pl.Series(unknown))[ITEM].unique(maintain_order=True).to_list()
            raise UnknownItemError(
                f"{n_unknown} rating(s) of {len(bad_ids)} unknown item id(s): {UnknownItemError.listing(bad_ids)}"
                " (params on_unknown='ignore' or --ignore-unknown skip them)"
            )
        log.warning("ignoring %d rating(s) of unknown item id(s)", n_unknown)
    rated = rated.with_columns(pl.Series("_idx", idx)).filter(pl.col("_idx") >= 0)
    # the same item rated twice by a user: the last rating counts (as in a dict)
    rated = rated.unique(subset=["_u", "_idx"], keep="last", maintain_order=True).sort(["_u", "_row"])

    n_users = users.height
    u = rated["_u"].to_numpy().astype(np.int64)
    counts = np.bincount(u, minlength=n_users)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    starts = np.cumsum(counts) - counts
    pos = np.arange(len(u)) - np.repeat(starts, counts)
    items = np.full((n_users, width), -1, dtype=np.int64)
    ratings = np.zeros((n_users, width), dtype=np.float32)
    items[u, pos] = rated["_idx"].to_numpy()
    ratings[u, pos] = rated[RATING].to_numpy().astype(np.float32)
    return EncodedRequests(users[user_col], items, ratings, features, n_unknown)


def recommend_frame(
    rec: ColdStartRecommender,
    frame: Any,
    *,
    n: int = 10,
    exclude_rated: bool = True,
    on_unknown: str = "error",
    user_col: str = USER,
    batch_size: int = 1024,
    show_progress: bool = False,
) -> pl.DataFrame:
    """Top-``n`` recommendations for every user of a ratings table (one row per user and rank)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ScoringInputError(f"n must be a positive integer, got {shown(n)}")
    if not isinstance(exclude_rated, (bool, np.bool_)):
        raise ScoringInputError(f"exclude_rated must be true or false, got {shown(exclude_rated)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ScoringInputError(f"batch_size must be a positive integer, got {shown(batch_size)}")
    enc = encode_frame(rec, frame, user_col=user_col, on_unknown=on_unknown)
    ids = rec.space.items.ids
    has_titles = any(t is not None for t in rec.space.titles)
    titles = pl.Series("title", rec.space.titles, dtype=pl.String) if has_titles else None
    parts: list[pl.DataFrame] = []
    bar = progress(
        total=len(enc), desc="scoring users", unit="user", **({} if show_progress else {"disable": True})
    )
    for start in range(0, len(enc), batch_size):
        sl = slice(start, min(len(enc), start + batch_size))
        feats = enc.features[sl] if enc.features is not None else None
        scores = rec.score_padded(enc.items[sl], enc.ratings[sl], feats, what="rank")
        exclude = exclusion_mask(enc.items[sl], scores.shape[1]) if exclude_rated else None
        top, top_scores = top_n(scores, int(n), exclude)
        keep = ~np.take_along_axis(exclude, top, axis=1) if exclude is not None else np.ones_like(top, bool)
        row_ix, col_ix = np.nonzero(keep)
        item_ix = top[row_ix, col_ix]
        # ranks count only the kept items of each row
        rank = np.cumsum(keep, axis=1)[row_ix, col_ix]
        part = pl.DataFrame(
            {
                user_col: enc.user_ids.slice(start, sl.stop - start).gather(row_ix),
                "rank": rank.astype(np.int64),
                ITEM: ids.gather(item_ix),
                "score": top_scores[row_ix, col_ix].astype(np.float64),
            }
        )
        if titles is not None:
            part = part.with_columns(titles.gather(item_ix))
        parts.append(part)
        bar.update(sl.stop - start)
    bar.close()
    return pl.concat(parts) if parts else pl.DataFrame()
