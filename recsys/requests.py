"""Requests: new users' ratings as a table, encoded and scored to top-N, vectorised over users.

Shared by the front (:meth:`ColdStartRecommender.recommend_batch <recsys.recommender.ColdStartRecommender>`
over a table), ``recsys recommend-batch`` and the pyfunc model; it takes the recommender as an argument and
imports it only for type checking, so the front can import it.

The input is one row per (user, rated item): a user key column (``user_id`` by default), ``item_id``,
``rating`` and, optionally, the model's user-feature columns (the first non-null value per user is
used). A row whose ``item_id`` and ``rating`` are both null declares a user with no ratings (pure cold
start, features only). The output has one row per user and rank: the user key, ``rank`` (1 = best),
``item_id``, ``score`` (what orders the list), ``predicted_rating`` when the model predicts ratings and
``title`` when the catalogue has titles (:mod:`recsys.candidates`). ``items``, ``exclude`` and ``where``
narrow the candidates of every user before top-N.

Validation is vectorised (no Python loop per rating): every problem is a
:class:`~recsys.errors.ScoringInputError` (or :class:`~recsys.errors.UnknownItemError`) naming the row,
the user and the item.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.candidates import Ranked, candidate_mask, has_titles, rank_padded
from recsys.data.frames import to_polars
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.errors import FeatureMismatchError, ScoringInputError, UnknownItemError, shown
from recsys.utils.progress import progress

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("rank", ITEM, "score", "predicted_rating", "title")
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


def check_on_unknown(on_unknown: Any) -> None:
    if on_unknown not in ("error", "ignore"):
        raise ScoringInputError(f"on_unknown must be 'error' or 'ignore', got {shown(on_unknown)}")


def check_rating(user: Any, item: Any, value: Any, scale: tuple[float, float] | None) -> float:
    """The API's rule for one rating of a new user: a number (not a boolean, not a string), finite, on
    the model's scale. Returns it as a float; anything else is a ScoringInputError naming the user and
    the item. The table path (:func:`encode_frame`) applies the same rule vectorised, and the REST
    gateway (recsys.tracking.gateway) applies it to the raw JSON values."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScoringInputError(
            f"user {shown(user)}: rating of item {shown(item)} is not a number: {shown(value)}"
        )
    try:
        v = float(value)
    except OverflowError:
        raise ScoringInputError(f"user {shown(user)}: rating of item {shown(item)} is too large") from None
    if not math.isfinite(v):
        raise ScoringInputError(f"user {shown(user)}: rating of item {shown(item)} is not finite: {v}")
    if scale is not None and not scale[0] <= v <= scale[1]:
        raise ScoringInputError(
            f"user {shown(user)}: rating {v:g} of item {shown(item)} is outside the scale "
            f"[{scale[0]:g}, {scale[1]:g}]"
        )
    return v


