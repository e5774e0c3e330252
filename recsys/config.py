"""Configuration of the engine: model, meta-learning and training, each field documented.

Configs round-trip through JSON and TOML (``RecommenderConfig.from_file``); unknown keys are an error
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from recsys.errors import SpecError


@dataclass
class ModelConfig:
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
    fold_in_trust: Literal["global", "support"] = "support"
    """``hybrid`` head: how far a new user's ratings move the ridge fold-in away from the prior.
    ``global``: one learned shrinkage for every user; ``support``: the shrinkage is also a learned
    (linear, zero-initialised) function of the support set: its size, the mean and spread of its
    residuals and its items' mean factors. Chosen by nested evaluation on ML-100k (see the README)."""
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
    sparse: bool = False
    """Sparse gradients for the embedding tables (with a sparse-aware optimiser)."""


@dataclass
class MetaConfig:
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
class TrainConfig:
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
    """``cpu``, ``cuda`` or ``cuda:N``."""
    checkpoint_every: int = 100
    """Write a checkpoint every this many meta-steps (and at each epoch's end)."""
    max_nonfinite_steps: int = 10
    """Stop with an error after this many consecutive non-finite losses (steps are skipped before)."""
    num_threads: int | None = None
    """torch CPU threads (None: torch's default)."""


SAVED_BEFORE_KEY: dict[tuple[str, str], Any] = {("model", "fold_in_trust"): "global"}
"""What a saved config without the key meant (the key did not exist when it was written)."""


@dataclass
class RecommenderConfig:
    """Everything that defines a trained recommender."""

    model: ModelConfig = field(default_factory=ModelConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"]["hidden"] = list(self.model.hidden)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> RecommenderConfig:
        raw = dict(raw or {})
        parts = {"model": ModelConfig, "meta": MetaConfig, "train": TrainConfig}
        unknown = set(raw) - set(parts)
        if unknown:
            raise SpecError(f"unknown config section(s) {sorted(unknown)}; expected {sorted(parts)}")
        built = {}
        for name, klass in parts.items():
            section = dict(raw.get(name) or {})
            known = {f.name for f in fields(klass)}
            bad = set(section) - known
            if bad:
                raise SpecError(f"[{name}]: unknown key(s) {sorted(bad)}; expected among {sorted(known)}")
            if "hidden" in section:
                section["hidden"] = tuple(int(h) for h in section["hidden"])
            built[name] = klass(**section)
        return cls(**built)

    @classmethod
    def from_saved(cls, raw: dict[str, Any]) -> RecommenderConfig:
        """The config of a saved model or checkpoint: keys that change the network's shape and were
        added after the file was written take the value that reproduces the saved network."""
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in dict(raw or {}).items()}
        for (section, key), value in SAVED_BEFORE_KEY.items():
            if isinstance(raw.get(section), dict):
                raw[section].setdefault(key, value)
        return cls.from_dict(raw)

    @classmethod
    def from_file(cls, path: str | Path) -> RecommenderConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"config file not found: {path}") from None
        try:
            raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise SpecError(f"{path}: cannot parse config ({exc})") from None
        return cls.from_dict(raw)

    def override(self, **dotted: Any) -> RecommenderConfig:
        """Copy with ``section.key=value`` overrides (e.g. ``override(**{"train.epochs": 3})``)."""
        raw = self.to_dict()
        for key, value in dotted.items():
            section, _, name = key.partition(".")
            if section not in raw or name not in raw[section]:
                raise SpecError(f"unknown config key '{key}'")
            raw[section][name] = value
        return RecommenderConfig.from_dict(raw)
