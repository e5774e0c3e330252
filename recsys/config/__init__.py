"""Configuration of the engine: model, meta-learning and training, each field documented
(:mod:`recsys.config.sections`).

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

The package: :mod:`~recsys.config.sections` (the dataclasses and their field docstrings),
:mod:`~recsys.config.validation` (:data:`LIMITS` and the checks), :mod:`~recsys.config.files` (reading
a config file) and :mod:`~recsys.config.recommender_config` (:class:`RecommenderConfig`); every public
name is importable from ``recsys.config``.
"""

from __future__ import annotations

from recsys.config.recommender_config import SAVED_BEFORE_KEY, RecommenderConfig
from recsys.config.sections import HYBRID_KEYS, HybridConfig, MetaConfig, ModelConfig, TrainConfig
from recsys.config.validation import (
    DEVICE_PATTERN,
    LIMITS,
    MAX_DIM,
    MAX_INT,
    MAX_LAYERS,
    MAX_WIDTH,
    Range,
)

__all__ = [
    "DEVICE_PATTERN",
    "HYBRID_KEYS",
    "LIMITS",
    "MAX_DIM",
    "MAX_INT",
    "MAX_LAYERS",
    "MAX_WIDTH",
    "SAVED_BEFORE_KEY",
    "HybridConfig",
    "MetaConfig",
    "ModelConfig",
    "Range",
    "RecommenderConfig",
    "TrainConfig",
]
