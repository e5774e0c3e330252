"""Configuration of the engine: model, meta-learning and training, each field documented.

Configs round-trip through JSON and TOML (``RecommenderConfig.from_file``); unknown keys are an error
so a typo never silently falls back to a default.

Every section is validated when it is built (directly, from a dict or file, by ``override`` or from a
saved model): each field's type (an integer field refuses ``"ten"``, ``1.5`` and ``True``; a number
field accepts integers but not strings or booleans; ``Literal`` fields accept only their choices, read
from the type hints), its range (:data:`LIMITS`: epochs >= 1, learning rates finite and > 0...) and a
few relations between fields (``support_min <= support_max``). A failure is one :class:`SpecError`
line naming the dotted key, the value and what was expected. Sizes are capped so that a tiny config
cannot ask for an absurd network before any shape check: ``embedding_dim`` and ``factor_dim`` at most
4096 (:data:`MAX_DIM`), each ``hidden`` width at most 65536 (:data:`MAX_WIDTH`, so 8000 x 8000 layers
are fine and ``10**9`` is refused) and at most 32 hidden layers (:data:`MAX_LAYERS`). Assigning a
field after the config is built is not checked.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import re
import reprlib
import stat
import tomllib
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from recsys.errors import SpecError


class _Section:
    """Validates a config section when it is built (see the module docstring)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check (and normalise: ``hidden`` to a tuple, integers of number fields to floats) every
        field; raise one :class:`SpecError` line naming the first bad key."""
        _validate_section(self)


@dataclass
class HybridConfig(_Section):
    """Options of the ``hybrid`` head (the ``model.hybrid`` section; ignored by the other heads).

    Before this section existed its keys sat directly in ``model`` (``model.trend``): saved models and
    checkpoints written so still load with the same meaning, and a config given that way is mapped
    here with a ``FutureWarning``."""

    fold_in_trust: Literal["global", "support"] = "support"
    """``hybrid`` head: how far a new user's ratings move the ridge fold-in away from the prior.
    ``global``: one learned shrinkage for every user; ``support``: the shrinkage is also a learned
    (linear, zero-initialised) function of the support set: its size, the mean and spread of its
    residuals and its items' mean factors. Chosen by nested evaluation on ML-100k (see the README)."""
    item_item: bool = True
    """``hybrid`` head: blend a fixed item-item matrix (EASE, fitted on the training users, its
    regularisation chosen on validation users) into the ranking scores."""
    item_item_kinds: Literal["ease", "ease+cosine"] = "ease"
    """Candidate item-item matrices for the blend, one chosen on validation users: ``ease`` (EASE at a
    few regularisation strengths) or ``ease+cosine`` (also cosine item-kNN with 100 or 400
    neighbours; on ML-100k validation users it lifted implicit-feedback temporal Recall@20 by 13-17%
    but was mixed elsewhere, see the README)."""
    trend: bool = True
    """``hybrid`` head: after training, add a time-decayed popularity prior ("what is trending") to the
    ranking scores; its half-life (7-365 days, or all-time popularity) and weight (0 included) are
    chosen on validation users. Without timestamps only all-time popularity is a candidate."""
    item_item_max_items: int = 20_000
    """Catalogues larger than this skip the item-item blend (it is dense, n_items^2)."""


@dataclass
class ModelConfig(_Section):
    """The network: per-field embeddings pooled by ``EmbeddingBag`` and a decision network."""

    embedding_dim: int = 32
    """Dimension of every field's embedding."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the decision network (ReLU between layers)."""
    pooling: Literal["mean", "sum", "max"] = "mean"
    """How multi-valued fields (genres, actors) pool their token embeddings."""
    use_item_id: bool = True
    """Add an item-id field (one embedding per training item; new items map to unknown)."""
    item_id_init: Literal["random", "als"] = "als"
    """``als``: start each training item's item-id embedding from its ALS factors (biased MF on ratings
    for the rating path, ``implicit``'s ALS for the ranking path), rescaled to the initial scale;
    ``random``: a normal initialisation. Chosen by nested evaluation on ML-100k (see the README)."""
    item_id_min_count: int = 1
    """Items with fewer training interactions get the unknown item id."""
    use_user_features: bool = True
    """Use the user table's fields (demographics) when the dataset has them."""
    use_item_features: bool = True
    """Use the item table's fields (genres, directors...) when the dataset has them."""
    head: Literal["melu", "factorized", "hybrid"] = "hybrid"
    """``melu``: MLP over [user; item] (MeLU). ``factorized``: score = <user tower, item tower> + item bias,
    with the item side cacheable for very large catalogues. ``hybrid``: closed-form ridge fold-in of
    the user's factors for ratings plus a support-set encoder for catalogue ranking."""
    factor_dim: int = 64
    """Dimension of the user/item factors of the ``factorized`` and ``hybrid`` heads."""
    sparse: bool = False
    """Sparse gradients for the embedding tables (with a sparse-aware optimiser)."""
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    """Options of the ``hybrid`` head (``model.hybrid.*``); the other heads ignore them."""


