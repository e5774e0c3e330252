"""Candidates: which catalogue items a request may be recommended, and the ranked output rows.

Every entry point (``recommend``, ``recommend_rows``, ``recommend_batch``, ``recommend_frame``, the CLI
and the pyfunc model) narrows the catalogue the same way, with :func:`candidate_mask`:

- ``items``: an allow-list of item ids (only these may be recommended);
- ``exclude``: a deny-list of item ids (never these);
- ``where``: ``{field: value | [values]}`` on the item table's categorical and multi-valued fields (an
  item matches a field when it has ANY of the given values; several fields combine with AND);
- the recommender's availability (``rec._available``, bool ``[n_items]``, True = available; None = all):
  an unavailable item is never recommended.

The mask is applied BEFORE top-N, through the one exclusion mask of :mod:`recsys.metrics.topk`: a
request returns exactly ``n`` items when ``n`` allowed unrated items exist (fewer only when fewer exist).

:func:`rank_padded` scores padded requests and keeps the top-N rows (:class:`Ranked`): rank (1-based),
catalogue index, ``score`` (what orders the list: the ranking score of a head with a ranking output,
else the predicted rating) and ``predicted_rating`` (when the model predicts ratings; equal to the score
for a rating-only head); :func:`row_dicts` and :func:`pairs` turn them into what the API returns.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.data.spec import FieldKind
from recsys.errors import ScoringInputError, UnknownItemError, shown
from recsys.features.space import ITEM_ID_FIELD
from recsys.metrics.topk import exclusion_mask, top_n

if TYPE_CHECKING:
    from recsys.features.encoders import EncodedTable
    from recsys.features.space import FeatureSpace
    from recsys.recommender import ColdStartRecommender

log = logging.getLogger(__name__)

WHERE_KINDS = (FieldKind.CATEGORICAL, FieldKind.MULTI)
"""Item field kinds ``where`` can filter on (their values are a vocabulary)."""
SHOWN_VALUES = 8
"""How many valid values an error about an unknown ``where`` value quotes."""


# ---- the mask ------------------------------------------------------------------------------------
def candidate_mask(
    rec: ColdStartRecommender,
    items: Iterable[Any] | None = None,
    exclude: Iterable[Any] | None = None,
    where: Mapping[str, Any] | None = None,
    *,
    on_unknown: str = "error",
) -> np.ndarray | None:
    """Bool ``[n_items]``, True where an item may be recommended, or None when nothing restricts the
    catalogue (see the module docstring). Unknown ids in ``items`` / ``exclude``: an
    :class:`UnknownItemError` (``on_unknown="error"``) or skipped with a warning (``"ignore"``); a bad
    ``where`` is a :class:`ScoringInputError` listing the valid fields or values."""
    if on_unknown not in ("error", "ignore"):
        raise ScoringInputError(f"on_unknown must be 'error' or 'ignore', got {shown(on_unknown)}")
    space = rec.space
    n_items = space.n_items
    mask: np.ndarray | None = None
    if items is not None:
        mask = np.zeros(n_items, dtype=bool)
        mask[_indices(rec, _id_list(items, "items"), "items", on_unknown)] = True
    if exclude is not None:
        idx = _indices(rec, _id_list(exclude, "exclude"), "exclude", on_unknown)
        if len(idx):
            mask = np.ones(n_items, dtype=bool) if mask is None else mask
            mask[idx] = False
    matched = where_mask(space, where)
    if matched is not None:
        mask = matched if mask is None else mask & matched
    available = getattr(rec, "_available", None)
    if available is not None:
        available = np.asarray(available, dtype=bool)[:n_items]
        if len(available) < n_items:  # items added after the mask was set: available
            available = np.concatenate([available, np.ones(n_items - len(available), dtype=bool)])
        mask = available.copy() if mask is None else mask & available
    return mask


def _id_list(value: Any, name: str) -> list[Any]:
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise ScoringInputError(f"{name} must be a list of item ids, got {type(value).__name__}")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value)


def _indices(rec: ColdStartRecommender, ids: list[Any], name: str, on_unknown: str) -> np.ndarray:
    """Catalogue indices of ``ids`` (the id rule of :mod:`recsys.data.ids`), unknown ones refused or
    dropped by ``on_unknown``."""
    idx = rec._lookup(ids)
    if (idx < 0).any():
        unknown = [i for i, j in zip(ids, idx, strict=True) if j < 0]
        if on_unknown == "error":
            raise UnknownItemError(
                f"{name}: {len(unknown)} unknown item id(s): {UnknownItemError.listing(unknown)}"
                " (pass on_unknown='ignore' to skip them)"
            )
        log.warning("%s: ignoring %d unknown item id(s)", name, len(unknown))
    return idx[idx >= 0]


def where_fields(space: FeatureSpace) -> dict[str, int]:
    """The item fields ``where`` can filter on: name -> position among the item encoder's token fields."""
    return {
        f.name: j
        for j, f in enumerate(space.item_encoder.token_fields)
        if f.spec.kind in WHERE_KINDS and f.name != ITEM_ID_FIELD
    }