def pad_requests(
    user_of: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """Padded ``(items [n_users, S], ratings [n_users, S])`` from flat known ratings in input order.

    The one encoding step every entry point shares (rating dicts, tables, the pyfunc): a user who rates
    the same item twice keeps the last rating, and each user's items keep the order of their last
    occurrence; ``S`` is the most ratings any user has (at least 1); padding is item -1, rating 0."""
    user_of = np.asarray(user_of, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float32)
    # last occurrence of each (user, item): the first one met walking the input backwards
    keys = user_of * (int(items.max(initial=0)) + 1) + items
    _, first_rev = np.unique(keys[::-1], return_index=True)
    keep = np.sort(len(keys) - 1 - first_rev)
    keep = keep[np.argsort(user_of[keep], kind="stable")]
    u = user_of[keep]
    counts = np.bincount(u, minlength=n_users)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    pos = np.arange(len(u)) - np.repeat(np.cumsum(counts) - counts, counts)
    out_items = np.full((n_users, width), -1, dtype=np.int64)
    out_ratings = np.zeros((n_users, width), dtype=np.float32)
    out_items[u, pos] = items[keep]
    out_ratings[u, pos] = ratings[keep]
    return out_items, out_ratings


def encode_dicts(
    rec: ColdStartRecommender, requests: Any, on_unknown: str = "error"
) -> tuple[np.ndarray, np.ndarray]:
    """Padded (items [n, S], ratings [n, S]) of users' rating dicts (``{item_id: rating}``), validated
    by :func:`check_rating`; item ids by the catalogue's id rule (:mod:`recsys.data.ids`)."""
    check_on_unknown(on_unknown)
    if not is_list_like(requests):
        raise ScoringInputError(
            f"expected a list of rating dicts (one per user), got {type(requests).__name__}"
        )
    scale = rec.space.rating_scale
    user_of, idx_all, values_all = [], [], []
    for n, ratings in enumerate(requests):
        ratings = {} if ratings is None else ratings
        if not isinstance(ratings, dict):
            raise ScoringInputError(
                f"user {n}: ratings must be a dict item_id -> rating, got {type(ratings).__name__}"
            )
        keys = list(ratings.keys())
        values = [check_rating(n, key, ratings[key], scale) for key in keys]
        idx = rec._lookup(keys)
        unknown = [k for k, i in zip(keys, idx, strict=True) if i < 0]
        if unknown:
            if on_unknown == "error":
                raise UnknownItemError(
                    f"user {n}: {len(unknown)} unknown item id(s): {UnknownItemError.listing(unknown)}"
                    " (pass on_unknown='ignore' to skip them)"
                )
            log.warning("user %d: ignoring %d unknown item id(s)", n, len(unknown))
        known = idx >= 0
        user_of.append(np.full(int(known.sum()), n, dtype=np.int64))
        idx_all.append(idx[known])
        values_all.append(np.asarray(values, dtype=np.float32)[known] if keys else np.zeros(0, np.float32))
    flat = [np.concatenate(x) if x else np.zeros(0) for x in (user_of, idx_all, values_all)]
    return pad_requests(*flat, len(requests))


def rank_requests(
    rec: ColdStartRecommender,
    requests: Any,
    n: Any,
    user_features: Any,
    exclude_rated: Any,
    on_unknown: str,
    *,
    items: Iterable[Any] | None = None,
    exclude: Iterable[Any] | None = None,
    where: Mapping[str, Any] | None = None,
    with_predictions: bool = True,
) -> Ranked:
    """Rating dicts (``recommend_batch``'s arguments) checked, encoded and ranked among their candidates
    (``with_predictions``: as :func:`~recsys.candidates.rank_padded`)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ScoringInputError(f"n must be a positive integer, got {shown(n)}")
    if not isinstance(exclude_rated, (bool, np.bool_)):
        raise ScoringInputError(f"exclude_rated must be True or False, got {shown(exclude_rated)}")
    rec._require_fitted()
    allowed = candidate_mask(rec, items, exclude, where, on_unknown=on_unknown)
    if is_list_like(requests) and is_list_like(user_features) and len(user_features) != len(requests):
        raise ScoringInputError(f"{len(requests)} rating dicts but {len(user_features)} user-feature dicts")
    support, ratings = encode_dicts(rec, requests, on_unknown)
    return rank_padded(
        rec,
        support,
        ratings,
        user_features,
        n,
        exclude_rated=exclude_rated,
        allowed=allowed,
        with_predictions=with_predictions,
    )


def is_list_like(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


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
    check_on_unknown(on_unknown)
    if not isinstance(user_col, str):
        raise ScoringInputError(f"user_col must be a column name, got {shown(user_col)}")
    space = rec.space
    frame, feats = _checked_table(frame, space, user_col)
    frame = _checked_ratings(frame, space, user_col)
    item_null = frame[ITEM].is_null()
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
    known = ~unknown
    items, ratings = pad_requests(
        rated["_u"].to_numpy()[known], idx[known], rated[RATING].to_numpy()[known], users.height
    )
    return EncodedRequests(users[user_col], items, ratings, features, n_unknown)


def _checked_table(frame: Any, space: Any, user_col: str) -> tuple[pl.DataFrame, list[str]]:
    """The ratings table as polars with the columns a request needs, and the user-feature columns it has."""
    if frame is not None and not isinstance(frame, pl.DataFrame) and type(frame).__name__ != "DataFrame":
        raise ScoringInputError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")
    try:
        frame = to_polars(frame)
    except Exception as exc:  # pandas -> Arrow conversion: mixed types in a column, duplicate names...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ScoringInputError(f"cannot read the ratings table ({type(exc).__name__}: {first})") from None
    if frame is None or frame.height == 0:
        raise ScoringInputError("no ratings given: the input table is empty")
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
    for col, what in ((user_col, "user keys"), (ITEM, "item ids"), (RATING, "ratings")):
        dtype = frame.schema.get(col)
        if dtype is not None and (dtype.is_nested() or dtype == pl.Object):
            raise ScoringInputError(
                f"column {col!r} must hold {what}, one per row; got values of type {dtype}"
            )
    return frame, [c for c in feature_names if c in frame.columns]


def _checked_ratings(frame: pl.DataFrame, space: Any, user_col: str) -> pl.DataFrame:
    """:func:`check_rating`'s rule, vectorised: every rated row has a finite number on the scale
    (a row with neither item nor rating declares a user without ratings). Adds ``_row``."""
    if RATING not in frame.columns:
        frame = frame.with_columns(pl.lit(1.0).alias(RATING))
    frame = frame.with_row_index("_row")
    if frame[user_col].null_count():
        raise ScoringInputError(_row_hint(frame, frame[user_col].is_null(), user_col, f"no {user_col}"))
    raw_rating = frame[RATING]
    if raw_rating.dtype == pl.Boolean or not (raw_rating.dtype.is_numeric() or raw_rating.dtype == pl.Null):
        # numbers only, as check_rating: "5" or true is not a rating
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
    return frame


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
    items: Iterable[Any] | None = None,
    exclude: Iterable[Any] | None = None,
    where: Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """Top-``n`` recommendations for every user of a ratings table (one row per user and rank); ``items``,
    ``exclude`` and ``where`` narrow the candidates of every user (:func:`recsys.candidates.candidate_mask`)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ScoringInputError(f"n must be a positive integer, got {shown(n)}")
    if not isinstance(exclude_rated, (bool, np.bool_)):
        raise ScoringInputError(f"exclude_rated must be true or false, got {shown(exclude_rated)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ScoringInputError(f"batch_size must be a positive integer, got {shown(batch_size)}")
    rec._require_fitted()
    check_on_unknown(on_unknown)
    allowed = candidate_mask(rec, items, exclude, where, on_unknown=on_unknown)
    enc = encode_frame(rec, frame, user_col=user_col, on_unknown=on_unknown)
    parts: list[pl.DataFrame] = []
    bar = progress(
        total=len(enc), desc="scoring users", unit="user", **({} if show_progress else {"disable": True})
    )
    for start in range(0, len(enc), batch_size):
        sl = slice(start, min(len(enc), start + batch_size))
        feats = enc.features[sl] if enc.features is not None else None
        ranked = rank_padded(
            rec, enc.items[sl], enc.ratings[sl], feats, int(n), exclude_rated=exclude_rated, allowed=allowed
        )
        parts.append(_rows_frame(rec, ranked, enc.user_ids.slice(start, sl.stop - start), user_col))
        bar.update(sl.stop - start)
    bar.close()
    return pl.concat(parts) if parts else pl.DataFrame()


def _rows_frame(
    rec: ColdStartRecommender, ranked: Ranked, user_ids: pl.Series, user_col: str
) -> pl.DataFrame:
    """The output rows of one batch: the user key, then :data:`OUTPUT_COLUMNS` (``predicted_rating``
    only when the model predicts ratings, ``title`` only when the catalogue has titles)."""
    columns: dict[str, Any] = {
        user_col: user_ids.gather(ranked.request),
        "rank": ranked.rank,
        ITEM: rec.space.items.ids.gather(ranked.item),
        "score": ranked.score,
    }
    if ranked.predicted_rating is not None:
        columns["predicted_rating"] = ranked.predicted_rating
    if has_titles(rec):
        columns["title"] = pl.Series("title", rec.space.titles, dtype=pl.String).gather(ranked.item)
    return pl.DataFrame(columns)
