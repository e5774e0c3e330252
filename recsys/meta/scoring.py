"""Batched scoring with a meta-learner: adapt to each user's support, then score items.

Used by validation, evaluation and the recommender API. Everything is vectorised over users (the
adaptation runs under ``vmap``); users are processed in chunks to bound memory.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.data.tasks import TaskSet, UserLog, build_batch
from recsys.features.encoders import EncodedTable
from recsys.features.space import FeatureSpace
from recsys.meta.maml import MetaLearner
from recsys.models.heads import FactorizedHead


def clamp_to_scale(x: np.ndarray | torch.Tensor, scale: tuple[float, float] | None):
    if scale is None:
        return x
    return x.clip(scale[0], scale[1])


class CatalogueCache:
    """Item vectors of the whole catalogue (and, for the factorized head, its item side), computed once."""

    def __init__(self, learner: MetaLearner, space: FeatureSpace, device: torch.device) -> None:
        t = space.item_table
        with torch.no_grad():
            self.items = learner.net.embed_items(
                torch.from_numpy(t.indices).to(device),
                torch.from_numpy(t.offsets).to(device),
                torch.from_numpy(t.dense).to(device),
            )
            head = learner.net.head
            self.factors = self.bias = None
            if isinstance(head, FactorizedHead):
                self.factors, self.bias = head.item_side(self.items)


def predict_tasks(
    learner: MetaLearner,
    space: FeatureSpace,
    log: UserLog,
    tasks: TaskSet,
    *,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Predictions [n_tasks, Q] for each task's query items after adapting to its support."""
    device = torch.device(device)
    steps = (
        learner.cfg.eval_inner_steps if steps is None and learner.cfg.eval_inner_steps is not None else steps
    )
    Q = tasks.query.shape[1]
    out = np.zeros((len(tasks), Q), dtype=np.float32)
    learner.eval()
    with torch.no_grad():
        for start in range(0, len(tasks), batch_size):
            idx = np.arange(start, min(len(tasks), start + batch_size))
            sub = tasks.take(idx)
            batch = build_batch(log, space, sub).to(device)
            tt = learner.task_tensors(batch)
            preds = learner.query_predictions(tt, steps=steps, first_order=True)
            out[idx, : preds.shape[1]] = preds.float().cpu().numpy()
    return clamp_to_scale(out, space.rating_scale)


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
) -> np.ndarray:
    """Scores [n_users, n_items] of the whole catalogue for users given by padded support lists.

    ``support_items`` / ``support_ratings``: [n, S] with -1 items as padding (S may be 0: pure cold
    start). ``users``: their encoded features, row i = user i.
    """
    device = torch.device(device)
    if steps is None:
        steps = (
            learner.cfg.eval_inner_steps
            if learner.cfg.eval_inner_steps is not None
            else learner.cfg.inner_steps
        )
    cache = cache or CatalogueCache(learner, space, device)
    n = len(support_items)
    out = np.zeros((n, space.n_items), dtype=np.float32)
    if support_items.shape[1] == 0:
        support_items = np.full((n, 1), -1, dtype=np.int64)
        support_ratings = np.zeros((n, 1), dtype=np.float32)
    learner.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            s_items = torch.from_numpy(np.asarray(support_items[sl], dtype=np.int64)).to(device)
            s_y = torch.from_numpy(np.asarray(support_ratings[sl], dtype=np.float32)).to(device)
            s_m = s_items >= 0
            u = users.gather(np.arange(sl.start, sl.stop))
            user_vec = learner.net.embed_users(
                torch.from_numpy(u.indices).to(device),
                torch.from_numpy(u.offsets).to(device),
                torch.from_numpy(u.dense).to(device),
            )
            sx = cache.items[s_items.clamp_min(0)]
            fast = learner.adapt(user_vec, sx, s_y, s_m, steps)
            scores = _score_with_cache(learner, fast, user_vec, cache)
            out[sl] = scores.float().cpu().numpy()
    return out


def _score_with_cache(
    learner: MetaLearner, fast, user_vec: torch.Tensor, cache: CatalogueCache
) -> torch.Tensor:
    if cache.factors is not None:
        return learner.score(fast, user_vec, None, item_factors=cache.factors, item_bias=cache.bias)
    return learner.score(fast, user_vec, cache.items)
