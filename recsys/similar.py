"""Similar items: the catalogue items closest to one item, from the item-item matrix or the item factors.

Two sources, and every answer says which one it used:

* ``item_item``: the row of the model's item-item matrix ``B`` (the ``hybrid`` head's blend, EASE or
  item-kNN fitted on the training users) for the item: the similarity of ``j`` to ``i`` is ``B[i, j]``,
  the amount a rating of ``i`` adds to ``j``'s ranking score. Items without an entry (zero) are not
  listed.
* ``factors``: the cosine similarity of the items' learned factors (the head's
  :attr:`~recsys.models.heads.Head.factor_key`: the ranking path's ``psi`` for ``hybrid``, the item
  tower for ``factorized``, the item vectors for ``melu``), over the whole catalogue.

``by="auto"`` uses the item-item matrix when the model has one, else the factors. The item itself is
never listed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from recsys.errors import ScoringInputError, UnknownItemError, shown

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

SOURCES = ("auto", "item_item", "factors")
"""The values ``by`` takes."""


class SimilarItems(list):
    """``[(item_id, similarity), ...]``, most similar first, with the :attr:`source` used."""

    def __init__(self, pairs: list[tuple[Any, float]], source: str) -> None:
        super().__init__(pairs)
        self.source = source
        """``item_item`` or ``factors``."""


def check_by(rec: ColdStartRecommender, by: Any) -> str:
    """The source ``by`` names (``auto`` resolved); a ScoringInputError for anything else."""
    if not isinstance(by, str) or by not in SOURCES:
        raise ScoringInputError(f"by must be one of {', '.join(SOURCES)}, got {shown(by)}")
    has_matrix = rec.learner.head.item_item_active
    if by == "auto":
        return "item_item" if has_matrix else "factors"
    if by == "item_item" and not has_matrix:
        raise ScoringInputError("by='item_item': this model has no item-item matrix (use by='factors')")
    return by


def similar_items(rec: ColdStartRecommender, item_id: Any, n: int = 10, by: str = "auto") -> SimilarItems:
    """The ``n`` items most similar to ``item_id`` (see the module docstring)."""
    rec._require_fitted()
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ScoringInputError(f"n must be a positive integer, got {shown(n)}")
    source = check_by(rec, by)
    idx = int(rec._lookup([item_id])[0])
    if idx < 0:
        raise UnknownItemError(f"unknown item id {shown(item_id)}")
    sims = _item_item_row(rec, idx) if source == "item_item" else _factor_cosines(rec, idx)
    sims[idx] = -np.inf
    if source == "item_item":
        sims[sims == 0] = -np.inf  # no entry: not similar
    k = min(int(n), len(sims))
    top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    top = top[np.argsort(-sims[top], kind="stable")]
    top = top[np.isfinite(sims[top])]
    ids = rec.space.items.ids
    return SimilarItems([(ids[int(j)], float(sims[j])) for j in top], source)


def similar_rows(rec: ColdStartRecommender, item_id: Any, n: int = 10, by: str = "auto") -> list[dict]:
    """:func:`similar_items` as rows for the CLI and REST: ``rank`` (1 = most similar), ``item_id``,
    ``similarity``, ``source`` and ``title`` (only when the catalogue has titles)."""
    found = similar_items(rec, item_id, n, by)
    titles = rec.space.titles
    has_titles = any(t is not None for t in titles)
    rows = []
    for rank, (item, sim) in enumerate(found, start=1):
        row = {"rank": rank, "item_id": item, "similarity": sim, "source": found.source}
        if has_titles:
            row["title"] = rec.title(item)
        rows.append(row)
    return rows


def _item_item_row(rec: ColdStartRecommender, idx: int) -> np.ndarray:
    head = rec.learner.head
    with torch.no_grad():
        row = head.item_item_rows(torch.tensor([[idx]], device=rec.device), None)
    return row.reshape(-1).float().cpu().numpy().astype(np.float64)


def _factor_cosines(rec: ColdStartRecommender, idx: int) -> np.ndarray:
    cache = rec._catalogue_cache()
    key = rec.learner.head.factor_key
    with torch.no_grad():
        f = cache.side[key] if key is not None else cache.items
        f = torch.nn.functional.normalize(f.float(), dim=-1)
        cos = f @ f[idx]
    return cos.cpu().numpy().astype(np.float64)


def similar_frame(rec: ColdStartRecommender, item_id: Any, n: int = 10, by: str = "auto") -> pl.DataFrame:
    """:func:`similar_rows` as a table (the REST answer to the ``similar_to`` param)."""
    rows = similar_rows(rec, item_id, n, by)
    columns = ["rank", "item_id", "similarity", "source"] + (["title"] if rows and "title" in rows[0] else [])
    return pl.DataFrame(rows, schema=columns, orient="row") if rows else pl.DataFrame(schema=columns)
