"""Why an item is recommended: the ranking score split into its paths, and the support items behind it.

For a new user's ratings and a catalogue item, :func:`explain` adapts to the ratings exactly as
scoring does (:func:`recsys.meta.scoring.adapt_support`: the head's closed-form start, then the
configured inner steps) and splits the item's ranking score with the head's
:meth:`~recsys.models.heads.Head.rank_parts`, whose terms :meth:`~recsys.models.heads.Head.rank` sums.
An explanation is a dict:

* ``score``: the ranking score, the one :meth:`ColdStartRecommender.recommend` orders by;
* ``predicted_rating``: the predicted rating on the data's scale (None for a head that predicts none);
* ``parts``: the score's terms, which sum to it: ``support_encoder`` (``<z_u, psi_i> + c_i``, the
  encoding of the user's support), ``item_item`` (the item-item blend: the sum of the support items'
  contributions), ``als`` / ``classical_item_item`` (the implicit-ALS / liked item-item fold-ins'
  weighted terms, where validation chose them),
  ``trend`` (the popularity prior's weighted term) for the ``hybrid`` head; a single
  ``rating`` term (the predicted rating, the fold-in) for heads that rank by predicted ratings;
* ``shares``: each part's share of the score, ``|part| / sum |parts|`` (the parts may have either sign);
* ``support``: the support items that contributed most through the item-item path, most first: their
  ``item_id``, the user's ``rating`` of it and its ``contribution``, the term ``ii_scale * gate *
  (ii_rate[0] + ii_rate[1] * (rating - mu)) * B[s, i]`` (empty for a head without an item-item matrix).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from recsys.data.schema import ITEM, USER
from recsys.errors import ScoringInputError, UnknownItemError, shown
from recsys.meta.maml import USER_KEY
from recsys.meta.scoring import adapt_support, clamp_to_scale, default_steps
from recsys.requests import encode_dicts, encode_frame

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

DEFAULT_TOP = 5
"""Support items listed per explanation."""


def _check_top(top: Any) -> int:
    if not isinstance(top, (int, np.integer)) or isinstance(top, bool) or top < 1:
        raise ScoringInputError(f"top must be a positive integer, got {shown(top)}")
    return int(top)


def explain(
    rec: ColdStartRecommender,
    ratings: dict[Any, float],
    item_ids: Sequence[Any],
    user_features: dict[str, Any] | None = None,
    *,
    on_unknown: str = "error",
    top: int = DEFAULT_TOP,
) -> list[dict[str, Any]]:
    """One explanation (see the module docstring) per item of ``item_ids`` for a new user with ``ratings``."""
    rec._require_fitted()
    top = _check_top(top)
    if isinstance(item_ids, (str, bytes, dict)) or not isinstance(item_ids, Sequence):
        raise ScoringInputError(f"item_ids must be a list of item ids, got {type(item_ids).__name__}")
    idx = rec._lookup(list(item_ids))
    if (idx < 0).any():
        bad = [i for i, j in zip(item_ids, idx, strict=True) if j < 0]
        raise UnknownItemError(f"cannot explain unknown item id(s) {UnknownItemError.listing(bad)}")
    items, values = encode_dicts(rec, [ratings], on_unknown)
    return explain_indices(rec, items[0], values[0], user_features, idx, top)


def explain_indices(
    rec: ColdStartRecommender,
    support: np.ndarray,
    support_ratings: np.ndarray,
    user_features: dict[str, Any] | None,
    items: np.ndarray,
    top: int = DEFAULT_TOP,
) -> list[dict[str, Any]]:
    """:func:`explain` for one user's validated support (catalogue indices [S], -1 = padding, and
    ratings [S]) and catalogue indices ``items`` [K]."""
    learner, cache, head = rec.learner, rec._catalogue_cache(), rec.learner.head
    device = rec.device
    support = np.asarray(support, dtype=np.int64).reshape(1, -1)
    if support.shape[1] == 0:  # pure cold start: one padding column, as scoring does
        support, support_ratings = np.full((1, 1), -1, np.int64), np.zeros(1, np.float32)
    s_items = torch.from_numpy(support).to(device)
    s_y = torch.from_numpy(np.asarray(support_ratings, dtype=np.float32).reshape(1, -1)).to(device)
    users = rec._encode_user_features([user_features], 1)
    scale = rec.space.rating_scale
    learner.eval()
    with torch.no_grad():
        fast, user_vec, s_side = adapt_support(
            learner, cache, s_items, s_y, users, default_steps(learner, None)
        )
        _, frozen = learner.split_params()
        p = {**frozen, **{k: v[0] for k, v in fast.items()}}
        u = p.pop(USER_KEY, user_vec[0])
        at = torch.from_numpy(np.asarray(items, dtype=np.int64)).to(device)
        side = {k: v[at] for k, v in cache.side.items()}
        predicted = head.predict(p, u, side).double().cpu().numpy()
        if head.capabilities.ranking_output:
            parts = {k: v.double().cpu().numpy() for k, v in head.rank_parts(p, u, side).items()}
        else:  # ranked by the predicted rating, clipped to the scale as recommend() does
            parts = {"rating": clamp_to_scale(predicted, scale)}
        terms = None
        if "item_item" in parts and head.item_item_active:
            one = {k: v[0] for k, v in s_side.items()}
            terms = head.support_terms(p, one, s_y[0], s_items[0] >= 0)[:, at].double().cpu().numpy()
    rating = clamp_to_scale(predicted, scale) if head.capabilities.predicts_ratings else None
    ids = rec.space.items.ids
    out = []
    for k in range(len(items)):
        values = {name: float(v[k]) for name, v in parts.items()}
        total = sum(abs(v) for v in values.values())
        listed: list[dict[str, Any]] = []
        if terms is not None:
            known = np.nonzero(support[0] >= 0)[0]
            order = known[np.argsort(-terms[known, k], kind="stable")][:top]
            listed = [
                {
                    "item_id": ids[int(support[0, s])],
                    "rating": float(s_y[0, s]),
                    "contribution": float(terms[s, k]),
                }
                for s in order
            ]
        out.append(
            {
                "score": float(sum(values.values())),
                "predicted_rating": None if rating is None else float(rating[k]),
                "parts": values,
                "shares": {name: abs(v) / total if total > 0 else 0.0 for name, v in values.items()},
                "support": listed,
            }
        )
    return out


def explain_rows(
    rec: ColdStartRecommender,
    ratings: dict[Any, float],
    rows: list[dict[str, Any]],
    user_features: dict[str, Any] | None = None,
    *,
    on_unknown: str = "error",
    top: int = DEFAULT_TOP,
) -> list[dict[str, Any]]:
    """``rows`` (dicts with an ``item_id``, e.g. ``recsys recommend``'s output) with an ``explanation``
    added to each, for the user with ``ratings``."""
    found = explain(rec, ratings, [r[ITEM] for r in rows], user_features, on_unknown=on_unknown, top=top)
    return [r | {"explanation": e} for r, e in zip(rows, found, strict=True)]


def explain_frame(
    rec: ColdStartRecommender,
    ratings: Any,
    recommended: pl.DataFrame,
    *,
    user_col: str = USER,
    on_unknown: str = "error",
    top: int = DEFAULT_TOP,
) -> pl.DataFrame:
    """``recommended`` (the output of :func:`recsys.requests.recommend_frame` for the ratings table
    ``ratings``) with an ``explanation`` column: each row's explanation as a JSON string."""
    if recommended.height == 0:
        return recommended.with_columns(pl.lit(None, dtype=pl.String).alias("explanation"))
    enc = encode_frame(rec, ratings, user_col=user_col, on_unknown=on_unknown)
    users = enc.user_ids.to_frame().with_row_index("_u")
    keyed = recommended.select(user_col, ITEM).with_row_index("_r").join(users, on=user_col, how="left")
    texts: list[str | None] = [None] * recommended.height
    for (u,), group in keyed.group_by("_u", maintain_order=True):
        feats = enc.features[u] if enc.features is not None else None
        items = rec._lookup(group[ITEM].to_list())
        found = explain_indices(rec, enc.items[u], enc.ratings[u], feats, items, top)
        for r, e in zip(group["_r"].to_list(), found, strict=True):
            texts[r] = json.dumps(e)
    return recommended.with_columns(pl.Series("explanation", texts, dtype=pl.String))


def check_flag(name: str, value: Any) -> bool:
    """A boolean request param (a ScoringInputError otherwise)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ScoringInputError(f"{name} must be true or false, got {shown(value)}")
    return bool(value)
