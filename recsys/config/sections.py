"""The config sections (model, its hybrid head's options, meta-learning, training), each field
documented, and how a section is built from its raw keys (the hybrid keys' old flat place included)."""

from __future__ import annotations

import functools
import math
import typing
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from recsys.config.validation import DEVICE_PATTERN, _hints, _Section, _shown
from recsys.errors import SpecError


@dataclass
class HybridConfig(_Section):
    """Options of the ``hybrid`` head (the ``model.hybrid`` section; ignored by the other heads).

    Before this section existed its keys sat directly in ``model`` (``model.trend``): saved models and
    checkpoints written so still load with the same meaning, and a config given that way is mapped
    here with a ``FutureWarning``."""

    section_name = "model.hybrid"

    fold_in_trust: Literal["global", "support"] = "support"
    """``hybrid`` head: how far a new user's ratings move the ridge fold-in away from the prior.
    ``global``: one learned shrinkage for every user; ``support``: the shrinkage is also a learned
    (linear, zero-initialised) function of the support set: its size, the mean and spread of its
    residuals and its items' mean factors. Chosen by nested evaluation on ML-100k (see the README)."""
    item_item: bool = True
    """``hybrid`` head: blend a fixed item-item matrix (EASE, fitted on the training users, its
    regularisation chosen on validation users; sparse top-k above ``item_item_dense_items``) into the
    ranking scores."""
    item_item_kinds: Literal["ease", "ease+cosine"] = "ease"
    """Candidate item-item matrices for the blend, one chosen on validation users: ``ease`` (EASE at a
    few regularisation strengths) or ``ease+cosine`` (also cosine item-kNN with 100 or 400
    neighbours; on ML-100k validation users it lifted implicit-feedback temporal Recall@20 by 13-17%
    but was mixed elsewhere, see the README)."""
    item_item_tasks: Literal["random", "as-training"] = "random"
    """The validation tasks the blend's kind is chosen on (5 support ratings, 10 query ratings each):
    ``random`` (a random support and query) or ``as-training`` (made like the training tasks:
    ``train.support_order`` and ``train.query_order``, so with the defaults half the users' support
    is their first ratings by time and their query the latest). An option, not the default: on
    ML-100k's nested pseudo-new users (3 trainings) it lifted temporal nDCG@10 by 0.011-0.032 and cost
    random Recall@20 0.010-0.014 (docs/experiments/2026-12-04-item-item-paths)."""
    trend: bool = True
    """``hybrid`` head: after training, add a time-decayed popularity prior ("what is trending") to the
    ranking scores; its half-life (7-365 days, or all-time popularity) and weight (0 included) are
    chosen on validation users. Without timestamps only all-time popularity is a candidate."""
    rank_mix: bool = True
    """``hybrid`` head: after training, choose the weights of the two ranking paths (the support
    encoder, the item-item blend) on validation users' Recall@20 + nDCG@10, among both at 1 (as
    trained), either alone and a few mixes, so the model falls back to the path that ranks better where
    the other does not help (before the trend prior is chosen). false: both stay at 1."""
    fold_in_weight: bool = True
    """``hybrid`` head: after training, choose the weight of the user's ridge fold-in in the rating
    prediction (1 as trained, 0.75, 0.5, 0.25, or 0: the item's baseline alone) on validation users'
    MAE, the model as trained winning ties, so on a log where adapting to a few ratings does not help
    the prediction falls back towards the damped item mean. false: it stays at 1."""
    mf_fallback: bool = True
    """``hybrid`` head, explicit ratings: after training, fit a biased matrix factorisation (ALS, as the
    ``mf-als`` baseline; 8 or 32 factors) on the training users and choose on validation users' MAE how
    far the rating prediction moves towards its ridge fold-in of the new user's ratings (weight 0, as
    trained, winning ties; 0.25 ... 1), so on a log too small for the learned rating path the model falls
    back to the classical fold-in. false: no such buffers (weight 0)."""
    rating_mix: bool = True
    """``hybrid`` head, explicit ratings, with the MF fallback's buffers: after the MF fallback, fit the
    rating combiner (:mod:`recsys.models.rating_mix`): each user's weights of the meta-learned fold-in
    and the MF fold-in read from the support (its size, spread, distance from the global mean), fitted
    on validation users' query ratings by least absolute deviations and kept only where a cross-fit over
    two halves of the validation users shows a lower MAE than the fold-in weight and fallback chosen.
    false: off (those two choices alone)."""
    als_path: bool = True
    """``hybrid`` head: after training, fit implicit-feedback ALS (as the ``implicit-als`` baseline: 64
    factors, every rating or the liked ones as positives, confidence 1 or 4) on the training users and
    choose on validation users' Recall@20 + nDCG@10 how much of its fold-in of the new user's support is
    added to the ranking scores (weight 0, off, winning ties), so where ALS ranks better than the learned
    paths the model moves towards it. false: no such buffers (weight 0)."""
    classical_item_item: bool = True
    """``hybrid`` head, catalogues up to ``item_item_dense_items``: after training, fit the classical
    item-item fold-ins on the training users' liked ratings (every one on implicit feedback) — EASE at
    four strengths and cosine item-kNN at two neighbourhood sizes, the ``ease`` / ``item-knn`` baselines'
    grids — and choose on validation users' Recall@20 + nDCG@10 which one, and how much of its fold-in of
    the new user's liked support items, is added to the ranking scores (weight 0, off, winning ties).
    Unlike the item-item blend, which the network learns to weigh, this is the classical estimator itself,
    for logs where it ranks better than the learned paths. Its n_items x n_items matrix is saved with the
    model (55 MB at 3,706 items). false: no such matrix (weight 0)."""
    item_item_max_items: int = 2_000_000
    """Catalogues larger than this skip the item-item blend (the training summary says so). The
    sparse kind keeps 2 x 8 bytes per item and neighbour, plus twice that while training."""
    item_item_dense_items: int = 4_000
    """Dense limit: catalogues up to this size get a dense n_items x n_items item-item matrix (EASE,
    six O(n^3) inversions: about 45 s at 4,000 items on a 2-core machine); larger ones a sparse top-k
    matrix (``item_item_neighbours`` per item: cosine item-kNN, or EASE on this many most popular items
    plus cosine; time about linear in the interactions). Models saved before this key existed were
    dense up to 20,000 items."""
    item_item_neighbours: int = 100
    """Neighbours kept per item by the sparse top-k item-item matrix (catalogues above
    ``item_item_dense_items``)."""