@dataclass
class MetaConfig(_Section):
    """The per-user inner loop (MAML)."""

    inner_steps: int = 0
    """Local gradient steps on a user's support ratings. The default ``hybrid`` head already adapts in
    closed form (ridge fold-in + support encoder), and extra steps measured no better on validation
    users (see the README's ablation table); the ``melu`` head needs steps (MeLU used 5)."""
    inner_lr: float = 0.05
    """Local learning rate (initial value when ``meta_sgd``)."""
    adapt: Literal["decision", "output", "all"] = "decision"
    """Which parameters adapt per user: ``decision`` (MeLU: the decision network), ``output`` (its last
    layer only), ``all`` (the decision network and the user's embedding vector)."""
    first_order: bool = False
    """First-order MAML: the meta-gradient does not flow through the inner updates."""
    meta_sgd: bool = False
    """Meta-SGD: learn a per-parameter inner learning rate (for the ``hybrid`` head, one per entry of the
    user vectors its fold-in gives; mixed on ML-100k validation users, see the README)."""
    loss: Literal["mse", "mae", "huber"] = "mse"
    """Loss on ratings used in the inner loop and on the query set."""
    rating_weight: float = 1.0
    """Weight of the rating loss on the query set (ignored for implicit feedback)."""
    rank_weight: float = 1.0
    """Weight of the catalogue ranking loss: a softmax over the catalogue of the user's other
    relevant items (support excluded). 0 turns it off."""
    rank_threshold: float | None = 4.0
    """Ratings at or above this are the ranking loss's positives (None: every interaction)."""
    eval_inner_steps: int | None = None
    """Local steps at scoring time (defaults to ``inner_steps``)."""


