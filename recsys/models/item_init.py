"""Item-id embeddings initialised from collaborative-filtering factors (``model.item_id_init="als"``).

Before meta-training, each training item's item-id token in the rating path's embedding table gets
that item's factors from biased matrix factorisation by ALS (explicit ratings), and in the ranking
path's table its factors from ``implicit``'s ALS on the binarised log. The factors are rescaled to the
tables' initial scale, so only their *directions* carry the prior; meta-training then moves them
like any other embedding. Items without an item-id token (too rare, or new) are left as they are.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from recsys.data.tasks import UserLog
from recsys.features.space import ITEM_ID_FIELD, FeatureSpace
from recsys.models.classical import ImplicitALS
from recsys.models.classical.mf import FittedMFs
from recsys.models.embedding import INIT_STD
from recsys.models.network import ColdStartNet

logger = logging.getLogger(__name__)


def item_id_tokens(space: FeatureSpace) -> np.ndarray:
    """Row of the item embedding table holding each catalogue item's item-id token (-1: unknown)."""
    enc = space.item_encoder
    names = [f.name for f in enc.token_fields]
    if ITEM_ID_FIELD not in names:
        return np.full(space.n_items, -1, dtype=np.int64)
    j = names.index(ITEM_ID_FIELD)
    table = space.item_table
    F = table.n_token_fields
    starts = table.offsets[np.arange(space.n_items) * F + j]
    tokens = table.indices[starts].astype(np.int64)
    tokens[tokens == enc.field_offsets[j]] = -1  # the field's unknown token
    return tokens


def _rescaled(factors: np.ndarray) -> torch.Tensor:
    std = float(factors.std()) or 1.0
    return torch.from_numpy((factors * (INIT_STD / std)).astype(np.float32))


def als_item_factors(
    log: UserLog,
    n_items: int,
    dim: int,
    *,
    implicit: bool,
    seed: int,
    paths: tuple[str, ...] = ("rating", "ranking"),
    mfs: FittedMFs | None = None,
) -> dict[str, np.ndarray]:
    """``{path: [n_items, dim]}`` item factors fitted on ``log`` for the requested ``paths``: biased MF
    for ``rating`` (implicit's ALS on implicit feedback), implicit's ALS for ``ranking``. ``mfs``: the
    biased MFs of ``log`` fitted so far (the rating fallback reuses this one)."""

    out: dict[str, np.ndarray] = {}
    if "ranking" in paths or implicit:
        out["ranking"] = ImplicitALS(seed=seed, factors=dim).fit(log, n_items).item_factors
    if "rating" in paths:
        if mfs is None or not mfs.of(log, n_items, seed):
            mfs = FittedMFs(log, n_items, seed)
        out["rating"] = out["ranking"] if implicit else mfs.get(factors=dim).item_factors
    return {p: out[p] for p in paths}


@torch.no_grad()
def init_item_ids_from_als(
    net: ColdStartNet, space: FeatureSpace, log: UserLog, *, seed: int, mfs: FittedMFs | None = None
) -> int:
    """Write ALS item factors into the item-id rows of ``net``'s item embedding tables.

    Returns the number of items initialised (0 when the space has no item-id field).
    """
    tokens = item_id_tokens(space)
    known = np.nonzero(tokens >= 0)[0]
    if len(known) == 0:
        return 0
    targets = {"rating": net.item_embedding}
    if net.two_paths:  # the ranking path has item tables of its own
        targets["ranking"] = net.rank_item_embedding
    dim = net.item_embedding.dim
    factors = als_item_factors(
        log, space.n_items, dim, implicit=space.implicit, seed=seed, paths=tuple(targets), mfs=mfs
    )
    rows = torch.from_numpy(tokens[known])
    for path, emb in targets.items():
        emb.bag.weight[rows] = _rescaled(factors[path][known]).to(emb.bag.weight.device)
    logger.info("item-id embeddings of %d items initialised from ALS factors", len(known))
    return len(known)