@dataclass
class ModelConfig(_Section):
    """The network: per-field embeddings pooled by ``EmbeddingBag`` and a decision network."""

    section_name = "model"

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

    section_name = "meta"

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
    rank_negatives: int = 4096
    """Sampled softmax above this catalogue size: when the catalogue has more items, each meta-batch's
    ranking softmax runs over the batch's own items (every task's support, query and positives) plus
    this many items drawn uniformly from the catalogue, whose logits get the log(N / M) correction of
    the sampled softmax (Bengio & Senecal 2008; the estimate of the full softmax's normaliser stays
    unbiased). Training cost then grows with the batch, not the catalogue. Catalogues of at most this
    many items (MovieLens) use the full softmax. 0: always the full catalogue."""
    eval_inner_steps: int | None = None
    """Local steps at scoring time (defaults to ``inner_steps``)."""

    def _check_relations(self) -> None:
        if self.rating_weight == 0 and self.rank_weight == 0:
            raise SpecError(
                "config keys meta.rating_weight and meta.rank_weight: expected at least one > 0 (nothing "
                "to learn otherwise), got 0 and 0"
            )


@dataclass
class TrainConfig(_Section):
    """The outer loop."""

    section_name = "train"

    epochs: int = 50
    """Maximum number of epochs (one pass over the training users)."""
    max_tasks: int | None = 500_000
    """The training budget in tasks (one task per training user and epoch): at most
    ``ceil(max_tasks / training users)`` epochs, never more than ``epochs`` (see :meth:`planned_epochs`).
    An epoch of a large log holds many times the tasks of a small log's, and its validation curve
    flattens after fewer epochs: on Gowalla (26,872 training users) validation nDCG@10 was within
    noise of its best after ~14 epochs (376k tasks; 0.1551 at epoch 14, best 0.1567 at epoch 30 of 31),
    while each epoch of a 25M-row log (146k training users) takes ~8 min on 2 CPU cores. Logs with up to
    10,000 training users (MovieLens-1M, 5.4k) are not affected. None: ``epochs`` alone; ``recsys
    train --epochs N`` sets None, so the epochs asked for are run (early stopping aside)."""
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
    """Support order of validation tasks; ``auto``: the training order, except when training under a
    holdout protocol (``recsys evaluate``, ``recsys train --holdout ...``): that protocol's order
    (random under ``melu``), as its new users' tasks and the baselines' tuning tasks are drawn
    (:func:`recsys.workflows.protocol_validation`)."""
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
    """Write a checkpoint every this many meta-steps (and at each epoch's end), but no more often than
    ``checkpoint_interval_s`` allows."""
    checkpoint_interval_s: float = 300.0
    """The least time between two checkpoints written within an epoch (each epoch's end always writes
    one; a crash loses at most this long, or ``checkpoint_every`` steps). Each checkpoint writes the whole
    model and optimiser state: on a large log 100 meta-steps take seconds (25M rows, 62k items: 46
    checkpoints an epoch; a 4-epoch run wrote 38.7 GB). 0: every ``checkpoint_every`` steps."""
    max_nonfinite_steps: int = 10
    """Stop with an error after this many consecutive non-finite losses (steps are skipped before)."""
    num_threads: int | None = None
    """torch CPU threads (None: torch's default)."""
    deterministic: bool = True
    """Meta-train with torch's deterministic algorithms (:func:`recsys.utils.seeds.deterministic_algorithms`),
    so the same command on the same machine and thread count trains the same weights: with the default
    kernels, gradients gathered over repeated item indices are summed in a varying order on several CPU
    threads, and two trainings of ML-100k differed by up to 1e-2 after 2 epochs. On ML-100k's CPU training
    it costs nothing; false: torch's default kernels."""
    keep_user_log: bool = True
    """Keep a record of the training log's users with the model (each user's items and ratings, in time
    order; ``user_log.safetensors``) so that ``recommend_user(user_id)`` can score them by id. False
    (``recsys train --no-user-log``): no record, for privacy or size."""

    def planned_epochs(self, tasks_per_epoch: int) -> int:
        """The epochs a run over ``tasks_per_epoch`` training users plans: ``epochs``, or fewer where
        ``max_tasks`` is reached first (at least one)."""
        if self.max_tasks is None or tasks_per_epoch <= 0:
            return self.epochs
        return min(self.epochs, max(1, math.ceil(self.max_tasks / tasks_per_epoch)))

    def _check_relations(self) -> None:
        if self.support_min > self.support_max:
            raise SpecError(
                f"config keys train.support_min and train.support_max: expected support_min <= "
                f"support_max, got {self.support_min} > {self.support_max}"
            )
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise SpecError(
                f"config key train.device: expected cpu, cuda, cuda:N or mps, got {_shown(self.device)}"
            )


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
