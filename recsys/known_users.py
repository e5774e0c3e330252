"""Users the model was trained on: a compact record of their logged interactions, kept with the model,
and recommendations for them by user id.

The record (:class:`KnownUsers`) is the training log's users as CSR: for each user (every user of
the log given to ``fit``, validation users included) the catalogue indices of the items they
interacted with and their ratings (1.0 for implicit feedback), in the log's time order when it has
timestamps, else in its row order. Items outside the catalogue are not recorded. It is saved in the
model folder as ``user_log.safetensors`` (checksummed in the manifest) unless the config says
``train.keep_user_log = false`` (``recsys train --no-user-log``); models saved without one load and
have no known users.

Recommending for a known user (:func:`recommend_users`) is recommending for a new user whose ratings
are the recorded ones: ``rec.recommend_user(u)`` equals ``rec.recommend(ratings)`` with the user's
recorded ratings in their order (:func:`user_ratings`). Every recorded interaction is used (scoring
has no support-size cap); ``max_ratings=N`` keeps the most recent N. ``history`` adds fresher
interactions after the recorded ones: a rating of an item already there replaces it (the later
rating wins), as a repeated item does in a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from recsys.candidates import candidate_mask, pairs, rank_padded
from recsys.data.frames import to_polars
from recsys.data.ids import IdIndex, coerce_ids, column_ids, is_integer_dtype, normalise_id, normalise_id_list
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.data.tasks import UserLog
from recsys.errors import ModelFileError, ScoringInputError, UnknownUserError, shown
from recsys.requests import encode_dicts, encode_frame, is_list_like, pad_requests
from recsys.utils.checkpoint import load_tensors, save_tensors

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

USER_LOG_FILE = "user_log.safetensors"
"""The record's file in a model folder (listed in the manifest only when the model keeps one)."""
FORMAT = 1


@dataclass
class KnownUsers:
    """The training log's users: raw ids and, per user, catalogue items and ratings in log order."""

    log: UserLog
    """CSR per user (``user_ids``, ``indptr``, ``items`` as int32 catalogue indices, ``ratings``)."""

    def __post_init__(self) -> None:
        self.index = IdIndex(self.log.user_ids)

    @property
    def n_users(self) -> int:
        return self.log.n_users

    @property
    def n_interactions(self) -> int:
        return len(self.log.items)

    @classmethod
    def from_log(cls, interactions: pl.DataFrame, catalog: IdIndex) -> KnownUsers:
        """The record of a canonical interaction log (the one ``fit`` trains on) on ``catalog``."""
        log = UserLog.from_frame(interactions, catalog)
        ids = log.user_ids
        ids = column_ids(ids) if is_integer_dtype(ids.dtype) else ids.cast(pl.String)
        return cls(UserLog(ids.alias("id"), log.indptr, log.items.astype(np.int32), log.ratings, None))

    def rows_of(self, user_ids: Sequence[Any] | pl.Series) -> np.ndarray:
        """Row of each user id (the one id rule of :mod:`recsys.data.ids`), -1 where unknown."""
        return self.index.lookup(user_ids)

    # ---- the file ----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        integer = is_integer_dtype(self.log.user_ids.dtype)
        tensors = {
            "indptr": torch.from_numpy(np.ascontiguousarray(self.log.indptr, dtype=np.int64)),
            "items": torch.from_numpy(np.ascontiguousarray(self.log.items, dtype=np.int32)),
            "ratings": torch.from_numpy(np.ascontiguousarray(self.log.ratings, dtype=np.float32)),
        }
        if integer:
            tensors["ids"] = torch.from_numpy(self.log.user_ids.to_numpy().astype(np.int64))
        else:
            raw = [s.encode("utf-8") for s in self.log.user_ids.to_list()]
            offsets = np.zeros(len(raw) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in raw], out=offsets[1:])
            tensors["id_bytes"] = torch.frombuffer(bytearray(b"".join(raw) or b"\0"), dtype=torch.uint8)
            tensors["id_offsets"] = torch.from_numpy(offsets)
        meta = {"kind": "recsys-user-log", "format": FORMAT, "ids": "int" if integer else "str"}
        save_tensors(path, tensors, meta | {"users": self.n_users, "interactions": self.n_interactions})

    @classmethod
    def load(cls, path: Path, n_items: int, *, inside: Path | None = None) -> KnownUsers:
        """The record saved at ``path`` for a catalogue of ``n_items``, checked: a damaged or
        inconsistent file is a ModelFileError (before anything indexes with it)."""
        tensors, meta = load_tensors(path, inside=inside)
        if (
            not isinstance(meta, dict)
            or meta.get("kind") != "recsys-user-log"
            or meta.get("format") != FORMAT
        ):
            raise ModelFileError(f"{path}: not a recsys user log of format {FORMAT}")
        arrays = {k: v.numpy() for k, v in tensors.items()}
        problem = _problem(arrays, meta.get("ids"), n_items)
        if problem:
            raise ModelFileError(f"{path}: damaged user log ({problem})")
        if meta["ids"] == "int":
            ids = pl.Series("id", arrays["ids"], dtype=pl.Int64)
        else:
            raw, offsets = arrays["id_bytes"].tobytes(), arrays["id_offsets"]
            try:
                ids = pl.Series("id", [raw[a:b].decode("utf-8") for a, b in pairwise(offsets.tolist())])
            except UnicodeDecodeError:
                raise ModelFileError(f"{path}: damaged user log (user ids that are not UTF-8)") from None
        if ids.n_unique() != len(ids):
            raise ModelFileError(f"{path}: damaged user log (duplicate user ids)")
        log = UserLog(
            ids,
            arrays["indptr"].astype(np.int64),
            arrays["items"],
            arrays["ratings"].astype(np.float32),
            None,
        )
        return cls(log)


