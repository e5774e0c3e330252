"""The meta-learner's ablation variants that `recsys evaluate --ablations` knows: re-scored ones (the
trained model with one post-training choice changed, every seed) and retrained ones (a changed config,
the first seed only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from recsys.errors import SpecError

SEED0_LABEL = "default, seed 0 only: reference for the retrained rows"
"""The label of the default's own first-seed row, the like-for-like reference of retrained variants."""

RETRAINED_ABLATIONS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "second-order": ("MAML 5 steps, second-order", {"meta": {"inner_steps": 5, "first_order": False}}),
    "first-order": ("MAML 5 steps, first-order", {"meta": {"inner_steps": 5, "first_order": True}}),
    "meta-sgd": (
        "Meta-SGD 5 steps, second-order",
        {"meta": {"inner_steps": 5, "first_order": False, "meta_sgd": True}},
    ),
    "melu": (
        "MeLU architecture, 5 steps",
        {"model": {"head": "melu"}, "meta": {"inner_steps": 5, "rank_weight": 0.0, "inner_lr": 0.005}},
    ),
    "no-item-item": ("without item-item blend", {"model": {"hybrid": {"item_item": False}}}),
    "no-als-init": ("item ids not initialised from ALS", {"model": {"item_id_init": "random"}}),
    "random-query": ("random query for temporal-support tasks", {"train": {"query_order": "random"}}),
    "global-trust": ("one global fold-in shrinkage", {"model": {"hybrid": {"fold_in_trust": "global"}}}),
}
"""Retrained meta-learner variants: name -> (row label, changed keys by config section, as
:meth:`RecommenderConfig.replace` takes them); seed 0 only."""

PATH_ABLATIONS = {
    "item-item-only": ("ranking by the item-item path alone", 1),
    "encoder-only": ("ranking by the support encoder alone", 0),
}
"""Re-scored variants that keep one ranking path (index into ``rank_mix``) at its chosen weight (1, as
trained, where validation chose 0 for it) and set the other's, and the added classical paths', to 0."""


def reference_of(variant: str, methods: Iterable[str], model_name: str = "meta-learner") -> str:
    """The row an ablation row is compared with: the default's own first-seed row for a variant
    retrained on the first seed only, where the run has that row; else the default."""
    seed0 = f"{model_name} ({SEED0_LABEL})"
    retrained = {f"{model_name} ({label})" for label, _ in RETRAINED_ABLATIONS.values()}
    return seed0 if variant in retrained and seed0 in methods else model_name


def path_mix(rank_mix: list[float], keep: int) -> list[float]:
    """The ``rank_mix`` of a path ablation: path ``keep`` at its chosen weight (1, its trained weight,
    where validation chose 0 for it: else the variant would rank by the trend prior alone), the other 0."""
    return [(w or 1.0) if i == keep else 0.0 for i, w in enumerate(rank_mix)]


ADDED_PATH_ABLATIONS = {
    "no-als-path": ("without ALS path", "als_weight"),
    "no-classical-item-item": ("without classical item-item path", "cf_weight"),
    "no-rating-combiner": ("without rating combiner", "rate_mix"),
    "no-rating-knn": ("without rating item-kNN", "rate_knn"),
}
"""Re-scored variants without one of the classical parts added after training: name -> (row label, the
head's buffer set to 0). Without the rating combiner the rating prediction is the fold-in weight and
MF fallback as chosen; without its item-kNN term, the combiner's other two terms as fitted."""
RANKING_PATH_BUFFERS = ("als_weight", "cf_weight")
"""The added ranking paths' weights (a path ablation sets them to 0)."""

RESCORED_ABLATIONS = (
    "no-adaptation",
    "no-trend",
    *ADDED_PATH_ABLATIONS,
    "1-step",
    "5-steps",
    *PATH_ABLATIONS,
)
"""Variants that re-score the trained model (every seed)."""


def check_ablations(names: list[str]) -> None:
    """Raise a clear error for ablation names that would otherwise silently produce no row."""
    unknown = [a for a in names if a not in (*RESCORED_ABLATIONS, *RETRAINED_ABLATIONS)]
    if unknown:
        known = ", ".join((*RESCORED_ABLATIONS, *RETRAINED_ABLATIONS))
        raise SpecError(f"unknown ablation(s) {', '.join(map(repr, unknown))}; known: {known} (or none)")
