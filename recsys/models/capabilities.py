"""What a decision head declares it does: :class:`HeadCapabilities` (see :mod:`recsys.models.heads`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeadCapabilities:
    """What a head does, declared once per head class (callers read it instead of probing the head)."""

    predicts_ratings: bool = True
    """:meth:`Head.predict` gives rating predictions on the dataset's scale."""
    ranking_output: bool = False
    """:meth:`Head.rank` is a separate ranking output (otherwise ranking uses the predicted ratings)."""
    closed_form_adaptation: bool = False
    """:meth:`Head.init_fast` adapts per user in closed form from the support set (no inner steps needed)."""
    item_offsets: bool = False
    """Takes data-driven per-item rating offsets through :meth:`Head.set_item_offsets`."""
    item_item_blend: bool = False
    """Can blend a fixed item-item matrix into its ranking (:meth:`Head.set_item_item`,
    :meth:`Head.item_item_rows`); whether this instance does is :attr:`Head.item_item_active`."""
    trend_prior: bool = False
    """Adds a popularity prior to its ranking: ``trend`` / ``trend_weight`` buffers, :meth:`Head.set_trend`."""
    path_weights: bool = False
    """Its paths have weights chosen after training: the ranking paths' ``rank_mix`` buffer
    (:meth:`Head.set_rank_mix`, ``[support encoder, item-item]``) and the rating fold-in's
    ``fold_in_weight`` (:meth:`Head.set_fold_in_weight`)."""
    two_paths: bool = False
    """Rating and ranking paths with embeddings of their own: the network concatenates a rating part and a
    ranking part of every user and item vector, and :meth:`Head.param_groups` splits the parameters."""
