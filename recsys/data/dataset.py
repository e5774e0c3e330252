"""Datasets: an interaction log plus optional user and item tables, loaded through a spec.

``load_dataset`` accepts a built-in name (``ml-100k``, ``ml-1m``, ``melu-ml1m``, ``ml-latest-small``,
``ml-latest``, ``ml-25m``), a TOML spec file, a folder holding a built-in layout or a ``spec.toml``,
or a single interaction file (CSV/TSV/Parquet) in the canonical schema.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data.log_checks import drop_constant_timestamps
from recsys.data.melu import MELU_SOURCE
from recsys.data.readers import read_interactions, read_side_table
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.data.spec import DatasetSpec, FieldKind, FieldSpec, TableSpec
from recsys.data.tables import ROW, ReadReport, read_raw, resolve
from recsys.errors import DataError, DatasetNotFoundError, SpecError
from recsys.utils import io as io_utils

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "data"


def data_dir() -> Path:
    """Where datasets live: ``RECSYS_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("RECSYS_DATA_DIR", DEFAULT_DATA_DIR))


def builtin_specs() -> dict[str, list[DatasetSpec]]:
    """Built-in dataset specs, by dataset name, each with its possible file layouts."""
    out: dict[str, list[DatasetSpec]] = {}
    for entry in sorted(resources.files("recsys.data").joinpath("specs").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            spec = DatasetSpec.from_toml(Path(str(entry)))
            out.setdefault(spec.name, []).append(spec)
    return out


def _layout_present(spec: DatasetSpec, directory: Path) -> bool:
    tables = [spec.interactions, spec.items] + ([spec.users] if spec.users else [])
    return all(t is None or resolve(t.path, directory).exists() for t in tables)


@dataclass
class Dataset:
    """An interaction log in the canonical schema, with optional side tables and the spec that read them."""

    name: str
    interactions: pl.DataFrame
    spec: DatasetSpec
    users: pl.DataFrame | None = None
    items: pl.DataFrame | None = None
    path: Path | None = None
    report: ReadReport = field(default_factory=ReadReport)

    @property
    def implicit(self) -> bool:
        return self.spec.implicit or RATING not in self.interactions.columns

    def as_implicit(self) -> Dataset:
        """The same log as implicit feedback: every rating becomes an interaction (ratings dropped)."""
        from dataclasses import replace

        return replace(
            self,
            name=self.name if self.name.endswith("-implicit") else f"{self.name}-implicit",
            interactions=self.interactions.drop(RATING, strict=False),
            spec=replace(self.spec, implicit=True, rating_scale=None),
        )

    @property
    def rating_scale(self) -> tuple[float, float] | None:
        if self.implicit:
            return None
        if self.spec.rating_scale:
            return self.spec.rating_scale
        r = self.interactions[RATING]
        return float(r.min()), float(r.max())

    @property
    def has_timestamps(self) -> bool:
        return TIMESTAMP in self.interactions.columns

    def titles(self) -> dict[Any, str]:
        """Item id -> display title (empty when the dataset has none)."""
        f = self.spec.title_field
        if self.items is None or not f or f not in self.items.columns:
            return {}
        return dict(zip(self.items[ITEM].to_list(), self.items[f].to_list(), strict=True))

    def stats(self) -> dict[str, Any]:
        """Users, items, interactions, density and per-user / per-item count quantiles."""
        inter = self.interactions
        n_users = inter[USER].n_unique()
        n_items = inter[ITEM].n_unique()
        per_user = inter.group_by(USER).len()["len"].to_numpy()
        per_item = inter.group_by(ITEM).len()["len"].to_numpy()
        qs = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]

        def quantiles(x: np.ndarray) -> dict[str, float]:
            return {f"p{int(q * 100)}": float(np.quantile(x, q)) for q in qs} | {"mean": float(x.mean())}

        out: dict[str, Any] = {
            "name": self.name,
            "users": n_users,
            "items": n_items,
            "interactions": inter.height,
            "density": inter.height / max(1, n_users * n_items),
            "feedback": "implicit" if self.implicit else "explicit",
            "ratings_per_user": quantiles(per_user),
            "ratings_per_item": quantiles(per_item),
        }
        if not self.implicit:
            r = inter[RATING]
            out["rating_mean"] = float(r.mean())
            out["rating_values"] = {
                str(k): int(v) for k, v in inter.group_by(RATING).len().sort(RATING).iter_rows()
            }
        if self.has_timestamps:
            out["time_span"] = [int(inter[TIMESTAMP].min()), int(inter[TIMESTAMP].max())]
        if self.users is not None:
            out["user_fields"] = [f.name for f in self.spec.user_fields]
            out["users_with_features"] = self.users.height
        if self.items is not None:
            out["item_fields"] = [f.name for f in self.spec.item_fields]
            out["items_with_features"] = self.items.height
        if self.report.duplicates_dropped:
            out["duplicates_dropped"] = self.report.duplicates_dropped
        return out