def where_mask(space: FeatureSpace, where: Mapping[str, Any] | None) -> np.ndarray | None:
    """Bool ``[n_items]``: the items with, for every field of ``where``, ANY of its values (None when
    ``where`` is None or empty). Values are matched as text against the field's vocabulary (the values
    the model was trained with)."""
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise ScoringInputError(
            f"where must be a mapping field -> value or list of values, got {type(where).__name__}"
        )
    fields = where_fields(space)
    encoder = space.item_encoder
    mask: np.ndarray | None = None
    for name, given in where.items():
        if name not in fields:
            valid = (
                ", ".join(sorted(fields)) or "none (the model has no categorical or multi-valued item field)"
            )
            kinds = {f.name: f.spec.kind.value for f in encoder.fields if f.name != ITEM_ID_FIELD}
            what = (
                f"item field {name!r} is {kinds[name]}"
                if name in kinds
                else f"unknown item field {shown(name)}"
            )
            raise ScoringInputError(f"where: {what}; fields to filter on: {valid}")
        j = fields[name]
        field = encoder.token_fields[j]
        values = _where_values(name, given)
        local = np.array([field.vocab.lookup(v) for v in values], dtype=np.int64)
        if (local == 0).any():
            raise ScoringInputError(_unknown_values_message(name, field.vocab.tokens, values, local))
        rows = _rows_with_tokens(space.item_table, local + encoder.field_offsets[j])
        mask = rows if mask is None else mask & rows
    return mask


def _where_values(name: str, given: Any) -> list[str]:
    values = [given] if isinstance(given, (str, int, np.integer)) else given
    if isinstance(values, (bytes, Mapping)) or not isinstance(values, Iterable):
        raise ScoringInputError(
            f"where: field {name!r} needs a value or a list of values, got {type(given).__name__}"
        )
    values = list(values)
    if not values:
        raise ScoringInputError(f"where: no values given for field {name!r}")
    bad = [v for v in values if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, int, np.integer))]
    if bad:
        raise ScoringInputError(f"where: values of field {name!r} must be text, got {shown(bad[0])}")
    return [str(v) for v in values]


def _unknown_values_message(name: str, tokens: list[str], values: list[str], local: np.ndarray) -> str:
    unknown = [v for v, i in zip(values, local, strict=True) if i == 0]
    text = (
        f"where: unknown value(s) {', '.join(shown(v) for v in unknown[:5])} of item field {name!r}; "
        f"valid values include {', '.join(shown(t) for t in tokens[:SHOWN_VALUES])}"
        + (f" ({len(tokens)} in all)" if len(tokens) > SHOWN_VALUES else "")
    )
    by_case = {t.lower(): t for t in tokens}
    close = by_case.get(unknown[0].lower()) or next(
        iter(difflib.get_close_matches(unknown[0], tokens, n=1)), None
    )
    return text + (f" (did you mean {close!r}?)" if close else "")


def _rows_with_tokens(table: EncodedTable, token_ids: np.ndarray) -> np.ndarray:
    """Bool ``[n_rows]``: rows with any of ``token_ids`` (global ids, which belong to one field) in their
    bags; vectorised over the CSR arrays."""
    lengths = np.diff(table.offsets)
    bag = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    rows = bag[np.isin(table.indices, token_ids)] // max(1, table.n_token_fields)
    out = np.zeros(table.n_rows, dtype=bool)
    out[rows] = True
    return out


def parse_where(text: str | None) -> dict[str, list[str]] | None:
    """``where`` given as text (the pyfunc's string param): a JSON object (``{"genre": ["Comedy"]}``)
    or ``FIELD=VALUE[,VALUE...]`` terms separated by ``;`` (``genre=Comedy,Drama;category=c1``, as
    the CLI's ``--where``). Empty text is None."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if text.startswith("{"):
        try:
            where = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ScoringInputError(f"where is not a valid JSON object ({shown(str(exc), 120)})") from None
        if not isinstance(where, dict):
            raise ScoringInputError("where must be a JSON object field -> value or list of values")
        return where
    return parse_where_terms(text.split(";"))


def parse_where_terms(terms: Iterable[str]) -> dict[str, list[str]] | None:
    """``["genre=Comedy,Drama", "category=c1"]`` -> ``{"genre": ["Comedy", "Drama"], "category": ["c1"]}``;
    a field given twice gets the values of both (ANY of them matches)."""
    where: dict[str, list[str]] = {}
    for term in terms:
        name, eq, rest = str(term).partition("=")
        values = [v.strip() for v in rest.split(",") if v.strip()]
        if not eq or not name.strip() or not values:
            raise ScoringInputError(f"where expects FIELD=VALUE[,VALUE...], got {shown(term)}")
        bucket = where.setdefault(name.strip(), [])
        bucket.extend(v for v in values if v not in bucket)
    return where or None


# ---- ranking under the mask ----------------------------------------------------------------------
@dataclass
class Ranked:
    """The top-N of padded requests, one entry per output row, rows grouped by request in rank order."""

    request: np.ndarray
    """Index of the request (user) of each row."""
    rank: np.ndarray
    """1-based rank within the request."""
    item: np.ndarray
    """Catalogue index of the item."""
    score: np.ndarray
    """What orders the list (float64)."""
    predicted_rating: np.ndarray | None
    """Predicted rating on the data's scale (float64); None when the model does not predict ratings."""


