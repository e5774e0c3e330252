"""Dataset specs: which files hold the interactions and side features, and what kind each field is.

A spec is a small TOML file (or the same dataclasses built in Python). Specs for the built-in datasets
ship in ``recsys/data/specs/``. Example::

    name = "my-shop"
    rating_scale = [1, 5]            # omit for implicit feedback

    [interactions]
    path = "events.csv"
    separator = ","
    columns = { user_id = "customer", item_id = "sku", rating = "stars", timestamp = "ts" }

    [items]
    path = "products.parquet"
    key = "sku"
    fields = [
      { name = "brand",    kind = "categorical" },
      { name = "tags",     kind = "multi", separator = "|" },
      { name = "price",    kind = "numeric", buckets = 10 },
      { name = "title",    kind = "text" },            # kept for display, not a feature
    ]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from recsys.data.schema import CANONICAL_COLUMNS, ITEM, RATING, TIMESTAMP, USER
from recsys.errors import SpecError
from recsys.utils.io import read_bytes_bounded

MAX_SPEC_BYTES = 1 << 20
"""Cap on a dataset spec (TOML): a few hundred bytes in practice; read only if it is a regular file."""


class FieldKind(StrEnum):
    """How a side-feature field is encoded."""

    CATEGORICAL = "categorical"
    """One token per row (gender, occupation, brand)."""
    MULTI = "multi"
    """A list of tokens per row: a list column, or a delimited string such as ``Action|Comedy``."""
    NUMERIC = "numeric"
    """A number bucketised into tokens (quantile buckets fitted on training rows, or explicit bins)."""
    DENSE = "dense"
    """A number kept as a standardised dense input."""
    TEXT = "text"
    """Kept for display (titles); not a model feature."""


@dataclass
class FieldSpec:
    """One side-feature field of the user or item table."""

    name: str
    """Name of the field in the engine (and in user-feature dicts at scoring time)."""
    kind: FieldKind = FieldKind.CATEGORICAL
    """How the field is encoded (see :class:`FieldKind`)."""
    column: str | None = None
    """Column in the file; defaults to ``name``."""
    separator: str | None = None
    """Delimiter of a ``multi`` field stored as a string (``|`` when not given)."""
    strip: bool = True
    """Strip whitespace around each token of a ``multi`` field."""
    buckets: int = 8
    """Number of quantile buckets of a ``numeric`` field."""
    bins: list[float] | None = None
    """Explicit bucket edges of a ``numeric`` field (overrides ``buckets``)."""
    from_flags: list[str] | None = None
    """Build a ``multi`` field from 0/1 flag columns: the tokens are the names of the columns set to 1."""
    min_count: int = 1
    """Tokens seen fewer times than this in training map to the unknown token."""
    max_tokens: int | None = None
    """Keep at most this many tokens of a ``multi`` field per row (the first ones)."""
    truncate: int | None = None
    """Keep only the first characters of each token (a zip code's region: ``truncate = 2``)."""
    null_values: list[str] | None = None
    """Tokens that mean "missing" (``N/A``)."""

    def __post_init__(self) -> None:
        try:
            self.kind = FieldKind(self.kind)
        except ValueError:
            kinds = ", ".join(k.value for k in FieldKind)
            raise SpecError(
                f"field '{self.name}': unknown kind {self.kind!r}; expected one of {kinds}"
            ) from None
        if self.column is None:
            self.column = self.name
        if self.kind is FieldKind.MULTI and self.separator is None and self.from_flags is None:
            self.separator = "|"
        if not isinstance(self.buckets, int) or isinstance(self.buckets, bool):
            raise SpecError(f"field '{self.name}': buckets must be an integer, got {self.buckets!r}")
        for name in ("separator", "column"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise SpecError(f"field '{self.name}': {name} must be a string, got {value!r}")
        if self.buckets < 1:
            raise SpecError(f"field '{self.name}': buckets must be at least 1, got {self.buckets}")

    @property
    def is_token(self) -> bool:
        return self.kind in (FieldKind.CATEGORICAL, FieldKind.MULTI, FieldKind.NUMERIC)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["kind"] = self.kind.value
        return out


@dataclass
class TableSpec:
    """How to read one file (interactions, users or items)."""

    path: str
    """File path, relative to the dataset directory (or absolute)."""
    format: str | None = None
    """``csv``, ``tsv``, ``parquet``, ``dat`` (lines split on a multi-character separator) or a named
    loader (``melu-json``); guessed from the extension when omitted."""
    separator: str = ","
    """Field delimiter of text formats (may be several characters for ``dat``)."""
    header: bool = True
    """Whether the first line holds column names."""
    names: list[str] | None = None
    """Column names of a file without a header."""
    encoding: str = "utf-8"
    """Text encoding (``utf-8`` or ``latin-1``)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Interactions only: canonical name (user_id, item_id, rating, timestamp) -> column in the file."""
    key: str | None = None
    """Users/items only: the id column (defaults to ``user_id`` / ``item_id``)."""
    id_prefix: str | None = None
    """Strip this prefix from id values (RecBole's ``1m_`` user ids)."""
    fields: list[FieldSpec] = field(default_factory=list)
    """Users/items only: the side-feature fields."""
    quote_char: str | None = '"'
    """Quote character of CSV files (``None`` disables quoting)."""

    def __post_init__(self) -> None:
        self.fields = [f if isinstance(f, FieldSpec) else _field_from_dict(f) for f in self.fields]
        if self.quote_char == "":
            self.quote_char = None
        for name in ("path", "separator", "encoding"):
            if not isinstance(getattr(self, name), str):
                raise SpecError(f"table '{self.path}': {name} must be a string, got {getattr(self, name)!r}")
        if self.format is None:
            self.format = _guess_format(self.path, self.separator)
        if self.format == "tsv":
            self.separator = "\t"
        bad = set(self.columns) - set(CANONICAL_COLUMNS)
        if bad:
            raise SpecError(
                f"table '{self.path}': unknown canonical column(s) {sorted(bad)}; "
                f"expected keys among {list(CANONICAL_COLUMNS)}"
            )
        if self.encoding.lower().replace("_", "-") not in (
            "utf-8",
            "utf8",
            "latin-1",
            "latin1",
            "iso-8859-1",
        ):
            raise SpecError(
                f"table '{self.path}': unsupported encoding {self.encoding!r}; use utf-8 or latin-1"
            )


@dataclass
class DatasetSpec:
    """Everything needed to load a dataset: its files, columns and field kinds."""

    name: str
    """Dataset name (used in reports and tracking)."""
    interactions: TableSpec
    """The interaction log."""
    users: TableSpec | None = None
    """Optional user side-feature table."""
    items: TableSpec | None = None
    """Optional item side-feature table."""
    rating_scale: tuple[float, float] | None = None
    """Inclusive (min, max) of ratings; ratings outside are an error. ``None``: not checked."""
    implicit: bool = False
    """Treat the log as implicit feedback even if it has a rating column."""
    title_field: str | None = None
    """Item field shown as the title in recommendations."""
    layout: str = "default"
    """Name of the file layout (a dataset may ship in several)."""
    source: str | None = None
    """Where the data comes from (for reports)."""

    @property
    def user_fields(self) -> list[FieldSpec]:
        return [f for f in (self.users.fields if self.users else []) if f.kind is not FieldKind.TEXT]

    @property
    def item_fields(self) -> list[FieldSpec]:
        return [f for f in (self.items.fields if self.items else []) if f.kind is not FieldKind.TEXT]

    @classmethod
    def from_toml(cls, path: str | Path) -> DatasetSpec:
        path = Path(path)
        if not path.exists():
            raise SpecError(f"spec file not found: {path}")
        data = read_bytes_bounded(path, "spec file", MAX_SPEC_BYTES, error=SpecError)  # regular files only
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise SpecError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path}: invalid TOML: {exc}") from None
        try:
            return cls.from_dict(raw)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None
        except (TypeError, ValueError) as exc:  # a value of the wrong type (rating_scale = "abc"...)
            raise SpecError(f"{path}: a value has the wrong type ({exc})") from None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DatasetSpec:
        raw = dict(raw)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise SpecError(f"unknown spec key(s) {sorted(unknown)}; expected among {sorted(known)}")
        if "name" not in raw or "interactions" not in raw:
            raise SpecError("a spec needs 'name' and an [interactions] table")
        for key in ("interactions", "users", "items"):
            if raw.get(key) is not None:
                raw[key] = _table_from_dict(raw[key], key)
        if raw.get("rating_scale") is not None:
            lo, hi = raw["rating_scale"]
            if not lo < hi:
                raise SpecError(f"rating_scale must be [min, max] with min < max, got {raw['rating_scale']}")
            raw["rating_scale"] = (float(lo), float(hi))
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        def table(t: TableSpec | None) -> dict[str, Any] | None:
            if t is None:
                return None
            out = {f.name: getattr(t, f.name) for f in fields(t)}
            out["fields"] = [f.to_dict() for f in t.fields]
            return out

        return {
            "name": self.name,
            "interactions": table(self.interactions),
            "users": table(self.users),
            "items": table(self.items),
            "rating_scale": list(self.rating_scale) if self.rating_scale else None,
            "implicit": self.implicit,
            "title_field": self.title_field,
            "layout": self.layout,
            "source": self.source,
        }


def _field_from_dict(raw: dict[str, Any]) -> FieldSpec:
    if not isinstance(raw, dict) or "name" not in raw:
        raise SpecError(f"a field needs at least a 'name', got {raw!r}")
    known = {f.name for f in fields(FieldSpec)}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(
            f"field '{raw['name']}': unknown key(s) {sorted(unknown)}; expected among {sorted(known)}"
        )
    return FieldSpec(**raw)


def _table_from_dict(raw: dict[str, Any], what: str) -> TableSpec:
    if not isinstance(raw, dict) or "path" not in raw:
        raise SpecError(f"[{what}] needs a 'path'")
    known = {f.name for f in fields(TableSpec)}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"[{what}]: unknown key(s) {sorted(unknown)}; expected among {sorted(known)}")
    return TableSpec(**raw)


def _guess_format(path: str, separator: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if len(separator) > 1:
        return "dat"
    return "csv"


def default_interaction_columns(
    user_col: str = USER,
    item_col: str = ITEM,
    rating_col: str | None = RATING,
    time_col: str | None = TIMESTAMP,
) -> dict[str, str]:
    cols = {USER: user_col, ITEM: item_col}
    if rating_col:
        cols[RATING] = rating_col
    if time_col:
        cols[TIMESTAMP] = time_col
    return cols