def read_dataset(spec: DatasetSpec, directory: str | Path | None) -> Dataset:
    """Read every table of ``spec`` relative to ``directory``."""
    report = ReadReport()
    inter = read_interactions(
        spec.interactions, directory, rating_scale=spec.rating_scale, implicit=spec.implicit, report=report
    )
    users = read_side_table(spec.users, directory, USER) if spec.users else None
    items = read_side_table(spec.items, directory, ITEM) if spec.items else None
    inter, users, items = _align_id_types(inter, users, items)
    inter = drop_constant_timestamps(inter, spec.interactions.path or spec.name)
    return Dataset(
        spec.name,
        inter,
        spec,
        users=users,
        items=items,
        path=Path(directory) if directory else None,
        report=report,
    )


def _align_id_types(
    inter: pl.DataFrame, users: pl.DataFrame | None, items: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None]:
    """Make id columns of side tables the same dtype as the log's (string if either is)."""

    def align(key: str, side: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        nonlocal inter
        if side is None or side[key].dtype == inter[key].dtype:
            return inter, side
        return inter.with_columns(pl.col(key).cast(pl.String)), side.with_columns(pl.col(key).cast(pl.String))

    inter, users = align(USER, users)
    inter, items = align(ITEM, items)
    return inter, users, items


def load_dataset(
    name_or_path: str | Path,
    *,
    data_root: str | Path | None = None,
    spec: DatasetSpec | None = None,
    columns: dict[str, str] | None = None,
    rating_scale: tuple[float, float] | None = None,
    implicit: bool = False,
) -> Dataset:
    """Load a dataset by built-in name, spec file, folder or interaction file.

    ``columns`` maps canonical names to file columns for a plain interaction file
    (e.g. ``{"user_id": "customer", "item_id": "sku"}``). ``implicit``: treat the log as implicit
    feedback whatever its source (ratings dropped, see :meth:`Dataset.as_implicit`).
    """
    ds = _load_dataset(
        name_or_path,
        data_root=data_root,
        spec=spec,
        columns=columns,
        rating_scale=rating_scale,
        implicit=implicit,
    )
    return ds.as_implicit() if implicit and not ds.implicit else ds


def _load_dataset(
    name_or_path: str | Path,
    *,
    data_root: str | Path | None,
    spec: DatasetSpec | None,
    columns: dict[str, str] | None,
    rating_scale: tuple[float, float] | None,
    implicit: bool,
) -> Dataset:
    if spec is not None:
        return read_dataset(spec, Path(name_or_path) if name_or_path else None)
    target = str(name_or_path)
    builtins = builtin_specs()
    if target in builtins:
        root = Path(data_root) if data_root else data_dir()
        directory = root / target
        for candidate in builtins[target]:
            if _layout_present(candidate, directory):
                return read_dataset(candidate, directory)
        raise DatasetNotFoundError(_missing_message(target, directory, builtins[target]))
    path = Path(target)
    if path.suffix == ".toml":
        spec = DatasetSpec.from_toml(path)
        return read_dataset(spec, path.parent)
    if path.is_dir():
        if (path / "spec.toml").exists():
            return read_dataset(DatasetSpec.from_toml(path / "spec.toml"), path)
        for specs in builtins.values():
            for candidate in specs:
                if _layout_present(candidate, path):
                    return read_dataset(candidate, path)
        raise DatasetNotFoundError(
            f"{path}: no spec.toml and no built-in layout recognised; pass a spec file or an interaction file"
        )
    if path.exists():
        cols = columns or {}
        table = TableSpec(path=str(path), columns=_default_columns(path, cols))
        spec = DatasetSpec(
            name=path.stem, interactions=table, rating_scale=rating_scale, implicit=implicit, layout="file"
        )
        return read_dataset(spec, None)
    known = ", ".join(sorted(builtins))
    raise DatasetNotFoundError(f"'{target}' is neither a built-in dataset ({known}) nor an existing path")


def load_files(
    interactions: str | Path,
    *,
    users: str | Path | None = None,
    items: str | Path | None = None,
    columns: dict[str, str] | None = None,
    rating_scale: tuple[float, float] | None = None,
    implicit: bool = False,
) -> Dataset:
    """An interaction file plus optional user/item tables without a spec: field kinds are inferred
    (numbers -> numeric buckets, strings -> categorical, strings holding ``|`` -> multi-valued).
    A column named ``title`` in the item table is kept for display."""
    inter_path = Path(interactions)
    table = TableSpec(path=str(inter_path), columns=_default_columns(inter_path, columns or {}))
    user_spec = _inferred_table(Path(users), USER) if users else None
    item_spec = _inferred_table(Path(items), ITEM) if items else None
    spec = DatasetSpec(
        name=inter_path.stem,
        interactions=table,
        users=user_spec,
        items=item_spec,
        rating_scale=rating_scale,
        implicit=implicit,
        title_field="title" if item_spec and any(f.name == "title" for f in item_spec.fields) else None,
        layout="files",
    )
    return read_dataset(spec, None)


def _inferred_table(path: Path, key: str) -> TableSpec:
    """A side table's spec with field kinds inferred from its values (read and validated by read_raw:
    a missing, empty, garbled or non-UTF-8 file is a DataError naming it)."""

    frame = read_raw(TableSpec(path=str(path)), None).drop(ROW)
    if key not in frame.columns:
        raise DataError(
            "missing key column", path=str(path), field=key, expected=f"a '{key}' column; got {frame.columns}"
        )
    fields = []
    for name, dtype in frame.schema.items():
        if name == key:
            continue
        values = frame[name]
        if name == "title":
            fields.append(FieldSpec(name, FieldKind.TEXT))
        elif isinstance(dtype, pl.List):
            fields.append(FieldSpec(name, FieldKind.MULTI))
        elif dtype.is_numeric() or (dtype == pl.String and _all_numbers(values)):
            fields.append(FieldSpec(name, FieldKind.NUMERIC))
        elif (
            dtype == pl.String
            and (values.str.contains("|", literal=True).fill_null(False).mean() or 0) > 0.05
        ):
            fields.append(FieldSpec(name, FieldKind.MULTI, separator="|"))
        else:
            fields.append(FieldSpec(name, FieldKind.CATEGORICAL))
    return TableSpec(path=str(path), key=key, fields=fields)


def _all_numbers(values: pl.Series) -> bool:
    """Every non-empty value of a string column parses as a number (and there is at least one)."""
    text = values.str.strip_chars().replace("", None)
    return (
        text.null_count() < len(text)
        and text.cast(pl.Float64, strict=False).null_count() == text.null_count()
    )


def _default_columns(path: Path, given: dict[str, str]) -> dict[str, str]:
    """Canonical -> file column; unmapped optional columns are used when the file has them."""

    cols = {USER: USER, ITEM: ITEM} | {k: v for k, v in given.items() if v}
    if path.suffix in (".parquet", ".pq"):
        io_utils.check_input_file(path, "interactions file", io_utils.MAX_INPUT_BYTES)
        try:
            header = list(pl.read_parquet_schema(path).keys())
        except Exception as exc:  # polars raises several types for damaged files
            raise DataError(
                f"not a readable Parquet file ({type(exc).__name__}: {str(exc)[:120]})", path=str(path)
            ) from None
    else:
        header = read_raw(TableSpec(path=str(path)), None).columns
    for optional in (RATING, TIMESTAMP):
        if optional not in cols and optional in header:
            cols[optional] = optional
    if TIMESTAMP not in cols:
        named_like = [c for c in header if c.strip().lower() in TIMESTAMP_NAMES]
        if len(named_like) == 1:
            cols[TIMESTAMP] = named_like[0]
            log.warning(
                "%s: using column '%s' as the timestamp (--time-col names another one)", path, named_like[0]
            )
        elif named_like:
            log.warning(
                "%s: columns %s look like timestamps but none is used: name one with --time-col",
                path,
                named_like,
            )
    unused = [c for c in header if c not in cols.values() and not c.startswith("__")]
    if unused:
        log.warning(
            "%s: column(s) %s ignored (map them with --user-col/--item-col/--rating-col/--time-col, "
            "or a spec)",
            path,
            unused,
        )
    return cols


TIMESTAMP_NAMES = frozenset(
    ("timestamp", "ts", "time", "datetime", "date", "event_time", "created_at", "unix_time", "unixtime")
)
"""Column names taken as the timestamp of a log read without a spec or --time-col (when exactly one of
them is present; lower-cased, surrounding spaces ignored)."""


def _missing_message(name: str, directory: Path, specs: list[DatasetSpec]) -> str:
    layouts = "; ".join(
        f"{s.layout}: {', '.join(t.path for t in (s.interactions, s.users, s.items) if t)}" for s in specs
    )
    if name == "melu-ml1m":
        how = (
            f"put MeLU's files (movies_extrainfos.dat, warm_state*.json, *_cold_state*.json) in {directory} "
            f"from {MELU_SOURCE}, and run `recsys data download ml-1m` for the user features"
        )
    else:
        how = f"run `recsys data download {name}`"
    return f"dataset '{name}' not found in {directory} (expected files, by layout: {layouts}); {how}"


def validate_spec_kinds(spec: DatasetSpec) -> None:
    """Raise SpecError early for fields whose kind cannot be encoded."""
    for table in (spec.users, spec.items):
        for f in table.fields if table else []:
            if f.from_flags and f.kind.value != "multi":
                raise SpecError(f"field '{f.name}': from_flags needs kind = 'multi'")
