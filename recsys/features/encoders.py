"""Fitted encoders that turn side-feature tables into CSR bags of token ids.

Token layout of one table (users or items): all token fields share one id space so a single
``nn.EmbeddingBag`` call embeds every field of every row. Id 0 is padding; field ``f`` owns ids
``[1 + offset_f, 1 + offset_f + size_f)``, where its local id 0 is the field's *unknown* token (values
never seen in training, missing values and empty lists all map to it) and local ids 1.. are its
vocabulary.

An :class:`EncodedTable` holds, for ``n`` rows and ``F`` token fields, ``n * F`` bags in CSR form:
bag ``r * F + f`` is ``indices[offsets[r * F + f] : offsets[r * F + f + 1]]`` — every bag holds at least
one token — plus a ``[n, D]`` float matrix of dense fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from recsys.data.spec import FieldKind, FieldSpec
from recsys.errors import FeatureMismatchError, SpecError, shown

UNKNOWN = "<unk>"


class Vocabulary:
    """Token -> local id (0 is unknown), fitted on training values with a minimum count."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = list(tokens)
        self._dict: dict[str, int] | None = None
        self._frame = pl.DataFrame(
            {
                "token": pl.Series(self.tokens, dtype=pl.String),
                "id": np.arange(1, len(self.tokens) + 1, dtype=np.int64),
            }
        )

    def __len__(self) -> int:
        """Number of ids including the unknown token."""
        return len(self.tokens) + 1

    @classmethod
    def fit(cls, values: pl.Series, min_count: int = 1) -> Vocabulary:
        flat = values.explode() if isinstance(values.dtype, pl.List) else values
        counts = flat.drop_nulls().cast(pl.String).value_counts(sort=False)
        kept = counts.filter(pl.col("count") >= min_count).sort(
            ["count", flat.name or ""], descending=[True, False]
        )
        return cls(kept[kept.columns[0]].to_list())

    def encode(self, values: pl.Series) -> np.ndarray:
        """Local ids of a string series (nulls and unseen tokens -> 0)."""
        if len(values) <= 64:  # a scoring request: dictionary lookups, no join
            if self._dict is None:
                self._dict = {t: i for i, t in enumerate(self.tokens, start=1)}
            return np.array([self._dict.get(v, 0) for v in values.cast(pl.String).to_list()], dtype=np.int64)
        frame = pl.DataFrame({"token": values.cast(pl.String)})
        joined = frame.join(self._frame, on="token", how="left", maintain_order="left")
        return joined["id"].fill_null(0).to_numpy().astype(np.int64)

    def lookup(self, token: Any) -> int:
        ids = self.encode(pl.Series([None if token is None else str(token)], dtype=pl.String))
        return int(ids[0])


@dataclass
class EncodedTable:
    """CSR bags (``n_rows * n_token_fields`` of them) and dense features of a table's rows."""

    indices: np.ndarray
    """Global token ids, int64."""
    offsets: np.ndarray
    """Bag boundaries, int64, length ``n_rows * n_token_fields + 1``."""
    dense: np.ndarray
    """Dense fields, float32 ``[n_rows, n_dense]``."""
    n_token_fields: int

    @property
    def n_rows(self) -> int:
        return (
            (len(self.offsets) - 1) // max(1, self.n_token_fields) if self.n_token_fields else len(self.dense)
        )

    def gather(self, rows: np.ndarray) -> EncodedTable:
        """The bags of ``rows`` (repeats allowed), vectorised with no per-row Python loop."""
        rows = np.asarray(rows, dtype=np.int64)
        F = self.n_token_fields
        if F == 0:
            return EncodedTable(np.zeros(0, np.int64), np.zeros(1, np.int64), self.dense[rows], 0)
        bags = (rows[:, None] * F + np.arange(F)).ravel()
        starts = self.offsets[bags]
        lengths = self.offsets[bags + 1] - starts
        new_offsets = np.zeros(len(bags) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        total = int(new_offsets[-1])
        within = np.arange(total, dtype=np.int64) - np.repeat(new_offsets[:-1], lengths)
        indices = self.indices[np.repeat(starts, lengths) + within]
        return EncodedTable(indices, new_offsets, self.dense[rows], F)

    def append(self, other: EncodedTable) -> EncodedTable:
        """This table's rows followed by ``other``'s (same fields): a catalogue that grows."""
        if other.n_token_fields != self.n_token_fields or other.dense.shape[1] != self.dense.shape[1]:
            raise ValueError("appending a table of other fields")
        return EncodedTable(
            np.concatenate([self.indices, other.indices]),
            np.concatenate([self.offsets, self.offsets[-1] + other.offsets[1:]]),
            np.concatenate([self.dense, other.dense]),
            self.n_token_fields,
        )

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.indices": self.indices,
            f"{prefix}.offsets": self.offsets,
            f"{prefix}.dense": self.dense,
        }

    def problems(self, name: str, encoder: TableEncoder, n_rows: int) -> list[str]:
        """What is wrong with this table as ``encoder``'s encoding of ``n_rows`` rows (empty when it is
        consistent): CSR offsets that start at 0, never decrease and end at the number of indices; every
        token id inside its own field's id range (so an embedding lookup can never go out of bounds);
        dense features of the right width, finite. Vectorised: linear in the table size."""
        F = self.n_token_fields
        if self.indices.ndim != 1 or self.offsets.ndim != 1 or self.dense.ndim != 2:
            return [f"{name}: arrays of the wrong rank"]
        out = []
        if self.dense.shape != (n_rows, encoder.n_dense):
            out.append(f"{name}.dense: shape {self.dense.shape}, expected {(n_rows, encoder.n_dense)}")
        elif not np.isfinite(self.dense).all():
            out.append(f"{name}.dense: values that are not finite")
        if F == 0:
            return out
        offsets, indices = self.offsets, self.indices
        if len(offsets) != n_rows * F + 1:
            return [*out, f"{name}.offsets: {len(offsets)} entries, expected {n_rows * F + 1}"]
        lengths = np.diff(offsets)
        if offsets[0] != 0 or offsets[-1] != len(indices) or (lengths < 0).any():
            return [*out, f"{name}.offsets: not increasing from 0 to {len(indices)} (the number of indices)"]
        field = np.repeat(np.arange(len(lengths), dtype=np.int64) % F, lengths)
        bounds = encoder.field_offsets
        bad = (indices < bounds[field]) | (indices >= bounds[field + 1])
        if bad.any():
            at = int(np.argmax(bad))
            f = int(field[at])
            out.append(
                f"{name}.indices: {int(bad.sum())} token id(s) out of range, e.g. {int(indices[at])} "
                f"for field '{encoder.token_fields[f].name}' (ids {int(bounds[f])}..{int(bounds[f + 1]) - 1})"
            )
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, n_token_fields: int) -> EncodedTable:
        return cls(
            np.asarray(arrays[f"{prefix}.indices"], dtype=np.int64),
            np.asarray(arrays[f"{prefix}.offsets"], dtype=np.int64),
            np.asarray(arrays[f"{prefix}.dense"], dtype=np.float32),
            n_token_fields,
        )


