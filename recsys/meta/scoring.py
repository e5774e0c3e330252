"""Batched scoring with a meta-learner: adapt to each user's support, then score items.

Used by validation, evaluation and the recommender API. Everything is vectorised over users (the
adaptation runs under ``vmap``); users are processed in chunks to bound memory. The head's item side
of the whole catalogue is computed once and cached.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.data.tasks import TaskSet, UserLog
from recsys.features.encoders import EncodedTable
from recsys.features.space import FeatureSpace
from recsys.meta.batches import build_batch
from recsys.meta.maml import MetaLearner
from recsys.models.heads import Params, Side
from recsys.models.scorer import Scores

SCORE_CHUNK_VALUES = 2**24
"""The most catalogue scores :func:`score_catalogue` computes per batch of users (16M float32: 64 MB a
tensor); the user batch shrinks below its ``batch_size`` on catalogues above 131k items."""


def clamp_to_scale(x: np.ndarray | torch.Tensor, scale: tuple[float, float] | None):
    if scale is None:
        return x
    return x.clip(scale[0], scale[1])


class CatalogueCache:
    """Item vectors of the whole catalogue and the head's item side of them, computed once."""

    def __init__(self, learner: MetaLearner, space: FeatureSpace, device: torch.device) -> None:
        t = space.item_table
        with torch.no_grad():
            self.items = learner.net.embed_items(
                torch.from_numpy(t.indices).to(device),
                torch.from_numpy(t.offsets).to(device),
                torch.from_numpy(t.dense).to(device),
            )
            self.side = learner.head.item_side(self.items, torch.arange(self.items.shape[0], device=device))


def default_steps(learner: MetaLearner, steps: int | None) -> int:
    if steps is not None:
        return steps
    cfg = learner.cfg
    return cfg.eval_inner_steps if cfg.eval_inner_steps is not None else cfg.inner_steps


def predict_tasks(
    learner: MetaLearner,
    space: FeatureSpace,
    log: UserLog,
    tasks: TaskSet,
    *,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    batch_size: int = 256,
    ignore_support: bool = False,
) -> np.ndarray:
    """Predictions [n_tasks, Q] for each task's query items after adapting to its support
    (``ignore_support``: without it, the meta-learned prior alone)."""
    device = torch.device(device)
    steps = default_steps(learner, steps)
    Q = tasks.query.shape[1]
    out = np.zeros((len(tasks), Q), dtype=np.float32)
    learner.eval()
    with torch.no_grad():
        for start in range(0, len(tasks), batch_size):
            idx = np.arange(start, min(len(tasks), start + batch_size))
            batch = build_batch(log, space, tasks.take(idx)).to(device)
            if ignore_support:
                batch.support_mask = torch.zeros_like(batch.support_mask)
            tt = learner.task_tensors(batch)
            preds = learner.query_predictions(tt, steps=steps, first_order=True)
            out[idx, : preds.shape[1]] = preds.float().cpu().numpy()
    return clamp_to_scale(out, space.rating_scale)


def adapt_support(
    learner: MetaLearner,
    cache: CatalogueCache,
    s_items: torch.Tensor,
    s_y: torch.Tensor,
    users: EncodedTable,
    steps: int,
) -> tuple[Params, torch.Tensor, Side]:
    """Users' fast weights after adapting to their support, as :func:`score_catalogue` scores with them:
    (fast weights, each [T, ...]; user vectors [T, du]; the support's item side, each [T, S, ...]).
    ``s_items`` [T, S] catalogue indices (-1 = padding), ``s_y`` [T, S] ratings, ``users`` row t = user t."""
    device = s_items.device
    user_vec = learner.net.embed_users(
        torch.from_numpy(users.indices).to(device),
        torch.from_numpy(users.offsets).to(device),
        torch.from_numpy(users.dense).to(device),
    )
    s_side = {k: v[s_items.clamp_min(0)] for k, v in cache.side.items()}
    if learner.head.item_item_active:
        s_side.update(learner.head.item_item_support(s_items, None))
    return learner.adapt(user_vec, s_side, s_y, s_items >= 0, steps), user_vec, s_side


def score_catalogue(
    learner: MetaLearner,
    space: FeatureSpace,
    support_items: np.ndarray,
    support_ratings: np.ndarray,
    users: EncodedTable,
    *,
    cache: CatalogueCache | None = None,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    batch_size: int = 128,
    ratings: bool = True,
) -> Scores:
    """:class:`Scores` of the whole catalogue for users given by padded support lists: the predicted
    ratings [n_users, n_items] (not clipped) and the catalogue ranking scores (the ranking head's where
    the head has a ranking output, else the predicted ratings).

    ``support_items`` / ``support_ratings``: [n, S] with -1 items as padding (S may be 0: pure cold
    start). ``users``: their encoded features, row i = user i. ``ratings=False``: skip the ratings
    (``Scores.ratings`` is None) when only the ranking is needed.
    """
    device = torch.device(device)
    steps = default_steps(learner, steps)
    cache = cache or CatalogueCache(learner, space, device)
    n = len(support_items)
    # at most SCORE_CHUNK_VALUES scores per [users, n_items] tensor: 16 users at a time over 1M items
    batch_size = max(1, min(batch_size, SCORE_CHUNK_VALUES // max(1, space.n_items)))
    predictions = np.zeros((n, space.n_items), dtype=np.float32) if ratings else None
    ranks = np.zeros((n, space.n_items), dtype=np.float32)
    if support_items.shape[1] == 0:
        support_items = np.full((n, 1), -1, dtype=np.int64)
        support_ratings = np.zeros((n, 1), dtype=np.float32)
    learner.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            s_items = torch.from_numpy(np.asarray(support_items[sl], dtype=np.int64)).to(device)
            s_y = torch.from_numpy(np.asarray(support_ratings[sl], dtype=np.float32)).to(device)
            rows = np.arange(sl.start, sl.stop)
            fast, user_vec, _ = adapt_support(learner, cache, s_items, s_y, users.gather(rows), steps)
            # written with torch's copy: the vmapped scores come out item-major (strides (1, users)),
            # which numpy's assignment copies element by element (~110 ms a 128-user batch of a 62k
            # catalogue against ~20 ms for torch's blocked, multi-threaded copy)
            if predictions is not None or not learner.head.capabilities.ranking_output:
                predicted = learner.score(fast, user_vec, cache.side, "predict")
                if predictions is not None:
                    torch.from_numpy(predictions[sl]).copy_(predicted)
                if not learner.head.capabilities.ranking_output:
                    torch.from_numpy(ranks[sl]).copy_(predicted)
            if learner.head.capabilities.ranking_output:
                torch.from_numpy(ranks[sl]).copy_(learner.score(fast, user_vec, cache.side, "rank"))
    return Scores(predictions, ranks)
