"""Validation of the config sections: the range table (:data:`LIMITS`), the size caps and the type
checks every section runs when it is built (see :mod:`recsys.config`)."""

from __future__ import annotations

import functools
import math
import numbers
import re
import reprlib
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Literal

from recsys.errors import SpecError


class _Section:
    """Validates a config section when it is built (see :mod:`recsys.config`)."""

    section_name: typing.ClassVar[str] = ""
    """The section's dotted name in a config (``model.hybrid``)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check (and normalise: ``hidden`` to a tuple, integers of number fields to floats) every
        field; raise one :class:`SpecError` line naming the first bad key."""
        _validate_section(self)

    def _check_relations(self) -> None:
        """Checks between the section's fields, after each field is checked (none by default)."""


MAX_DIM = 4096
"""Largest ``embedding_dim`` and ``factor_dim``."""
MAX_WIDTH = 65536
"""Largest width of one hidden layer (8000 x 8000 layers are fine; ``10**9`` is refused)."""
MAX_LAYERS = 32
"""Most hidden layers."""
MAX_INT = 2**63 - 1
"""Every integer field is at most this (it must fit torch's and numpy's int64)."""


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: ``lo``/``hi`` bounds (None: unbounded), closed unless
    ``lo_open``/``hi_open``. Number fields must also be finite."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def text(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi}"
        return ""


_POSITIVE, _NON_NEGATIVE = Range(lo=1), Range(lo=0)

LIMITS: dict[str, dict[str, Range]] = {
    "model": {
        "embedding_dim": Range(1, MAX_DIM),
        "hidden": Range(1, MAX_WIDTH),  # each width
        "item_id_min_count": _POSITIVE,
        "factor_dim": Range(1, MAX_DIM),
    },
    "model.hybrid": {
        "item_item_max_items": _NON_NEGATIVE,
        "item_item_dense_items": Range(0, 100_000),
        "item_item_neighbours": Range(1, 10_000),
    },
    "meta": {
        "inner_steps": _NON_NEGATIVE,
        "inner_lr": _NON_NEGATIVE,
        "rating_weight": _NON_NEGATIVE,
        "rank_weight": _NON_NEGATIVE,
        "rank_threshold": Range(),  # any finite number
        "rank_negatives": _NON_NEGATIVE,
        "eval_inner_steps": _NON_NEGATIVE,
    },
    "train": {
        "epochs": _POSITIVE,
        "max_tasks": _POSITIVE,
        "meta_batch_size": _POSITIVE,
        "lr": Range(lo=0, lo_open=True),
        "weight_decay": _NON_NEGATIVE,
        "grad_clip": _NON_NEGATIVE,
        "weight_average": Range(0, 1, hi_open=True),
        "support_min": _POSITIVE,
        "support_max": _POSITIVE,
        "query_size": _POSITIVE,
        "min_user_ratings": _POSITIVE,
        "validation_fraction": Range(0, 1, hi_open=True),  # 0: no validation users
        "validation_support": _POSITIVE,
        "validation_query": _POSITIVE,
        "patience": _NON_NEGATIVE,
        "seed": _NON_NEGATIVE,
        "checkpoint_every": _POSITIVE,
        "checkpoint_interval_s": _NON_NEGATIVE,
        "max_nonfinite_steps": _POSITIVE,
        "num_threads": _POSITIVE,
    },
}
"""The range of every numeric field, by section (number fields must also be finite)."""

DEVICE_PATTERN = re.compile(r"cpu|cuda(:[0-9]{1,4})?|mps")
"""Accepted ``train.device`` names."""

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlevel = 60, 60, 40, 3


def _shown(value: Any) -> str:
    """A short, depth-safe repr of a rejected value."""
    try:
        return _REPR.repr(value)
    except (RecursionError, ValueError):
        return f"<{type(value).__name__}>"


@functools.cache
def _hints(klass: type) -> dict[str, Any]:
    return typing.get_type_hints(klass)


def _check_value(key: str, hint: Any, value: Any, limit: Range | None, nullable: bool = False) -> Any:
    """The value, normalised, if it fits ``hint`` and ``limit``; else a SpecError naming ``key``."""

    def fail(expected: str) -> SpecError:
        expected += " or null" if nullable else ""
        return SpecError(f"config key {key}: expected {expected}, got {_shown(value)}")

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(key, inner, value, limit, nullable=True)
    if origin is Literal:
        if not isinstance(value, str) or value not in args:
            raise fail("one of " + ", ".join(map(repr, args)))
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if hint is int:
        wanted = "an integer" + (f" {limit.text()}" if limit and limit.text() else "")
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise fail(wanted)
        value = int(value)
        if (limit is not None and value not in limit) or abs(value) > MAX_INT:
            raise fail(wanted if abs(value) <= MAX_INT else f"{wanted} (at most 2**63 - 1)")
        return value
    if hint is float:
        wanted = "a finite number" + (f" {limit.text()}" if limit and limit.text() else "")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise fail(wanted)
        try:
            number = float(value)
        except OverflowError:
            raise fail(wanted) from None
        if not math.isfinite(number) or (limit is not None and number not in limit):
            raise fail(wanted)
        return number
    if isinstance(hint, type) and issubclass(hint, _Section):  # a nested section (model.hybrid)
        if not isinstance(value, hint):
            raise fail(f"a {hint.__name__} (an object of its keys)")
        value.validate()
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] is int:
        wanted = f"a list of at most {MAX_LAYERS} integers, each {limit.text() if limit else ''}".rstrip(", ")
        if not isinstance(value, (list, tuple)) or len(value) > MAX_LAYERS:
            raise fail(wanted)
        for i, item in enumerate(value):
            _check_value(f"{key}[{i}]", int, item, limit)
        return tuple(int(v) for v in value)
    raise SpecError(f"config key {key}: no validation rule for type {hint!r}")  # a new field's type


def _validate_section(section: _Section) -> None:
    name = section.section_name or type(section).__name__
    limits = LIMITS.get(name, {})
    for f in fields(section):  # type: ignore[arg-type]
        key = f"{name}.{f.name}"
        value = _check_value(key, _hints(type(section))[f.name], getattr(section, f.name), limits.get(f.name))
        object.__setattr__(section, f.name, value)
    section._check_relations()