def predicts_ratings(rec: ColdStartRecommender) -> bool:
    """Whether the model's rows carry a predicted rating: its head predicts ratings and it was not
    trained on implicit feedback (where there is no rating to predict)."""
    return bool(rec.learner.head.capabilities.predicts_ratings and not rec.space.implicit)


def has_titles(rec: ColdStartRecommender) -> bool:
    return any(t is not None for t in rec.space.titles)


def rank_padded(
    rec: ColdStartRecommender,
    items: np.ndarray,
    ratings: np.ndarray,
    user_features: Any,
    n: int,
    *,
    exclude_rated: bool = True,
    allowed: np.ndarray | None = None,
    with_predictions: bool = True,
) -> Ranked:
    """Score padded requests (``items``/``ratings`` [n, S], as :meth:`ColdStartRecommender.score_padded`)
    and keep each one's top ``n`` among the ``allowed`` items (bool [n_items], None = all), excluding
    its rated items when ``exclude_rated``; filtering happens before top-N. ``with_predictions=False``:
    no ``predicted_rating`` (the catalogue's ratings are not computed: what ``recommend`` returns)."""
    with_ratings = with_predictions and predicts_ratings(rec)
    scored = rec.score_padded(items, ratings, user_features, what="both" if with_ratings else "rank")
    scores, predicted = scored if with_ratings else (scored, None)
    n_users, n_items = scores.shape
    extra = None if allowed is None else np.broadcast_to(~np.asarray(allowed, bool), (n_users, n_items))
    if exclude_rated:
        exclude = exclusion_mask(items, n_items, extra)
    else:
        exclude = None if extra is None else np.array(extra)
    top, top_scores = top_n(scores, int(n), exclude)
    keep = ~np.take_along_axis(exclude, top, axis=1) if exclude is not None else np.ones_like(top, bool)
    row_ix, col_ix = np.nonzero(keep)
    item_ix = top[row_ix, col_ix]
    return Ranked(
        request=row_ix,
        rank=np.cumsum(keep, axis=1)[row_ix, col_ix].astype(np.int64),  # counts only the kept items
        item=item_ix,
        score=top_scores[row_ix, col_ix].astype(np.float64),
        predicted_rating=None if predicted is None else predicted[row_ix, item_ix].astype(np.float64),
    )


def pairs(rec: ColdStartRecommender, ranked: Ranked, n_requests: int) -> list[list[tuple[Any, float]]]:
    """``[(item_id, score), ...]`` per request (what ``recommend`` / ``recommend_batch`` return)."""
    ids = rec.space.items.ids
    out: list[list[tuple[Any, float]]] = [[] for _ in range(n_requests)]
    for r, i, s in zip(ranked.request.tolist(), ranked.item.tolist(), ranked.score.tolist(), strict=True):
        out[r].append((ids[i], s))
    return out


def row_dicts(rec: ColdStartRecommender, ranked: Ranked, n_requests: int) -> list[list[dict[str, Any]]]:
    """Output rows per request: ``rank``, ``item_id``, ``score``, ``predicted_rating`` (when the model
    predicts ratings) and ``title`` (when the catalogue has titles)."""
    ids, titles = rec.space.items.ids, rec.space.titles
    with_titles = has_titles(rec)
    predicted = ranked.predicted_rating
    out: list[list[dict[str, Any]]] = [[] for _ in range(n_requests)]
    for k, (r, i) in enumerate(zip(ranked.request.tolist(), ranked.item.tolist(), strict=True)):
        row: dict[str, Any] = {
            "rank": int(ranked.rank[k]),
            "item_id": ids[i],
            "score": float(ranked.score[k]),
        }
        if predicted is not None:
            row["predicted_rating"] = float(predicted[k])
        if with_titles:
            row["title"] = titles[i]
        out[r].append(row)
    return out