class FieldEncoder:
    """Encodes one field: a vocabulary for token kinds, bucket edges for numeric, mean/std for dense."""

    def __init__(
        self,
        spec: FieldSpec,
        vocab: Vocabulary | None = None,
        edges: list[float] | None = None,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        self.spec = spec
        self.vocab = vocab
        self.edges = edges
        self.mean = mean
        self.std = std

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def size(self) -> int:
        """Number of local ids including unknown (token kinds only)."""
        return len(self.vocab) if self.vocab is not None else 0

    def _bucket_tokens(self, values: pl.Series) -> pl.Series:
        assert self.edges is not None
        x = _as_numbers(values, self.name)
        b = np.searchsorted(np.asarray(self.edges), x, side="right")
        tokens = np.array([f"b{i}" for i in range(len(self.edges) + 1)], dtype=object)[b]
        return pl.Series(self.name, tokens, dtype=pl.String).set(pl.Series(np.isnan(x)), None)

    def fit(self, values: pl.Series) -> FieldEncoder:
        kind = self.spec.kind
        if kind is FieldKind.DENSE:
            x = values.cast(pl.Float64).drop_nulls()
            self.mean = float(x.mean()) if len(x) else 0.0
            self.std = float(x.std()) if len(x) > 1 and x.std() else 1.0
            return self
        if kind is FieldKind.NUMERIC:
            if self.spec.bins:
                self.edges = sorted(float(b) for b in self.spec.bins)
            else:
                x = values.cast(pl.Float64).drop_nulls().to_numpy()
                qs = np.linspace(0, 1, self.spec.buckets + 1)[1:-1]
                self.edges = sorted(set(np.quantile(x, qs).tolist())) if len(x) else []
            values = self._bucket_tokens(values)
        self.vocab = Vocabulary.fit(values.alias(self.name), self.spec.min_count)
        return self

    def encode(self, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(local ids, bag lengths) for token kinds; every bag holds at least the unknown token."""
        assert self.vocab is not None, f"field '{self.name}' is not fitted"
        kind = self.spec.kind
        if kind is FieldKind.NUMERIC:
            values = self._bucket_tokens(values)
        if kind is FieldKind.MULTI:
            if not isinstance(values.dtype, pl.List):
                raise FeatureMismatchError(f"field '{self.name}' expects lists of tokens, got {values.dtype}")
            values = values.fill_null([])
            lengths = values.list.len().to_numpy().astype(np.int64)
            flat = values.explode(empty_as_null=True)  # empty list -> one null -> unknown
            lengths = np.maximum(lengths, 1)
            return self.vocab.encode(flat), lengths
        if isinstance(values.dtype, pl.List):
            raise FeatureMismatchError(f"field '{self.name}' is {kind.value}, got lists")
        return self.vocab.encode(values), np.ones(len(values), dtype=np.int64)

    def encode_dense(self, values: pl.Series) -> np.ndarray:
        x = _as_numbers(values, self.name)
        z = (x - self.mean) / self.std
        return np.nan_to_num(z, nan=0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "tokens": self.vocab.tokens if self.vocab is not None else None,
            "edges": self.edges,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FieldEncoder:
        spec = FieldSpec(**raw["spec"])
        vocab = Vocabulary(raw["tokens"]) if raw.get("tokens") is not None else None
        return cls(spec, vocab, raw.get("edges"), raw.get("mean", 0.0), raw.get("std", 1.0))


class TableEncoder:
    """Encodes a user or item table (key + fields) into an :class:`EncodedTable`."""

    def __init__(self, key: str, fields: list[FieldEncoder]) -> None:
        self.key = key
        self.fields = fields
        self.token_fields = [f for f in fields if f.spec.is_token]
        self.dense_fields = [f for f in fields if f.spec.kind is FieldKind.DENSE]
        sizes = [f.size for f in self.token_fields]
        self.field_offsets = (
            np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64) + 1 if sizes else np.ones(1, np.int64)
        )

    @property
    def num_embeddings(self) -> int:
        """Rows of the shared embedding table (padding id 0 included)."""
        return int(self.field_offsets[-1])

    @property
    def n_token_fields(self) -> int:
        return len(self.token_fields)

    @property
    def n_dense(self) -> int:
        return len(self.dense_fields)

    @classmethod
    def fit(cls, key: str, specs: list[FieldSpec], frame: pl.DataFrame) -> TableEncoder:
        encoders = []
        for spec in specs:
            if spec.kind is FieldKind.TEXT:
                continue
            if spec.name not in frame.columns:
                raise SpecError(f"field '{spec.name}' declared in the spec is not in the table")
            encoders.append(FieldEncoder(spec).fit(frame[spec.name]))
        return cls(key, encoders)

    def signature(self) -> list[tuple[str, str]]:
        """(name, kind) of each encoded field, to check a model against data."""
        return [(f.name, f.spec.kind.value) for f in self.fields]

    def encode(self, frame: pl.DataFrame) -> EncodedTable:
        n = frame.height
        F = self.n_token_fields
        lengths = np.zeros((n, F), dtype=np.int64)
        per_field_ids = []
        for j, enc in enumerate(self.token_fields):
            if enc.name not in frame.columns:
                raise FeatureMismatchError(
                    f"the model expects field '{enc.name}' ({enc.spec.kind.value}); the data has {frame.columns}"
                )
            ids, lens = enc.encode(frame[enc.name])
            lengths[:, j] = lens
            per_field_ids.append(ids + self.field_offsets[j])
        offsets = np.zeros(n * F + 1, dtype=np.int64)
        np.cumsum(lengths.ravel(), out=offsets[1:])
        indices = np.zeros(int(offsets[-1]), dtype=np.int64)
        bag_starts = offsets[:-1].reshape(n, F) if F else np.zeros((n, 0), np.int64)
        for j, ids in enumerate(per_field_ids):
            lens = lengths[:, j]
            field_starts = np.zeros(n, dtype=np.int64)
            np.cumsum(lens[:-1], out=field_starts[1:])
            dest = np.repeat(bag_starts[:, j], lens) + (np.arange(len(ids)) - np.repeat(field_starts, lens))
            indices[dest] = ids
        dense = np.zeros((n, self.n_dense), dtype=np.float32)
        for j, enc in enumerate(self.dense_fields):
            if enc.name not in frame.columns:
                raise FeatureMismatchError(
                    f"the model expects dense field '{enc.name}'; the data has {frame.columns}"
                )
            dense[:, j] = enc.encode_dense(frame[enc.name])
        return EncodedTable(indices, offsets, dense, F)

    def encode_unknown(self, n: int) -> EncodedTable:
        """Rows with every field unknown (users or items without a feature row)."""
        F = self.n_token_fields
        indices = np.tile(self.field_offsets[:-1] if F else np.zeros(0, np.int64), n).astype(np.int64)
        offsets = np.arange(n * F + 1, dtype=np.int64)
        return EncodedTable(indices, offsets, np.zeros((n, self.n_dense), np.float32), F)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "fields": [f.to_dict() for f in self.fields]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TableEncoder:
        return cls(raw["key"], [FieldEncoder.from_dict(f) for f in raw["fields"]])


def _as_numbers(values: pl.Series, name: str) -> np.ndarray:
    """Float values of a numeric field; text that is not a number is a FeatureMismatchError."""
    if values.dtype == pl.String:
        cast = values.str.strip_chars().cast(pl.Float64, strict=False)
        if cast.null_count() > values.null_count():
            bad = values.filter(cast.is_null() & values.is_not_null()).head(1).to_list()
            raise FeatureMismatchError(
                f"numeric field '{name}' got a value that is not a number: {shown(bad[0])}"
            )
        values = cast
    try:
        return values.cast(pl.Float64).to_numpy().astype(np.float64)
    except pl.exceptions.PolarsError as exc:
        raise FeatureMismatchError(
            f"numeric field '{name}' got values of type {values.dtype} ({exc})"
        ) from None
