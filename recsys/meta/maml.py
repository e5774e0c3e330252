"""MAML over users, vectorised with ``torch.func``.

For a meta-batch of ``T`` users the per-user inner loop — ``inner_steps`` gradient steps on the
user's support ratings, starting from the shared (meta-learned) initialisation or from the head's
amortised per-user start (:meth:`~recsys.models.heads.Head.init_fast`) — runs as one ``vmap`` over
users of a function built from ``torch.func.grad``. Fast weights are plain tensors derived from the
meta-parameters, never loaded with ``load_state_dict``, so in second-order mode the meta-gradient
flows through every inner update (true MAML); first-order mode detaches the inner gradients. Padding
rows are masked out of every loss.

All feature lookups happen before the ``vmap``: one ``EmbeddingBag`` call per side embeds the batch's
distinct items and its users; the head's item side is computed once for those items (and, for the
ranking loss, once for the catalogue — or, above ``meta.rank_negatives`` items, for the batch's items
plus sampled negatives: a sampled softmax), and tasks index it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, vmap

from recsys.config import MetaConfig
from recsys.meta.batches import TaskBatch
from recsys.models.heads import Head, Params, Side
from recsys.models.network import ColdStartNet

USER_KEY = "__user__"


def _elementwise(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "mse":
        return lambda p, y: (p - y) ** 2
    if kind == "mae":
        return lambda p, y: (p - y).abs()
    if kind == "huber":
        return lambda p, y: F.smooth_l1_loss(p, y, reduction="none")
    raise ValueError(f"unknown loss {kind!r}; expected mse, mae or huber")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last dim where ``mask``; 0 for an all-padding row. Padding never enters the sum."""
    m = mask.to(values.dtype)
    return torch.where(mask, values, torch.zeros_like(values)).sum(-1) / m.sum(-1).clamp_min(1.0)


def _index(side: Side, pos: torch.Tensor) -> Side:
    return {k: v[pos] for k, v in side.items()}


@dataclass
class TaskTensors:
    """Per-task inputs after the embedding lookups."""

    user: torch.Tensor
    """[T, du] user vectors."""
    support: Side
    """The head's item side of the support items, each [T, S, ...]."""
    support_y: torch.Tensor
    support_m: torch.Tensor
    query: Side
    """The head's item side of the query items, each [T, Q, ...]."""
    query_y: torch.Tensor
    query_m: torch.Tensor


