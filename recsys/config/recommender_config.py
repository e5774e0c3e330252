"""The whole config (:class:`RecommenderConfig`): its three sections, built from a dict, a file or a
saved model, copied with changes (``override``, ``replace``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recsys.config.files import read_config_file
from recsys.config.sections import (
    HYBRID_KEYS,
    MetaConfig,
    ModelConfig,
    TrainConfig,
    _lift_hybrid_keys,
    _section_from_dict,
    _warn_flat,
)
from recsys.config.validation import _Section, _shown
from recsys.errors import SpecError

SAVED_BEFORE_KEY: dict[tuple[str, ...], Any] = {
    ("model", "hybrid", "fold_in_trust"): "global",
    ("train", "keep_user_log"): False,  # models saved before it kept no record of their users
    # before the sparse top-k kind: dense up to item_item_max_items (then 20,000), no blend above
    ("model", "hybrid", "item_item_dense_items"): 20_000,
}
"""What a saved config without the key (its path of section names, then the key) meant: the key did
not exist when it was written."""


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
        raw = read_config_file(path, cls.MAX_FILE_BYTES)
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
