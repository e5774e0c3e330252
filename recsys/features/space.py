"""The feature space of a model: item catalogue, user and item encoders, encoded side tables.

Everything here is fitted on training data only and saved next to a model (JSON + arrays), so that
scoring uses exactly the mapping training used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.data.ids import IdIndex, coerce_ids
from recsys.data.schema import ITEM, USER
from recsys.data.spec import FieldKind, FieldSpec
from recsys.errors import FeatureMismatchError
from recsys.features.encoders import EncodedTable, TableEncoder

if TYPE_CHECKING:
    from recsys.data.dataset import Dataset

ITEM_ID_FIELD = "__item_id"


@dataclass
class FeatureSpace:
    """Catalogue, encoders and encoded tables shared by training and scoring."""

    items: IdIndex
    """The catalogue: every item the model can score, in index order."""
    titles: list[str | None]
    """Display title per catalogue item (None where unknown)."""
    item_encoder: TableEncoder
    user_encoder: TableEncoder
    item_table: EncodedTable
    """Encoded item features of the catalogue, row i = catalogue item i."""
    users: IdIndex
    """Users with a feature row (training data), for feature lookup of known users."""
    user_table: EncodedTable
    """Encoded user features; row ``len(users)`` is the all-unknown row."""
    popularity: np.ndarray
    """Training interactions per catalogue item."""
    rating_scale: tuple[float, float] | None
    implicit: bool

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def unknown_user_row(self) -> int:
        return len(self.users)

    @classmethod
    def fit_dataset(cls, ds: Dataset, interactions: pl.DataFrame | None = None, **kwargs) -> FeatureSpace:
        """:meth:`fit` on a dataset's side tables and declared fields (``interactions``: a subset of its
        log to fit on, default all of it; ``kwargs``: the other options of :meth:`fit`)."""
        return cls.fit(
            ds.interactions if interactions is None else interactions,
            users=ds.users,
            items=ds.items,
            user_fields=ds.spec.user_fields,
            item_fields=ds.spec.item_fields,
            **kwargs,
        )

    @classmethod
    def fit(
        cls,
        interactions: pl.DataFrame,
        *,
        users: pl.DataFrame | None = None,
        items: pl.DataFrame | None = None,
        user_fields: list[FieldSpec] | None = None,
        item_fields: list[FieldSpec] | None = None,
        use_item_id: bool = True,
        item_id_min_count: int = 1,
        title_field: str | None = None,
        rating_scale: tuple[float, float] | None = None,
        implicit: bool = False,
    ) -> FeatureSpace:
        """Fit on the training interactions and the side tables.

        The catalogue is every item of the training log plus every item of the item table (new items
        with features only can be scored from their content). The item-id field, when used, knows only
        items with at least ``item_id_min_count`` training interactions; the others map to unknown.

        Long on purpose: the catalogue, then the user and item encoders, then the tables, in the order each
        depends on the last."""
        user_fields = [f for f in (user_fields or []) if f.kind is not FieldKind.TEXT]
        item_fields = [f for f in (item_fields or []) if f.kind is not FieldKind.TEXT]
        log_items = interactions[ITEM].unique(maintain_order=True)
        if items is not None:
            items = items.with_columns(coerce_ids(items[ITEM], log_items.dtype).alias(ITEM)).filter(
                pl.col(ITEM).is_not_null()
            )
            extra = items[ITEM].filter(~items[ITEM].is_in(log_items.implode()))
            catalogue_ids = pl.concat([log_items, extra])
        else:
            catalogue_ids = log_items
        catalog = IdIndex(catalogue_ids)
        counts = interactions.group_by(ITEM).len()
        popularity = np.zeros(len(catalog), dtype=np.int64)
        popularity[catalog.lookup(counts[ITEM])] = counts["len"].to_numpy()

        # item frame in catalogue order (missing feature rows -> nulls -> unknown tokens)
        item_frame = pl.DataFrame({ITEM: catalogue_ids})
        if items is not None:
            item_frame = item_frame.join(items, on=ITEM, how="left", maintain_order="left")
        fields = list(item_fields)
        if use_item_id:
            kept = pl.Series(np.where(popularity >= item_id_min_count, True, False))
            item_frame = item_frame.with_columns(
                pl.when(kept).then(pl.col(ITEM).cast(pl.String)).otherwise(None).alias(ITEM_ID_FIELD)
            )
            fields.append(FieldSpec(name=ITEM_ID_FIELD, kind=FieldKind.CATEGORICAL))
        # fit item encoders on items seen in training only, so unseen tokens stay unknown
        trained = item_frame.filter(pl.Series(popularity > 0))
        item_encoder = TableEncoder.fit(ITEM, fields, trained)
        item_table = item_encoder.encode(item_frame)
        titles: list[str | None] = [None] * len(catalog)
        if items is not None and title_field and title_field in item_frame.columns:
            titles = [None if t is None else str(t) for t in item_frame[title_field].to_list()]

        if users is not None and user_fields:
            train_users = interactions[USER].unique()
            users = users.with_columns(coerce_ids(users[USER], train_users.dtype).alias(USER)).filter(
                pl.col(USER).is_not_null()
            )
            user_encoder = TableEncoder.fit(
                USER, user_fields, users.filter(pl.col(USER).is_in(train_users.implode()))
            )
            user_index = IdIndex(users[USER])
            encoded = user_encoder.encode(users)
            user_table = _append_unknown(encoded, user_encoder)
        else:
            user_encoder = TableEncoder(USER, [])
            user_index = IdIndex(interactions[USER].head(0))
            user_table = user_encoder.encode_unknown(1)
        return cls(
            catalog,
            titles,
            item_encoder,
            user_encoder,
            item_table,
            user_index,
            user_table,
            popularity,
            rating_scale,
            implicit,
        )

    def user_rows(self, user_ids: pl.Series | list | np.ndarray) -> np.ndarray:
        """Row in ``user_table`` of each user (the unknown row for users without features)."""
        rows = self.users.lookup(user_ids)
        rows[rows < 0] = self.unknown_user_row
        return rows

    def encode_user_features(self, features: list[dict[str, Any] | None]) -> EncodedTable:
        """Encode user-feature dicts of new users (missing or unseen values -> unknown)."""
        n = len(features)
        enc = self.user_encoder
        if not enc.fields:
            return enc.encode_unknown(n)
        unknown_names = {k for f in features if f for k in f} - {fe.name for fe in enc.fields}
        if unknown_names:
            raise FeatureMismatchError(
                f"unknown user feature(s) {sorted(unknown_names)}; the model knows {[f.name for f in enc.fields]}"
            )
        columns: dict[str, pl.Series] = {}
        for fe in enc.fields:
            values = [(f or {}).get(fe.name) for f in features]
            kind = fe.spec.kind
            if kind is FieldKind.MULTI:
                values = [_as_token_list(v, fe.spec.separator) for v in values]
                columns[fe.name] = pl.Series(fe.name, values, dtype=pl.List(pl.String))
            elif kind in (FieldKind.NUMERIC, FieldKind.DENSE):
                columns[fe.name] = pl.Series(fe.name, [_as_float(v) for v in values], dtype=pl.Float64)
            else:
                columns[fe.name] = pl.Series(
                    fe.name, [None if v is None else str(v) for v in values], dtype=pl.String
                )
        return enc.encode(pl.DataFrame(columns))

    def signature(self) -> dict[str, Any]:
        return {"user_fields": self.user_encoder.signature(), "item_fields": self.item_encoder.signature()}

    def problems(self) -> list[str]:
        """What makes this space (read back from files) unsafe to score with: duplicate ids, negative
        popularity, or encoded tables whose offsets or token ids fall outside their encoders' ranges
        (checked at load, so that scoring never indexes out of bounds). Empty when consistent."""
        out = []
        for name, index in (("items", self.items), ("users", self.users)):
            if index.ids.n_unique() != len(index):
                out.append(f"{name}: duplicate ids")
        if len(self.popularity) and self.popularity.min() < 0:
            out.append("popularity: negative counts")
        out += self.item_table.problems("item_table", self.item_encoder, self.n_items)
        out += self.user_table.problems("user_table", self.user_encoder, len(self.users) + 1)
        return out

    # ---- persistence -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "items": {"dtype": str(self.items.dtype), "ids": self.items.to_list()},
            "titles": self.titles,
            "users": {"dtype": str(self.users.dtype), "ids": self.users.to_list()},
            "item_encoder": self.item_encoder.to_dict(),
            "user_encoder": self.user_encoder.to_dict(),
            "rating_scale": list(self.rating_scale) if self.rating_scale else None,
            "implicit": self.implicit,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return (
            self.item_table.to_arrays("item_table")
            | self.user_table.to_arrays("user_table")
            | {"popularity": self.popularity}
        )

    @classmethod
    def from_json(cls, raw: dict[str, Any], arrays: dict[str, np.ndarray]) -> FeatureSpace:
        item_encoder = TableEncoder.from_dict(raw["item_encoder"])
        user_encoder = TableEncoder.from_dict(raw["user_encoder"])
        return cls(
            IdIndex(_series(raw["items"])),
            raw["titles"],
            item_encoder,
            user_encoder,
            EncodedTable.from_arrays(arrays, "item_table", item_encoder.n_token_fields),
            IdIndex(_series(raw["users"])),
            EncodedTable.from_arrays(arrays, "user_table", user_encoder.n_token_fields),
            np.asarray(arrays["popularity"], dtype=np.int64),
            tuple(raw["rating_scale"]) if raw.get("rating_scale") else None,
            bool(raw.get("implicit", False)),
        )


ARRAY_KINDS = {"indices": "iu", "offsets": "iu", "dense": "fiu", "popularity": "iu"}
"""Element kinds (numpy ``dtype.kind``) each saved feature array may have, by name suffix."""


def check_feature_arrays(arrays: dict[str, np.ndarray]) -> list[str]:
    """Problems with saved feature arrays before they are used: each expected
    array present, with its element type (integer ids and offsets, never floats that would be cast
    silently) and rank."""
    out = []
    for prefix in ("item_table", "user_table"):
        for part, ndim in (("indices", 1), ("offsets", 1), ("dense", 2)):
            name = f"{prefix}.{part}"
            if name not in arrays:
                out.append(f"no array {name}")
                continue
            arr = arrays[name]
            if arr.dtype.kind not in ARRAY_KINDS[part] or arr.ndim != ndim:
                out.append(
                    f"{name}: {arr.dtype} of rank {arr.ndim}, expected {ARRAY_KINDS[part]!r} of rank {ndim}"
                )
    pop = arrays.get("popularity")
    if pop is None:
        out.append("no array popularity")
    elif pop.dtype.kind not in "iu" or pop.ndim != 1:
        out.append("popularity: not a vector of integers")
    return out


def _series(raw: dict[str, Any]) -> pl.Series:
    dtype = pl.Int64 if raw["dtype"].startswith("Int") else pl.String
    return pl.Series("id", raw["ids"], dtype=dtype)


def _append_unknown(table: EncodedTable, encoder: TableEncoder) -> EncodedTable:
    unk = encoder.encode_unknown(1)
    return EncodedTable(
        np.concatenate([table.indices, unk.indices]),
        np.concatenate([table.offsets, table.offsets[-1] + unk.offsets[1:]]),
        np.concatenate([table.dense, unk.dense]),
        table.n_token_fields,
    )


def _as_token_list(value: Any, separator: str | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [t.strip() for t in str(value).split(separator or "|") if t.strip()]


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
