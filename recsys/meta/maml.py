"""MAML over users, vectorised with ``torch.func``.

For a meta-batch of ``T`` users the per-user inner loop — ``inner_steps`` gradient steps on the
user's support ratings, starting from the shared (meta-learned) initialisation — runs as one
``vmap`` over users of a function built from ``torch.func.grad`` and ``functional_call``. Fast weights
are plain tensors derived from the meta-parameters, never loaded with ``load_state_dict``, so in
second-order mode the meta-gradient flows through every inner update (true MAML); first-order mode
detaches the inner gradients. Padding rows are masked out of every loss.

All feature lookups happen before the ``vmap``: one ``EmbeddingBag`` call per side embeds the batch's
distinct items and its users; tasks then index those vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from recsys.config import MetaConfig
from recsys.data.tasks import TaskBatch
from recsys.models.network import ColdStartNet

USER_KEY = "__user__"
Params = dict[str, torch.Tensor]


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


@dataclass
class TaskTensors:
    """Per-task inputs after the embedding lookups."""

    user: torch.Tensor
    """[T, du] user vectors."""
    support_x: torch.Tensor
    """[T, S, di] support item vectors."""
    support_y: torch.Tensor
    support_m: torch.Tensor
    query_x: torch.Tensor
    """[T, Q, di] query item vectors."""
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

    # ---- parameters ---------------------------------------------------------------------------
    @staticmethod
    def _lr_key(name: str) -> str:
        return name.replace(".", "__")

    def split_params(self) -> tuple[Params, Params]:
        """(adapted initial weights, shared weights) of the head."""
        params = dict(self.net.head.named_parameters())
        fast = {n: params[n] for n in self.adapt_names}
        frozen = {n: p for n, p in params.items() if n not in fast}
        return fast, frozen

    def _lr(self, name: str) -> torch.Tensor | float:
        if self.cfg.meta_sgd:
            if name == USER_KEY:
                return self.cfg.inner_lr
            return self.inner_lrs[self._lr_key(name)]
        return self.cfg.inner_lr

    # ---- embedding lookups (outside the vmap) -------------------------------------------------
    def task_tensors(self, batch: TaskBatch) -> TaskTensors:
        """One EmbeddingBag call per side, then index the vectors per task."""
        items = self.net.embed_items(batch.item_indices, batch.item_offsets, batch.item_dense)
        users = self.net.embed_users(batch.user_indices, batch.user_offsets, batch.user_dense)
        return TaskTensors(
            users,
            items[batch.support_pos],
            batch.support_ratings,
            batch.support_mask,
            items[batch.query_pos],
            batch.query_ratings,
            batch.query_mask,
        )

    # ---- per-task functions (run under vmap, or in a plain loop for reference) ----------------
    def _head(
        self, fast: Params, frozen: Params, user: torch.Tensor, x: torch.Tensor | None, **cached: torch.Tensor
    ) -> torch.Tensor:
        u = fast.get(USER_KEY, user)
        params = {**frozen, **{k: v for k, v in fast.items() if k != USER_KEY}}
        return functional_call(self.net.head, params, (u, x), cached)

    def _adapt_one(
        self,
        fast: Params,
        frozen: Params,
        user: torch.Tensor,
        sx: torch.Tensor,
        sy: torch.Tensor,
        sm: torch.Tensor,
        steps: int,
        first_order: bool,
    ) -> Params:
        if self.cfg.adapt == "all":
            fast = {**fast, USER_KEY: user}

        def support_loss(f: Params) -> torch.Tensor:
            return masked_mean(self._loss(self._head(f, frozen, user, sx), sy), sm)

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
        sx: torch.Tensor,
        sy: torch.Tensor,
        sm: torch.Tensor,
        qx: torch.Tensor,
        steps: int,
        first_order: bool,
    ) -> torch.Tensor:
        adapted = self._adapt_one(fast, frozen, user, sx, sy, sm, steps, first_order)
        return self._head(adapted, frozen, user, qx)

    # ---- batched entry points -----------------------------------------------------------------
    def query_predictions(
        self, tt: TaskTensors, steps: int | None = None, first_order: bool | None = None
    ) -> torch.Tensor:
        """[T, Q] predictions on the query items after adapting to each task's support (vmapped)."""
        steps = self.cfg.inner_steps if steps is None else steps
        first_order = self.cfg.first_order if first_order is None else first_order
        fast, frozen = self.split_params()
        fn = partial(self._task_query, steps=steps, first_order=first_order)
        return vmap(fn, in_dims=(None, None, 0, 0, 0, 0, 0))(
            fast, frozen, tt.user, tt.support_x, tt.support_y, tt.support_m, tt.query_x
        )

    def query_predictions_loop(
        self, tt: TaskTensors, steps: int | None = None, first_order: bool | None = None
    ) -> torch.Tensor:
        """The same math as :meth:`query_predictions` with a Python loop over users (reference only)."""
        steps = self.cfg.inner_steps if steps is None else steps
        first_order = self.cfg.first_order if first_order is None else first_order
        fast, frozen = self.split_params()
        rows = [
            self._task_query(
                fast,
                frozen,
                tt.user[t],
                tt.support_x[t],
                tt.support_y[t],
                tt.support_m[t],
                tt.query_x[t],
                steps,
                first_order,
            )
            for t in range(tt.user.shape[0])
        ]
        return torch.stack(rows)

    def query_loss(self, preds: torch.Tensor, tt: TaskTensors) -> torch.Tensor:
        """Mean over tasks (with at least one query rating) of each task's masked query loss."""
        per_task = masked_mean(self._loss(preds, tt.query_y), tt.query_m)
        has_query = tt.query_m.any(-1).to(per_task.dtype)
        return (per_task * has_query).sum() / has_query.sum().clamp_min(1.0)

    def meta_loss(self, batch: TaskBatch, *, loop: bool = False) -> torch.Tensor:
        tt = self.task_tensors(batch)
        preds = self.query_predictions_loop(tt) if loop else self.query_predictions(tt)
        return self.query_loss(preds, tt)

    def adapt(
        self, user: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, sm: torch.Tensor, steps: int
    ) -> Params:
        """Fast weights per task, each with a leading [T] dimension."""
        fast, frozen = self.split_params()
        fn = partial(self._adapt_one, steps=steps, first_order=True)
        # vmap gives every output a leading [T] dim, also when steps == 0 (the shared init, expanded)
        return vmap(fn, in_dims=(None, None, 0, 0, 0, 0))(fast, frozen, user, sx, sy, sm)

    def score(
        self, fast: Params, user: torch.Tensor, items: torch.Tensor | None, **cached: torch.Tensor
    ) -> torch.Tensor:
        """[T, N] scores of ``items`` ([N, di], shared by all tasks) under each task's fast weights.

        ``cached``: a precomputed item side for heads that support it (``item_factors``, ``item_bias``).
        """
        _, frozen = self.split_params()
        fast_dims = {k: 0 for k in fast}
        return vmap(lambda f, u: self._head(f, frozen, u, items, **cached), in_dims=(fast_dims, 0))(
            fast, user
        )
