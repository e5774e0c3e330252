"""Decision heads mapping a user vector and item vectors to ratings.

Both heads are plain ``nn.Module`` objects; the meta-learner runs them functionally
(``torch.func.functional_call``) with per-user fast weights for the parameters named by
:meth:`adaptable`.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


def _mlp(sizes: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))


def _run(layers: nn.ModuleList, x: torch.Tensor, last_activation: bool = False) -> torch.Tensor:
    for i, layer in enumerate(layers):
        x = layer(x)
        if i < len(layers) - 1 or last_activation:
            x = torch.relu(x)
    return x


class MeLUHead(nn.Module):
    """MeLU's decision network: an MLP over the concatenation [user; item] -> rating."""

    def __init__(
        self, user_dim: int, item_dim: int, hidden: tuple[int, ...], rating_mean: float = 0.0
    ) -> None:
        super().__init__()
        self.layers = _mlp([user_dim + item_dim, *hidden, 1])
        with torch.no_grad():
            self.layers[-1].bias.fill_(rating_mean)

    def adaptable(self, mode: str) -> list[str]:
        names = [n for n, _ in self.named_parameters()]
        if mode == "output":
            last = f"layers.{len(self.layers) - 1}."
            return [n for n in names if n.startswith(last)]
        return names

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``user`` [..., du] broadcast against ``items`` [..., n, di] -> ratings [..., n]."""
        u = user.unsqueeze(-2).expand(*items.shape[:-1], user.shape[-1])
        return _run(self.layers, torch.cat([u, items], dim=-1)).squeeze(-1)


class FactorizedHead(nn.Module):
    """score = <user tower(user), item tower(item)> / sqrt(d) + item bias(item) + global bias.

    The item side (tower output and bias) does not depend on the user, so it can be computed once for
    the whole catalogue; per-user adaptation touches only the user tower.
    """

    def __init__(
        self, user_dim: int, item_dim: int, hidden: tuple[int, ...], factor_dim: int, rating_mean: float = 0.0
    ) -> None:
        super().__init__()
        self.user_tower = _mlp([max(1, user_dim), *hidden, factor_dim])
        self.item_tower = _mlp([item_dim, *hidden, factor_dim])
        self.item_bias = nn.Linear(item_dim, 1)
        self.global_bias = nn.Parameter(torch.tensor(float(rating_mean)))
        self.scale = 1.0 / math.sqrt(factor_dim)
        self.user_dim = user_dim

    def adaptable(self, mode: str) -> list[str]:
        names = [n for n, _ in self.named_parameters() if n.startswith("user_tower.") or n == "global_bias"]
        if mode == "output":
            last = f"user_tower.{len(self.user_tower) - 1}."
            return [n for n in names if n.startswith(last) or n == "global_bias"]
        return names

    def user_factor(self, user: torch.Tensor) -> torch.Tensor:
        if self.user_dim == 0:  # no user features: the tower starts from a constant input
            user = user.new_ones(*user.shape[:-1], 1)
        return _run(self.user_tower, user)

    def item_side(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(item factors, item biases): cacheable for the whole catalogue."""
        return _run(self.item_tower, items), self.item_bias(items).squeeze(-1)

    def score_cached(
        self, user: torch.Tensor, item_factors: torch.Tensor, item_bias: torch.Tensor
    ) -> torch.Tensor:
        w = self.user_factor(user)
        return (item_factors @ w.unsqueeze(-1)).squeeze(-1) * self.scale + item_bias + self.global_bias

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        h, b = self.item_side(items)
        w = self.user_factor(user).unsqueeze(-2)
        return (h * w).sum(-1) * self.scale + b + self.global_bias