@dataclass
class TrainConfig(_Section):
    """The outer loop."""

    epochs: int = 50
    """Maximum number of epochs (one pass over the training users)."""
    meta_batch_size: int = 32
    """Users per meta-batch."""
    lr: float = 3e-3
    """Adam learning rate of the meta-parameters (embeddings included)."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    grad_clip: float = 5.0
    """Clip the meta-gradient's norm (0: off)."""
    grad_clip_scope: Literal["global", "per-path"] = "global"
    """``global``: one norm over all meta-parameters; ``per-path``: the rating path, the ranking path
    and the shared rest are clipped separately, so a large gradient in one path does not shrink the
    other's step (single-path models clip globally)."""
    weight_average: float = 0.0
    """Decay of an exponential moving average of the meta-parameters, updated after every step
    (warm-up ``min(decay, (1 + t) / (10 + t))`` at step t). Validation, the best epoch and the saved
    model use the averaged weights; training continues from the live ones (0: off)."""
    support_min: int = 1
    """Smallest support set drawn for a training task."""
    support_max: int = 20
    """Largest support set drawn for a training task."""
    support_distribution: Literal["uniform", "log-uniform"] = "uniform"
    """How training support sizes are drawn between ``support_min`` and ``support_max``
    (log-uniform favours the few-rating regime while still covering large supports)."""
    query_size: int = 10
    """Ratings per training task's query set (fewer when the user has fewer)."""
    support_order: Literal["random", "temporal", "mixed"] = "mixed"
    """``temporal``: a task's support is its first ratings by time; ``random``: any; ``mixed``: each
    task draws one of the two."""
    query_order: Literal["random", "last"] = "last"
    """``last``: tasks whose support is the user's first ratings take their query from the user's
    latest ratings (as a new user is scored long after their first ratings); tasks with a random
    support keep a random query, and so does a log without timestamps. Validation tasks follow it."""
    min_user_ratings: int = 2
    """Training users need at least this many ratings."""
    validation_fraction: float = 0.1
    """Share of training users held out for validation (when no validation users are given)."""
    validation_support: int | None = None
    """Support size of validation tasks (None: drawn like the training supports, seeded)."""
    validation_query: int = 10
    """Query size of validation tasks."""
    validation_order: Literal["auto", "random", "temporal"] = "auto"
    """Support order of validation tasks; ``auto``: the training order."""
    patience: int = 10
    """Stop after this many epochs without validation improvement (0: never stop early)."""
    select_metric: Literal["auto", "mae", "recall@20", "ndcg@10", "mae-ndcg"] = "auto"
    """Validation metric for early stopping and the best epoch. ``auto``: MAE for rating-only models,
    ``mae-ndcg`` (validation MAE minus catalogue nDCG@10) when a ranking loss is trained too, nDCG@10
    for implicit feedback."""
    seed: int = 0
    """Seed of everything random (initialisation, sampling)."""
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (only the name is checked when the config is built: a
    saved model trained on a GPU still loads on a machine without one)."""
    checkpoint_every: int = 100
    """Write a checkpoint every this many meta-steps (and at each epoch's end)."""
    max_nonfinite_steps: int = 10
    """Stop with an error after this many consecutive non-finite losses (steps are skipped before)."""
    num_threads: int | None = None
    """torch CPU threads (None: torch's default)."""


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
    },
    "meta": {
        "inner_steps": _NON_NEGATIVE,
        "inner_lr": _NON_NEGATIVE,
        "rating_weight": _NON_NEGATIVE,
        "rank_weight": _NON_NEGATIVE,
        "rank_threshold": Range(),  # any finite number
        "eval_inner_steps": _NON_NEGATIVE,
    },
    "train": {
        "epochs": _POSITIVE,
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


def _section_name(obj: _Section) -> str:
    names = {ModelConfig: "model", HybridConfig: "model.hybrid", MetaConfig: "meta", TrainConfig: "train"}
    return names.get(type(obj), type(obj).__name__)


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
    name = _section_name(section)
    limits = LIMITS.get(name, {})
    for f in fields(section):  # type: ignore[arg-type]
        key = f"{name}.{f.name}"
        value = _check_value(key, _hints(type(section))[f.name], getattr(section, f.name), limits.get(f.name))
        object.__setattr__(section, f.name, value)
    if isinstance(section, TrainConfig):
        if section.support_min > section.support_max:
            raise SpecError(
                f"config keys train.support_min and train.support_max: expected support_min <= "
                f"support_max, got {section.support_min} > {section.support_max}"
            )
        if not DEVICE_PATTERN.fullmatch(section.device):
            raise SpecError(
                f"config key train.device: expected cpu, cuda, cuda:N or mps, got {_shown(section.device)}"
            )
    if isinstance(section, MetaConfig) and section.rating_weight == 0 and section.rank_weight == 0:
        raise SpecError(
            "config keys meta.rating_weight and meta.rank_weight: expected at least one > 0 (nothing "
            "to learn otherwise), got 0 and 0"
        )


SAVED_BEFORE_KEY: dict[tuple[str, ...], Any] = {("model", "hybrid", "fold_in_trust"): "global"}
"""What a saved config without the key (its path of section names, then the key) meant: the key did
not exist when it was written."""

HYBRID_KEYS: tuple[str, ...] = tuple(f.name for f in fields(HybridConfig))
"""The ``model.hybrid`` keys; configs and saved models written before that section existed have them
directly in ``model`` (``{"model": {"trend": false}}``, ``model.trend``)."""


def _warn_flat(keys: list[str]) -> None:
    shown = ", ".join(f"model.{k}" for k in keys)
    warnings.warn(
        f"config key(s) {shown}: options of the hybrid head now live in the model.hybrid section "
        f"(model.hybrid.{keys[0]}); read as such",
        FutureWarning,
        stacklevel=4,
    )


def _lift_hybrid_keys(model: dict[str, Any], *, warn: bool) -> dict[str, Any]:
    """A raw ``model`` section with the flat form of the hybrid keys (``{"trend": false}``) moved into
    its ``hybrid`` section (a copy when anything moves). ``warn``: say so with a FutureWarning (a
    user's config); saved models and checkpoints are mapped silently, the flat form was their format.
    A key given both ways is a SpecError."""
    flat = [k for k in HYBRID_KEYS if k in model]
    if not flat:
        return model
    nested = model.get("hybrid")
    if nested is None:
        nested = {}
    if isinstance(nested, HybridConfig):
        raise SpecError(f"config key model.{flat[0]}: give it in the HybridConfig of model.hybrid")
    if not isinstance(nested, dict):
        raise SpecError(
            f"config section model.hybrid: expected an object (table) of keys, got {type(nested).__name__}"
        )
    both = [k for k in flat if k in nested]
    if both:
        raise SpecError(
            f"config key model.{both[0]} is also given as model.hybrid.{both[0]}; "
            f"keep only model.hybrid.{both[0]}"
        )
    if warn:
        _warn_flat(flat)
    model = dict(model)
    model["hybrid"] = {**nested, **{k: model.pop(k) for k in flat}}
    return model


_S = typing.TypeVar("_S", bound=_Section)


def _section_from_dict(klass: type[_S], raw: Any, name: str, *, warn: bool = True) -> _S:
    """A validated section from its raw keys (None: every default); nested sections (``model.hybrid``)
    are built from their own objects. Unknown keys are a SpecError naming the section."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(
            f"config section {name}: expected an object (table) of keys, got {type(raw).__name__}"
        )
    if klass is ModelConfig:
        raw = _lift_hybrid_keys(raw, warn=warn)
    known = {f.name for f in fields(klass)}
    bad = set(raw) - known
    if bad:
        shown = sorted(map(str, bad))
        raise SpecError(f"[{name}]: unknown key(s) {_shown(shown)}; expected among {sorted(known)}")
    raw = dict(raw)
    for f in fields(klass):
        hint = _hints(klass)[f.name]
        nested = isinstance(hint, type) and issubclass(hint, _Section)
        if nested and f.name in raw and not isinstance(raw[f.name], hint):
            raw[f.name] = _section_from_dict(hint, raw[f.name], f"{name}.{f.name}", warn=warn)
    return klass(**raw)


def _accept_flat_hybrid_keys(init: Any) -> Any:
    """``ModelConfig(trend=False)`` (the keys' old place) means ``ModelConfig(hybrid=HybridConfig(
    trend=False))``, with a FutureWarning; ``hybrid`` may also be given as a dict of its keys."""

    @functools.wraps(init)
    def __init__(self: ModelConfig, *args: Any, **kwargs: Any) -> None:
        kwargs = _lift_hybrid_keys(kwargs, warn=True)
        if isinstance(kwargs.get("hybrid"), dict):
            kwargs["hybrid"] = _section_from_dict(HybridConfig, kwargs["hybrid"], "model.hybrid")
        init(self, *args, **kwargs)

    return __init__


ModelConfig.__init__ = _accept_flat_hybrid_keys(ModelConfig.__init__)  # type: ignore[method-assign]


def _merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``change``'s keys set, nested objects merged key by key."""
    out = dict(base)
    for key, value in change.items():
        if isinstance(value, _Section):
            value = asdict(value)
        out[key] = (
            _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


@dataclass
class RecommenderConfig:
    """Everything that defines a trained recommender."""

    model: ModelConfig = field(default_factory=ModelConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name, klass in (("model", ModelConfig), ("meta", MetaConfig), ("train", TrainConfig)):
            if not isinstance(getattr(self, name), klass):
                raise SpecError(
                    f"config section {name}: expected a {klass.__name__}, got {type(getattr(self, name)).__name__}"
                )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"]["hidden"] = list(self.model.hidden)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> RecommenderConfig:
        """A validated config from ``{"model": {...}, "meta": {...}, "train": {...}}`` (sections and
        keys optional; missing ones take their defaults)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise SpecError(
                f"a config is an object with model, meta and train sections, got {type(raw).__name__}"
            )
        parts = {"model": ModelConfig, "meta": MetaConfig, "train": TrainConfig}
        unknown = set(raw) - set(parts)
        if unknown:
            shown = sorted(map(str, unknown))
            raise SpecError(f"unknown config section(s) {_shown(shown)}; expected {sorted(parts)}")
        return cls(**{name: _section_from_dict(klass, raw.get(name), name) for name, klass in parts.items()})

    @classmethod
    def from_saved(cls, raw: dict[str, Any]) -> RecommenderConfig:
        """The config of a saved model or checkpoint: keys that change the network's shape and were
        added after the file was written take the value that reproduces the saved network. Validated
        like any config (a SpecError; the model loader reports it as a damaged model file)."""
        if not isinstance(raw, dict):
            raise SpecError(f"saved config: expected an object, got {type(raw).__name__}")
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
        if isinstance(raw.get("model"), dict):  # written before model.hybrid existed: the same keys, flat
            raw["model"] = _lift_hybrid_keys(raw["model"], warn=False)
        for (*path, key), value in SAVED_BEFORE_KEY.items():
            node = raw
            for depth, part in enumerate(path):
                if depth and node.get(part) is None:
                    node[part] = {}  # a nested section the file predates
                if not isinstance(node.get(part), dict):
                    break
                node[part] = dict(node[part])
                node = node[part]
            else:
                node.setdefault(key, value)
        return cls.from_dict(raw)

    MAX_FILE_BYTES = 1_000_000
    """Config files larger than this are refused before they are read."""

    @classmethod
    def from_file(cls, path: str | Path) -> RecommenderConfig:
        """A validated config from a TOML (``.toml``) or JSON file. Every problem (missing, not a
        regular file, over :attr:`MAX_FILE_BYTES`, not UTF-8, unparsable or nested too deeply, not an
        object, a bad value) is one SpecError line naming the file."""
        path = Path(path)
        try:
            info = path.stat()
        except FileNotFoundError:
            raise SpecError(f"config file not found: {path}") from None
        except OSError as exc:
            raise SpecError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
        if stat.S_ISDIR(info.st_mode):
            raise SpecError(f"{path}: is a folder, expected a config file (TOML or JSON)")
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{path}: not a regular file, expected a config file (TOML or JSON)")
        if info.st_size > cls.MAX_FILE_BYTES:
            raise SpecError(
                f"{path}: config file of {info.st_size:,} bytes, over the {cls.MAX_FILE_BYTES:,}-byte limit"
            )
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO swapped in never blocks
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    raise SpecError(f"{path}: not a regular file, expected a config file (TOML or JSON)")
                data = fh.read(cls.MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise SpecError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
        if len(data) > cls.MAX_FILE_BYTES:
            raise SpecError(f"{path}: config file over the {cls.MAX_FILE_BYTES:,}-byte limit")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        try:
            raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except RecursionError:
            raise SpecError(f"{path}: cannot parse config (nested too deeply)") from None
        except ValueError as exc:  # JSONDecodeError, TOMLDecodeError, an integer of too many digits
            first = (str(exc).splitlines() or [""])[0][:200]
            raise SpecError(f"{path}: cannot parse config ({first})") from None
        if not isinstance(raw, dict):
            raise SpecError(
                f"{path}: a config is an object with model, meta and train sections, "
                f"got a JSON {type(raw).__name__}"
            )
        try:
            return cls.from_dict(raw)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None

    def override(self, **dotted: Any) -> RecommenderConfig:
        """Copy with ``section.key=value`` overrides (e.g. ``override(**{"train.epochs": 3})``, nested
        sections ``model.hybrid.trend``): the CLI's and JSON's dotted form; code uses :meth:`replace`.
        The hybrid keys' old flat form (``model.trend``) is read as ``model.hybrid.trend`` with a
        FutureWarning."""
        raw = self.to_dict()
        for key, value in dotted.items():
            *path, name = key.split(".")
            if path == ["model"] and name in HYBRID_KEYS:
                _warn_flat([name])
                path = ["model", "hybrid"]
            node: Any = raw
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if not path or not isinstance(node, dict) or name not in node or isinstance(node[name], dict):
                raise SpecError(f"unknown config key '{key}'")
            node[name] = value
        return RecommenderConfig.from_dict(raw)

    def replace(self, **sections: dict[str, Any] | _Section) -> RecommenderConfig:
        """A validated copy with some keys changed, given by section:
        ``cfg.replace(meta={"inner_steps": 5, "first_order": True}, model={"hybrid": {"trend": False}})``
        (nested sections merge key by key). A section may also be given whole:
        ``cfg.replace(meta=dataclasses.replace(cfg.meta, inner_steps=5))``. Any bad key or value is a
        SpecError, as when a config is built."""
        raw = self.to_dict()
        for name, change in sections.items():
            if name not in raw:
                raise SpecError(f"unknown config section {name!r}; expected {sorted(raw)}")
            current = getattr(self, name)
            if isinstance(change, _Section):
                if not isinstance(change, type(current)):
                    raise SpecError(
                        f"config section {name}: expected a {type(current).__name__}, got {type(change).__name__}"
                    )
                raw[name] = asdict(change)
            elif isinstance(change, dict):
                raw[name] = _merged(
                    raw[name], _lift_hybrid_keys(change, warn=True) if name == "model" else change
                )
            else:
                raise SpecError(
                    f"config section {name}: expected an object of keys or a {type(current).__name__}, "
                    f"got {type(change).__name__}"
                )
        return RecommenderConfig.from_dict(raw)