def _problem(arrays: dict[str, np.ndarray], ids: Any, n_items: int) -> str | None:
    """What makes saved record arrays unusable (None when consistent): missing arrays, wrong types,
    offsets that do not run from 0 to the number of interactions, items out of the catalogue,
    ratings that are not finite."""
    id_arrays = {"int": ("ids",), "str": ("id_bytes", "id_offsets")}.get(ids)
    if id_arrays is None:
        return f"unknown id kind {shown(ids)}"
    missing = [k for k in ("indptr", "items", "ratings", *id_arrays) if k not in arrays]
    if missing:
        return f"no array {missing[0]}"
    if any(a.ndim != 1 for a in arrays.values()):
        return "arrays of the wrong rank"
    indptr, items, ratings = arrays["indptr"], arrays["items"], arrays["ratings"]
    if indptr.dtype.kind not in "iu" or items.dtype.kind not in "iu" or ratings.dtype.kind != "f":
        return "arrays of the wrong type"
    n_users = len(arrays["ids"]) if ids == "int" else len(arrays["id_offsets"]) - 1
    if len(indptr) != n_users + 1 or len(ratings) != len(items):
        return "array lengths do not agree"
    if indptr[0] != 0 or indptr[-1] != len(items) or (np.diff(indptr) < 0).any():
        return "offsets not increasing from 0 to the number of interactions"
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        return f"item indices outside the catalogue of {n_items}"
    if not np.isfinite(ratings).all():
        return "ratings that are not finite"
    if ids == "str":
        offsets = arrays["id_offsets"]
        if offsets[0] != 0 or offsets[-1] > len(arrays["id_bytes"]) or (np.diff(offsets) < 0).any():
            return "user id offsets out of range"
    return None


def record(interactions: pl.DataFrame, catalog: IdIndex, keep: bool) -> KnownUsers | None:
    """What ``fit`` keeps (``train.keep_user_log``): the record of every user of the log it was given,
    validation users too; None when ``keep`` is false."""
    return KnownUsers.from_log(interactions, catalog) if keep else None


