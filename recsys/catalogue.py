"""Catalogue updates without retraining: add items, hide items.

**Adding items** (:func:`add_items`, ``rec.add_items(frame)``): each new item is scored from its content
fields, with its item-id field the unknown token, exactly as the evaluation scores held-out new items
(MeLU's ``item_cold_state``): a new item has no training interactions, so its rating offset is 0, its
trend prior is the prior of no interactions, and it has no row or column in the item-item blend (see
:mod:`recsys.models.catalogue`). Its feature row is encoded by the model's own encoders (values never
seen in training map to the field's unknown token). The catalogue, the item table, titles and
popularity grow; the catalogue cache is rebuilt on the next call. Ids already in the catalogue are an
error: changing a known item's features would silently change what training learnt about it.

**Hiding items** (:func:`set_available`, ``rec.set_available(ids, False)``): ``rec._available`` is a
bool array [n_items] (True = may be recommended) or None (every item). Hidden items stay in the
catalogue (ratings of them still adapt a user; ``predict`` still scores them) but are never recommended
(:mod:`recsys.candidates` ANDs the mask into every recommendation's candidates).

Both are saved with the model (:mod:`recsys.persistence`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.data.frames import to_polars
from recsys.data.ids import IdIndex, coerce_ids, is_integer_dtype
from recsys.data.readers import side_table_columns
from recsys.data.schema import ITEM
from recsys.data.spec import FieldKind, TableSpec
from recsys.data.tables import ROW, read_raw
from recsys.errors import DataError, FeatureMismatchError, RecsysError, UnknownItemError, shown
from recsys.features.encoders import EncodedTable, FieldEncoder
from recsys.features.space import ITEM_ID_FIELD, FeatureSpace
from recsys.models.catalogue import grow_catalogue

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

log = logging.getLogger(__name__)

TITLE_COLUMN = "title"
"""The optional column of display titles in a table of items to add."""


def item_feature_fields(space: FeatureSpace) -> list[FieldEncoder]:
    """The item fields a table of new items must have (the content fields: not the item-id field)."""
    return [f for f in space.item_encoder.fields if f.name != ITEM_ID_FIELD]


# ---- adding items ------------------------------------------------------------------------------------
def add_items(
    rec: ColdStartRecommender, frame: Any, *, id_column: str = ITEM, title_column: str | None = TITLE_COLUMN
) -> int:
    """Append the items of ``frame`` (an id column and the model's item feature columns, as the
    training item table had them; ``title_column`` optional) to ``rec``'s catalogue; the number added.

    Bad input is one clear error: not a frame, no id column, null, malformed or repeated ids, ids
    already in the catalogue (:class:`DataError`); feature columns the model does not know, missing
    ones, or columns of the wrong type (:class:`FeatureMismatchError`)."""
    space = rec.space
    frame, ids = checked_items(space, frame, id_column, title_column)
    table = encode_items(space, frame)
    titles = [None] * len(ids)
    if title_column is not None and title_column in frame.columns:
        titles = [None if t is None else str(t) for t in frame[title_column].cast(pl.String).to_list()]
    n_old, n_new = space.n_items, len(ids)
    _check_item_item_size(rec, n_old + n_new)
    space.items = IdIndex(pl.concat([space.items.ids, ids.alias("id")]))
    space.titles = list(space.titles) + titles
    space.item_table = space.item_table.append(table)
    space.popularity = np.concatenate([space.popularity, np.zeros(n_new, dtype=space.popularity.dtype)])
    grow_catalogue(rec.learner.head, n_new, trend_fill=no_interactions_trend(rec))
    available = getattr(rec, "_available", None)
    if available is not None:
        rec._available = np.concatenate([available, np.ones(n_new, dtype=bool)])
    rec._cache = None
    record = rec.info.setdefault("catalogue", {})
    record["items_added"] = int(record.get("items_added", 0)) + n_new
    return n_new


def checked_items(
    space: FeatureSpace, frame: Any, id_column: str, title_column: str | None
) -> tuple[pl.DataFrame, pl.Series]:
    """(the frame as polars, its ids as the catalogue's id type), or the first problem as one error."""
    try:
        frame = to_polars(frame)
    except TypeError as exc:
        raise DataError(f"items to add: {exc}") from None
    if frame is None or frame.height == 0:
        raise DataError("items to add: the table is empty")
    check_columns(space, frame.columns, id_column, title_column)
    return frame, _checked_ids(space, frame[id_column], id_column)


def check_columns(space: FeatureSpace, columns: list[str], id_column: str, title_column: str | None) -> None:
    """The id column present; every item feature column present; no other column but the title."""
    if id_column not in columns:
        raise DataError(f"items to add: no '{id_column}' column (the item ids); the columns are {columns}")
    fields = [f.name for f in item_feature_fields(space)]
    allowed = {id_column, *fields} | ({title_column} if title_column else set())
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        title = f" and an optional '{title_column}'" if title_column else ""
        raise FeatureMismatchError(
            f"items to add: unknown column(s) {unknown}; the model's item features are {fields} "
            f"(with the id column '{id_column}'{title})"
        )
    missing = [f for f in fields if f not in columns]
    if missing:
        raise FeatureMismatchError(
            f"items to add: missing item feature column(s) {missing} (a column of nulls is allowed: "
            "missing values map to the unknown token)"
        )


def _checked_ids(space: FeatureSpace, raw: pl.Series, id_column: str) -> pl.Series:
    if not (is_integer_dtype(raw.dtype) or raw.dtype in (pl.String, pl.Null)):
        raise DataError(f"items to add: column '{id_column}' holds {raw.dtype}, not integer or string ids")
    ids = coerce_ids(raw, space.items.dtype)
    bad = ids.is_null()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        kind = "integer" if is_integer_dtype(space.items.dtype) else "string"
        raise DataError(
            f"items to add: row {row}: {shown(raw[row])} is not an item id of this catalogue ({kind} ids)"
        )
    repeated = ids.filter(ids.is_duplicated()).unique(maintain_order=True).to_list()
    if repeated:
        raise DataError(f"items to add: repeated item id(s) {UnknownItemError.listing(repeated)}")
    known = ids.filter(pl.Series(space.items.lookup(ids) >= 0)).to_list()
    if known:
        raise DataError(
            f"items to add: item id(s) {UnknownItemError.listing(known)} already in the catalogue "
            "(add_items adds new items; a known item's features change only by retraining)"
        )
    return ids


EXPECTED = {
    FieldKind.CATEGORICAL: "one value per item (text or integers)",
    FieldKind.MULTI: "lists of tokens",
    FieldKind.NUMERIC: "numbers",
    FieldKind.DENSE: "numbers",
}


def _type_problem(field: FieldEncoder, dtype: pl.DataType) -> bool:
    if dtype == pl.Null:
        return False  # all missing: the unknown token
    kind = field.spec.kind
    if kind is FieldKind.MULTI:
        return not isinstance(dtype, pl.List) or isinstance(dtype.inner, (pl.List, pl.Struct))
    if kind in (FieldKind.NUMERIC, FieldKind.DENSE):
        return not (dtype.is_numeric() or dtype == pl.String)
    return not (dtype.is_numeric() or dtype in (pl.String, pl.Boolean, pl.Categorical))


def encode_items(space: FeatureSpace, frame: pl.DataFrame) -> EncodedTable:
    """The encoded rows of the new items: content fields by the model's encoders, the item-id field
    unknown (a null, as for every catalogue item without training interactions)."""
    for field in item_feature_fields(space):
        dtype = frame[field.name].dtype
        if _type_problem(field, dtype):
            raise FeatureMismatchError(
                f"items to add: column '{field.name}' ({field.spec.kind.value}) holds {dtype}; "
                f"expected {EXPECTED[field.spec.kind]}"
            )
    columns = frame.select([f.name for f in item_feature_fields(space)])
    if any(f.name == ITEM_ID_FIELD for f in space.item_encoder.fields):
        columns = columns.with_columns(pl.lit(None, dtype=pl.String).alias(ITEM_ID_FIELD))
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            table = space.item_encoder.encode(columns)
    except RecsysError:
        raise
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise FeatureMismatchError(f"items to add: cannot encode the features ({first})") from None
    if table.dense.size and not np.isfinite(table.dense).all():
        row = int(np.nonzero(~np.isfinite(table.dense).all(axis=1))[0][0])
        raise DataError(f"items to add: row {row}: a numeric feature is infinite or too large")
    return table


def no_interactions_trend(rec: ColdStartRecommender) -> float:
    """The trend prior of an item without training interactions, for the items added: recorded when
    the prior was chosen (``info["trend"]["no_interactions"]``); for models saved before that, the
    prior of a catalogue item without training interactions, else the lowest prior (the nearest)."""
    head = rec.learner.head
    if not head.capabilities.trend_prior or head.get_buffer("trend").numel() == 0:
        return 0.0
    prior = head.get_buffer("trend")
    recorded = (rec.info.get("trend") or {}).get("no_interactions")
    if recorded is not None:
        return float(recorded)
    values = prior.detach().cpu().numpy()
    unseen = rec.space.popularity[: len(values)] == 0
    if unseen.any():
        return float(values[unseen][0])
    log.warning("model saved before the no-interactions trend was recorded: new items get the lowest prior")
    return float(values.min()) if len(values) else 0.0


def _check_item_item_size(rec: ColdStartRecommender, n_total: int) -> None:
    """A model whose item-item blend is active keeps it, in the storage it has, as the catalogue grows
    past ``model.hybrid.item_item_max_items`` or (dense storage) ``item_item_dense_items``, and (sparse)
    with the neighbour-list width it has: the config says so, so that the saved model loads with the network it has."""
    head = rec.learner.head
    hybrid = getattr(rec.config.model, "hybrid", None)
    if hybrid is None or not head.item_item_active:
        return
    changes = {}
    if n_total > hybrid.item_item_max_items:
        changes["item_item_max_items"] = n_total
    if not head.item_item_sparse and n_total > hybrid.item_item_dense_items:
        changes["item_item_dense_items"] = n_total
    if head.item_item_sparse and min(hybrid.item_item_neighbours, n_total - 1) != head.ii_neighbours:
        changes["item_item_neighbours"] = head.ii_neighbours  # a small catalogue's k = n_items - 1 stays
    if changes:
        rec.config = rec.config.replace(model={"hybrid": changes})


def read_items_file(
    space: FeatureSpace, path: str | Path, *, id_column: str = ITEM, title_column: str | None = TITLE_COLUMN
) -> pl.DataFrame:
    """A CSV/TSV/Parquet table of items to add, read as a dataset's item table is read: one column per
    item feature, named as the field (a ``multi`` field's tokens joined by its separator, ``|`` by
    default), converted by the field's rules (strip, truncate, null values); the id column and an
    optional title column. Columns are checked before any value is converted."""
    fields = item_feature_fields(space)
    specs = [
        dataclasses.replace(f.spec, column=f.name, from_flags=None, separator=f.spec.separator or "|")
        for f in fields
    ]
    spec = TableSpec(path=str(path), key=id_column, fields=specs)
    raw = read_raw(spec)
    check_columns(space, [c for c in raw.columns if c != ROW], id_column, title_column)
    frame = side_table_columns(raw, spec, Path(path), id_column)
    if title_column is not None and title_column in raw.columns:
        frame = frame.with_columns(raw[title_column].alias(title_column))
    return frame


# ---- availability ----------------------------------------------------------------------------------
def set_available(rec: ColdStartRecommender, ids: Any, available: bool = True) -> int:
    """Make ``ids`` available (True) or hidden (False); the number of items changed. Unknown ids are
    an :class:`UnknownItemError` (nothing changes)."""
    if not isinstance(available, (bool, np.bool_)):
        raise DataError(f"available must be True or False, got {shown(available)}")
    if isinstance(ids, (str, bytes, dict)) or not hasattr(ids, "__len__"):
        raise DataError(f"ids must be a list of item ids, got {type(ids).__name__}")
    ids = ids if isinstance(ids, pl.Series) else list(ids)
    idx = rec._lookup(ids) if not isinstance(ids, pl.Series) else rec.space.items.lookup(ids)
    if (idx < 0).any():
        values = ids.to_list() if isinstance(ids, pl.Series) else ids
        bad = [i for i, j in zip(values, idx, strict=True) if j < 0]
        raise UnknownItemError(
            f"cannot change the availability of unknown item id(s) {UnknownItemError.listing(bad)}"
        )
    current = getattr(rec, "_available", None)
    mask = np.ones(rec.space.n_items, dtype=bool) if current is None else current.copy()
    changed = int((mask[np.unique(idx)] != bool(available)).sum())
    mask[idx] = bool(available)
    rec._available = None if mask.all() else mask
    rec.info.setdefault("catalogue", {})["hidden_items"] = int((~mask).sum())
    return changed