class MetaLearner(nn.Module):
    """A :class:`ColdStartNet` plus the functional inner loop that adapts it to each user."""

    def __init__(self, net: ColdStartNet, cfg: MetaConfig) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.adapt_names = list(net.head.adaptable(cfg.adapt))
        self._loss = _elementwise(cfg.loss)
        self.inner_lrs = nn.ParameterDict()
        if cfg.meta_sgd:
            params = dict(net.head.named_parameters())
            for name in self.adapt_names:
                self.inner_lrs[self._lr_key(name)] = nn.Parameter(torch.full_like(params[name], cfg.inner_lr))
            # per-user vectors a head derives from the support (e.g. the hybrid head's fold-in) adapt too
            for name, shape in net.head.fast_shapes().items():
                self.inner_lrs[self._lr_key(name)] = nn.Parameter(torch.full(shape, cfg.inner_lr))
        self._catalogue: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def head(self) -> Head:
        return self.net.head

    # ---- parameters ---------------------------------------------------------------------------
    @staticmethod
    def _lr_key(name: str) -> str:
        return name.replace(".", "__")

    def split_params(self) -> tuple[Params, Params]:
        """(adapted initial weights, shared weights) of the head."""
        params = dict(self.head.named_parameters())
        fast = {n: params[n] for n in self.adapt_names}
        frozen = {n: p for n, p in params.items() if n not in fast}
        frozen.update(dict(self.head.named_buffers()))
        return fast, frozen

    def _lr(self, name: str) -> torch.Tensor | float:
        if self.cfg.meta_sgd and self._lr_key(name) in self.inner_lrs:
            return self.inner_lrs[self._lr_key(name)]
        return self.cfg.inner_lr

    # ---- embedding lookups and item sides (outside the vmap) ----------------------------------
    def sampled_negatives(self, n_items: int) -> int:
        """How many negatives a training batch samples for the ranking softmax (0: the full catalogue)."""
        m = self.cfg.rank_negatives
        return m if self.cfg.rank_weight > 0 and 0 < m < n_items else 0

    def set_catalogue(self, indices: torch.Tensor, offsets: torch.Tensor, dense: torch.Tensor) -> None:
        """The catalogue's encoded items, for the ranking loss (a softmax over the catalogue)."""
        self._catalogue = (indices, offsets, dense)

    def catalogue_side(self) -> Side:
        if self._catalogue is None:
            raise RuntimeError("set_catalogue() must be called before using the ranking loss")
        device = next(self.parameters()).device
        if self._catalogue[0].device != device:  # moved once, not at every step
            self._catalogue = tuple(t.to(device) for t in self._catalogue)
        idx, off, dense = self._catalogue
        items = self.net.embed_items(idx, off, dense)
        return self.head.item_side(items, torch.arange(items.shape[0], device=device))

    def batch_side(self, batch: TaskBatch) -> Side:
        """The head's item side of the batch's distinct items (one EmbeddingBag call)."""
        items = self.net.embed_items(batch.item_indices, batch.item_offsets, batch.item_dense)
        return self.head.item_side(items, batch.batch_items)

    def task_tensors(self, batch: TaskBatch, side: Side | None = None) -> TaskTensors:
        """One EmbeddingBag call per side, the head's item side once per distinct item (``side``, when
        the caller has it already), then per task."""
        users = self.net.embed_users(batch.user_indices, batch.user_offsets, batch.user_dense)
        if side is None:
            side = self.batch_side(batch)
        support = _index(side, batch.support_pos)
        if self.head.item_item_active:
            support.update(self.head.item_item_support(batch.support_items, batch.task_fold))
        return TaskTensors(
            users,
            support,
            batch.support_ratings,
            batch.support_mask,
            _index(side, batch.query_pos),
            batch.query_ratings,
            batch.query_mask,
        )

    # ---- per-task functions (run under vmap, or in a plain loop for reference) ----------------
    def _adapt_one(
        self,
        fast: Params,
        frozen: Params,
        user: torch.Tensor,
        s_side: Side,
        sy: torch.Tensor,
        sm: torch.Tensor,
        steps: int,
        first_order: bool,
    ) -> Params:
        head = self.head
        fast = dict(fast)
        fast.update(head.init_fast({**frozen, **fast}, user, s_side, sy, sm))
        if self.cfg.adapt == "all":
            fast[USER_KEY] = user

        def support_loss(f: Params) -> torch.Tensor:
            pred = head.predict({**frozen, **f}, f.get(USER_KEY, user), s_side)
            return masked_mean(self._loss(pred, sy), sm)

        for _ in range(steps):
            g = grad(support_loss)(fast)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            fast = {k: fast[k] - self._lr(k) * g[k] for k in fast}
        return fast

    def _task_query(
        self,
        fast: Params,
        frozen: Params,
        user: torch.Tensor,
        s_side: Side,
        sy: torch.Tensor,
        sm: torch.Tensor,
        q_side: Side,
        cat_side: Side | None,
        steps: int,
        first_order: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adapted = self._adapt_one(fast, frozen, user, s_side, sy, sm, steps, first_order)
        p = {**frozen, **adapted}
        u = adapted.get(USER_KEY, user)
        preds = self.head.predict(p, u, q_side)
        ranks = self.head.rank(p, u, cat_side) if cat_side is not None else preds.new_zeros(0)
        return preds, ranks

    # ---- batched entry points -----------------------------------------------------------------
    def _resolve(self, steps: int | None, first_order: bool | None) -> tuple[int, bool]:
        return (
            self.cfg.inner_steps if steps is None else steps,
            self.cfg.first_order if first_order is None else first_order,
        )

    def query_outputs(
        self,
        tt: TaskTensors,
        steps: int | None = None,
        first_order: bool | None = None,
        cat_side: Side | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """([T, Q] query predictions, [T, N] catalogue ranking scores or [T, 0]) after adapting (vmapped)."""
        steps, first_order = self._resolve(steps, first_order)
        fast, frozen = self.split_params()
        fn = partial(self._task_query, steps=steps, first_order=first_order)
        return vmap(fn, in_dims=(None, None, 0, 0, 0, 0, 0, None))(
            fast, frozen, tt.user, tt.support, tt.support_y, tt.support_m, tt.query, cat_side
        )

    def query_predictions(self, tt: TaskTensors, steps: int | None = None, first_order: bool | None = None):
        return self.query_outputs(tt, steps, first_order)[0]

    def query_outputs_loop(
        self,
        tt: TaskTensors,
        steps: int | None = None,
        first_order: bool | None = None,
        cat_side: Side | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same math as :meth:`query_outputs` with a Python loop over users (reference only)."""
        steps, first_order = self._resolve(steps, first_order)
        fast, frozen = self.split_params()
        rows = [
            self._task_query(
                fast,
                frozen,
                tt.user[t],
                {k: v[t] for k, v in tt.support.items()},
                tt.support_y[t],
                tt.support_m[t],
                {k: v[t] for k, v in tt.query.items()},
                cat_side,
                steps,
                first_order,
            )
            for t in range(tt.user.shape[0])
        ]
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])

    def query_loss(self, preds: torch.Tensor, tt: TaskTensors) -> torch.Tensor:
        """Mean over tasks (with at least one query rating) of each task's masked query loss."""
        per_task = masked_mean(self._loss(preds, tt.query_y), tt.query_m)
        has_query = tt.query_m.any(-1).to(per_task.dtype)
        return (per_task * has_query).sum() / has_query.sum().clamp_min(1.0)

    @staticmethod
    def rank_loss(ranks: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
        """Softmax cross-entropy over the catalogue (support items excluded) of each task's positives.

        With a sampled batch (``batch.sampled``) ``ranks`` are [T, U] scores of the batch's items and
        the softmax runs over them with each item's log importance weight added (sampled softmax)."""
        if batch.sampled:
            ranks = ranks + batch.candidate_logw
            s_col, p_col = batch.support_pos, batch.rank_pos
        else:
            s_col, p_col = batch.support_items, batch.rank_items
        support = torch.zeros_like(ranks, dtype=torch.bool)
        support.scatter_(1, s_col, batch.support_mask)
        logp = torch.log_softmax(ranks.masked_fill(support, float("-inf")), dim=-1)
        pos = logp.gather(1, p_col)
        # a positive that is also a support item (a duplicated interaction) has log p = -inf: not a target
        valid = batch.rank_mask & ~support.gather(1, p_col)
        pos = torch.where(valid, pos, torch.zeros_like(pos))
        n = valid.sum(-1)
        per_task = -pos.sum(-1) / n.clamp_min(1)
        has = (n > 0).to(per_task.dtype)
        return (per_task * has).sum() / has.sum().clamp_min(1.0)

    def forward(self, batch: TaskBatch) -> torch.Tensor:
        """The meta-loss of a batch (so the learner can be wrapped by DistributedDataParallel)."""
        return self.meta_loss(batch)

    def meta_loss(self, batch: TaskBatch, *, loop: bool = False) -> torch.Tensor:
        side = self.batch_side(batch)
        tt = self.task_tensors(batch, side)
        use_rank = self.cfg.rank_weight > 0 and batch.rank_items.shape[1] > 0
        cat = (side if batch.sampled else self.catalogue_side()) if use_rank else None
        run = self.query_outputs_loop if loop else self.query_outputs
        preds, ranks = run(tt, cat_side=cat)
        loss = preds.new_zeros(())
        if self.cfg.rating_weight > 0:
            loss = loss + self.cfg.rating_weight * self.query_loss(preds, tt)
        if use_rank:
            loss = loss + self.cfg.rank_weight * self.rank_loss(ranks, batch)
        return loss

    def adapt(
        self, user: torch.Tensor, s_side: Side, sy: torch.Tensor, sm: torch.Tensor, steps: int
    ) -> Params:
        """Fast weights per task, each with a leading [T] dimension."""
        fast, frozen = self.split_params()
        fn = partial(self._adapt_one, steps=steps, first_order=True)
        if user.shape[0] == 1:  # one user (an online request): the same function without vmap's overhead
            one = fn(fast, frozen, user[0], {k: v[0] for k, v in s_side.items()}, sy[0], sm[0])
            return {k: v.unsqueeze(0) for k, v in one.items()}
        # vmap gives every output a leading [T] dim, also when steps == 0 (the shared init, expanded)
        return vmap(fn, in_dims=(None, None, 0, 0, 0, 0))(fast, frozen, user, s_side, sy, sm)

    def score(self, fast: Params, user: torch.Tensor, side: Side, what: str = "predict") -> torch.Tensor:
        """[T, N] ratings (``predict``) or ranking scores (``rank``) of the items in ``side`` (shared by
        all tasks) under each task's fast weights."""
        _, frozen = self.split_params()
        fn = self.head.predict if what == "predict" else self.head.rank

        def one(f: Params, u: torch.Tensor) -> torch.Tensor:
            return fn({**frozen, **f}, f.get(USER_KEY, u), side)

        if user.shape[0] == 1:
            return one({k: v[0] for k, v in fast.items()}, user[0]).unsqueeze(0)
        return vmap(one, in_dims=({k: 0 for k in fast}, 0))(fast, user)