# ---- recommendations for known users ---------------------------------------------------------------
def require_record(rec: ColdStartRecommender) -> KnownUsers:
    """The model's record, or an UnknownUserError saying why there is none."""
    rec._require_fitted()
    if rec.user_log is None:
        raise UnknownUserError(
            "the model keeps no record of its training users (trained with train.keep_user_log = false "
            "or --no-user-log, or saved before recsys kept one); pass the user's ratings to recommend()"
        )
    return rec.user_log


def supports(
    rec: ColdStartRecommender,
    user_ids: Sequence[Any],
    *,
    history: Any = None,
    on_unknown: str = "error",
    on_unknown_item: str = "error",
    max_ratings: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any] | None] | None]:
    """Padded (items [n, S], ratings [n, S]) of known users (their record, then their ``history``) and
    the user features the history table gives (None when it gives none). See the module docstring."""
    record = require_record(rec)
    if on_unknown not in ("error", "cold"):
        raise ScoringInputError(f"on_unknown must be 'error' or 'cold', got {shown(on_unknown)}")
    if max_ratings is not None and (
        isinstance(max_ratings, bool) or not isinstance(max_ratings, (int, np.integer)) or max_ratings < 1
    ):
        raise ScoringInputError(f"max_ratings must be a positive integer or None, got {shown(max_ratings)}")
    rows = record.rows_of(list(user_ids))
    if on_unknown == "error" and (rows < 0).any():
        unknown = [u for u, r in zip(user_ids, rows, strict=True) if r < 0]
        raise UnknownUserError(
            f"unknown user id(s) {UnknownUserError.listing(unknown)}: not among the {record.n_users:,} users "
            "the model was trained on (on_unknown='cold' scores them as new users)"
        )
    known = np.nonzero(rows >= 0)[0]
    owner, pos = record.log.positions(rows[known])
    h_items, h_ratings, features = _history(rec, record, user_ids, history, on_unknown_item)
    mask = h_items >= 0
    user_of = np.concatenate([known[owner], np.nonzero(mask)[0]])
    items = np.concatenate([record.log.items[pos].astype(np.int64), h_items[mask]])
    ratings = np.concatenate([record.log.ratings[pos], h_ratings[mask]])
    items, ratings = pad_requests(user_of, items, ratings, len(user_ids))
    if max_ratings is not None and items.shape[1] > max_ratings:
        items, ratings = _most_recent(items, ratings, int(max_ratings))
    return items, ratings, features


def _most_recent(items: np.ndarray, ratings: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``keep`` interactions of each padded row, in order (padding sits at the rows' ends)."""
    counts = (items >= 0).sum(axis=1)
    start = np.maximum(counts - keep, 0)
    take = np.minimum(start[:, None] + np.arange(keep), items.shape[1] - 1)
    valid = np.arange(keep) < np.minimum(counts, keep)[:, None]
    out_items = np.where(valid, np.take_along_axis(items, take, axis=1), -1)
    return out_items, np.where(valid, np.take_along_axis(ratings, take, axis=1), 0.0).astype(np.float32)


def _history(
    rec: ColdStartRecommender, record: KnownUsers, user_ids: Sequence[Any], history: Any, on_unknown_item: str
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any] | None] | None]:
    """``history`` as padded (items, ratings) aligned with ``user_ids``, and its user features. A dict
    is ``{user_id: {item_id: rating}}``; a table has rows user_id, item_id, rating[, timestamp] (rows of
    other users are ignored; with timestamps, a user's rows are taken in time order)."""
    n = len(user_ids)
    empty = np.full((n, 1), -1, np.int64), np.zeros((n, 1), np.float32), None
    if history is None:
        return empty
    integer = is_integer_dtype(record.log.user_ids.dtype)
    if isinstance(history, dict):
        by_key = {normalise_id(k, integer): v for k, v in history.items()}
        dicts = [by_key.get(normalise_id(u, integer)) for u in user_ids]
        items, ratings = encode_dicts(rec, dicts, on_unknown_item)
        return items, ratings, None
    if type(history).__name__ != "DataFrame":
        raise ScoringInputError(
            f"history must be a table (user_id, item_id, rating[, timestamp]) or a dict, got {type(history).__name__}"
        )
    frame = to_polars(history)
    if USER not in frame.columns:
        raise ScoringInputError(f"the history table needs a '{USER}' column; got {shown(frame.columns, 200)}")
    dtype = record.log.user_ids.dtype
    wanted = normalise_id_list(user_ids, integer)
    frame = frame.with_columns(coerce_ids(frame[USER], dtype).alias(USER))
    frame = frame.filter(pl.col(USER).is_in(wanted.drop_nulls().implode()))
    if frame.height == 0:
        return empty
    if TIMESTAMP in frame.columns:
        frame = frame.sort(TIMESTAMP, maintain_order=True, nulls_last=True)
    enc = encode_frame(rec, frame, on_unknown=on_unknown_item)
    at = IdIndex(enc.user_ids).lookup(wanted)
    has = at >= 0
    row = np.maximum(at, 0)
    items = np.where(has[:, None], enc.items[row], -1)
    ratings = np.where(has[:, None], enc.ratings[row], 0.0).astype(np.float32)
    features = None
    if enc.features is not None:
        features = [enc.features[int(r)] if ok else None for r, ok in zip(row, has, strict=True)]
    return items, ratings, features


def recommend_users(
    rec: ColdStartRecommender,
    user_ids: Sequence[Any],
    n: int = 20,
    *,
    user_features: Sequence[dict[str, Any] | None] | None = None,
    exclude_rated: bool = True,
    history: Any = None,
    on_unknown: str = "error",
    on_unknown_item: str = "error",
    max_ratings: int | None = None,
    items: Iterable[Any] | None = None,
    exclude: Iterable[Any] | None = None,
    where: Mapping[str, Any] | None = None,
) -> list[list[tuple[Any, float]]]:
    """Top-``n`` (item id, score) for each known user, in one vectorised scoring pass (see the module
    docstring). ``user_features``: one dict (or None) per user; None takes those of the history table.
    ``items`` / ``exclude`` / ``where``: the candidates, as in ``recommend`` (:mod:`recsys.candidates`;
    unknown ids there follow ``on_unknown_item``)."""
    if not is_list_like(user_ids) and not isinstance(user_ids, (pl.Series, np.ndarray)):
        raise ScoringInputError(f"user_ids must be a list of user ids, got {type(user_ids).__name__}")
    user_ids = list(user_ids)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ScoringInputError(f"n must be a positive integer, got {shown(n)}")
    if not isinstance(exclude_rated, (bool, np.bool_)):
        raise ScoringInputError(f"exclude_rated must be True or False, got {shown(exclude_rated)}")
    support, ratings, features = supports(
        rec,
        user_ids,
        history=history,
        on_unknown=on_unknown,
        on_unknown_item=on_unknown_item,
        max_ratings=max_ratings,
    )
    if user_features is not None:
        if not is_list_like(user_features) or len(user_features) != len(user_ids):
            raise ScoringInputError("user_features must be a list with one dict (or None) per user id")
        features = (
            list(user_features)
            if features is None
            else [
                given if given is not None else found
                for given, found in zip(user_features, features, strict=True)
            ]
        )
    allowed = candidate_mask(rec, items, exclude, where, on_unknown=on_unknown_item)
    if not user_ids:
        return []
    ranked = rank_padded(
        rec,
        support,
        ratings,
        features,
        n,
        exclude_rated=exclude_rated,
        allowed=allowed,
        with_predictions=False,
    )
    return pairs(rec, ranked, len(user_ids))


def recommend_user(
    rec: ColdStartRecommender,
    user_id: Any,
    n: int = 20,
    *,
    user_features: dict[str, Any] | None = None,
    history: Any = None,
    **kwargs: Any,
) -> list[tuple[Any, float]]:
    """Top-``n`` (item id, score) for a user the model was trained on: ``recommend`` with their logged
    ratings (:func:`recommend_users` for one user). ``user_features``: one dict; ``history``: fresher
    interactions, a table or ``{item_id: rating}``; ``exclude_rated``; ``on_unknown``: ``"error"`` (an
    UnknownUserError) or ``"cold"`` (a new user); ``on_unknown_item``; ``max_ratings`` (the most recent
    N); the candidates ``items`` / ``exclude`` / ``where``."""
    if user_features is not None and not isinstance(user_features, dict):
        raise ScoringInputError(
            f"user_features must be a dict feature name -> value, got {type(user_features).__name__}"
        )
    history = _one_users_history(user_id, history)
    features = None if user_features is None else [user_features]
    return recommend_users(rec, [user_id], n, user_features=features, history=history, **kwargs)[0]


def _one_users_history(user_id: Any, history: Any) -> Any:
    """One user's ``history``: a ``{item_id: rating}`` dict becomes ``{user_id: it}``."""
    return {user_id: history} if isinstance(history, dict) else history


def user_ratings(
    rec: ColdStartRecommender, user_id: Any, *, history: Any = None, **kwargs: Any
) -> dict[Any, float]:
    """The ratings a known user is scored with, ``{item_id: rating}`` in order (record, then history;
    ``history`` as in :func:`recommend_user`): ``rec.recommend(user_ratings(rec, u))`` is
    ``rec.recommend_user(u)``. ``kwargs``: ``on_unknown``, ``on_unknown_item``, ``max_ratings``."""
    items, ratings, _ = supports(rec, [user_id], history=_one_users_history(user_id, history), **kwargs)
    keep = items[0] >= 0
    ids = rec.space.items.ids.gather(items[0][keep]).to_list()
    return dict(zip(ids, ratings[0][keep].astype(float).tolist(), strict=True))


def expand_frame(rec: ColdStartRecommender, frame: Any, *, user_col: str = USER) -> pl.DataFrame:
    """A request table naming known users (the pyfunc's ``known_users=true``): each user's recorded
    interactions as rows before the request's own rows, which add fresher ones (a repeated item: the
    request's rating wins); a row with a user id and no item and rating just names the user. Every
    user must be known (an UnknownUserError otherwise)."""
    record = require_record(rec)
    try:
        frame = to_polars(frame)
    except Exception as exc:  # pandas -> Arrow conversion of a hostile table
        raise ScoringInputError(f"cannot read the request table ({type(exc).__name__})") from None
    if frame is None or frame.height == 0 or user_col not in frame.columns:
        raise ScoringInputError(f"known_users requests need a non-empty table with a '{user_col}' column")
    users = frame[user_col].unique(maintain_order=True)
    rows = record.rows_of(users)
    if (rows < 0).any():
        unknown = users.filter(pl.Series(rows < 0)).to_list()
        raise UnknownUserError(
            f"unknown user id(s) {UnknownUserError.listing(unknown)}: not among the {record.n_users:,} users "
            "the model was trained on"
        )
    owner, pos = record.log.positions(rows)
    stored = pl.DataFrame(
        {user_col: users.gather(owner), ITEM: rec.space.items.ids.gather(record.log.items[pos])}
    )
    if RATING in frame.columns or not rec.space.implicit:
        stored = stored.with_columns(pl.Series(RATING, record.log.ratings[pos]))
    for col in (ITEM, RATING):  # a column of nulls only names the users: the record gives its type
        if col in frame.columns and frame[col].null_count() == frame.height:
            frame = frame.drop(col)
    if ITEM in frame.columns and frame.schema[ITEM] != stored.schema[ITEM]:
        # ids by the one id rule: integer ids and their canonical decimal strings are the same id
        stored = stored.with_columns(pl.col(ITEM).cast(pl.String))
        frame = frame.with_columns(pl.col(ITEM).cast(pl.String))
    return pl.concat([stored, frame], how="diagonal_relaxed")
