"""Decision heads mapping a user vector and item vectors to ratings and ranking scores.

Heads are written functionally so that ``torch.func`` can run them with per-user fast weights:

* :meth:`Head.item_side` turns item vectors into whatever the head needs per item. It never depends
  on the user, so it runs once per batch (or once for the whole catalogue) outside the vectorised
  inner loop, with the module's own (meta-)parameters.
* :meth:`Head.init_fast` gives a task's per-user starting point computed from its support set
  (amortised adaptation, e.g. a closed-form ridge fold-in); plain MAML heads return nothing and start
  from the shared meta-learned weights.
* :meth:`Head.predict` (ratings) and :meth:`Head.rank` (catalogue ranking scores) take a parameter
  dict ``p``: the head's parameters with the adapted ones replaced by fast weights, plus the task's
  fast vectors.

Heads declare what they do instead of being probed: each head class carries a
:class:`HeadCapabilities` and is registered by name in :data:`HEADS` (the names ``model.head`` takes).
Hooks for data-driven buffers (item offsets, the item-item matrix, the trend prior) are part of the
:class:`Head` interface; callers check the declared capability before computing what they feed in.
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recsys.errors import SpecError
from recsys.models import trend
from recsys.models.als_path import AlsPath
from recsys.models.capabilities import HeadCapabilities
from recsys.models.cf_path import ClassicalItemItem
from recsys.models.fold_in import SUPPORT_STATS, support_summary
from recsys.models.item_item_blend import ItemItemBlend, blend, dense_rows, item_item_storage
from recsys.models.path_weights import PathWeights

if TYPE_CHECKING:
    from recsys.config import ModelConfig

Params = dict[str, torch.Tensor]
Side = dict[str, torch.Tensor]


def _mlp(sizes: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))


def _run(layers: nn.ModuleList, x: torch.Tensor, last_activation: bool = False) -> torch.Tensor:
    for i, layer in enumerate(layers):
        x = layer(x)
        if i < len(layers) - 1 or last_activation:
            x = torch.relu(x)
    return x


def _run_f(p: Params, prefix: str, n_layers: int, x: torch.Tensor) -> torch.Tensor:
    """An MLP built by :func:`_mlp`, run with the weights in ``p`` (fast weights where adapted)."""
    for i in range(n_layers):
        x = F.linear(x, p[f"{prefix}.{i}.weight"], p[f"{prefix}.{i}.bias"])
        if i < n_layers - 1:
            x = torch.relu(x)
    return x


class Head(nn.Module, abc.ABC):
    """Base class of the decision heads: see the module docstring."""

    name: ClassVar[str] = ""
    """The head's ``model.head`` name (set by :func:`register_head`)."""
    capabilities: ClassVar[HeadCapabilities] = HeadCapabilities()
    factor_key: ClassVar[str | None] = None
    """The :meth:`item_side` entry holding an item's learned factors (what similar items compare);
    None: the item vectors themselves."""

    @classmethod
    @abc.abstractmethod
    def from_config(
        cls, cfg: ModelConfig, user_dim: int, item_dim: int, *, rating_mean: float, n_items: int
    ) -> Head:
        """The head for ``cfg`` over user / item vectors of these sizes (one path's part for two-path
        heads); ``n_items``: catalogue size."""

    @property
    def has_rank(self) -> bool:
        """Whether :meth:`rank` differs from :meth:`predict` (a separate ranking output)."""
        return self.capabilities.ranking_output

    @abc.abstractmethod
    def adaptable(self, mode: str) -> list[str]:
        """Names of the parameters the inner loop adapts per user for ``mode``."""

    @abc.abstractmethod
    def item_side(self, items: torch.Tensor, index: torch.Tensor | None = None) -> Side:
        """Per-item tensors for item vectors ``items`` [..., N, di] (``index``: their catalogue indices)."""

    def init_fast(
        self, p: Params, user: torch.Tensor, s_side: Side, sy: torch.Tensor, sm: torch.Tensor
    ) -> Params:
        return {}

    def fast_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the per-user vectors from :meth:`init_fast` that inner gradient steps refine
        (Meta-SGD learns an inner rate for each of their entries)."""
        return {}

    @abc.abstractmethod
    def predict(self, p: Params, user: torch.Tensor, side: Side) -> torch.Tensor:
        """Rating predictions for the items of ``side``."""

    def rank(self, p: Params, user: torch.Tensor, side: Side) -> torch.Tensor:
        return self.predict(p, user, side)

    def rank_parts(self, p: Params, user: torch.Tensor, side: Side) -> dict[str, torch.Tensor]:
        """:meth:`rank`'s terms by path (they sum to it): one ``rating`` term unless a head splits it."""
        return {"rating": self.rank(p, user, side)}

    def support_terms(self, p: Params, s_side: Side, sy: torch.Tensor, sm: torch.Tensor) -> torch.Tensor:
        """[S, N] each support item's term in the ``item_item`` part of :meth:`rank_parts` (summing over S
        gives it) for adapted ``p`` (only called when :attr:`item_item_active`)."""
        raise NotImplementedError(f"head {self.name!r} has no item-item matrix")

    def param_groups(self) -> dict[str, list[str]]:
        """Parameter names of the rating path and of the ranking path (``two_paths`` heads only)."""
        return {}

    # ---- hooks for data-driven buffers: no-ops unless the capability is declared ----------------

    @property
    def item_item_active(self) -> bool:
        """Whether this instance blends an item-item matrix (``item_item_blend`` heads, when the
        configuration and catalogue size allow one)."""
        return False

    def set_item_offsets(self, offsets: torch.Tensor) -> None:
        """Per-item rating offsets [n_catalogue] (``item_offsets`` heads)."""

    def set_item_item(self, matrix: torch.Tensor, folds: torch.Tensor | None = None) -> None:
        """The item-item matrix and its out-of-fold training versions (``item_item_blend`` heads)."""

    def item_item_rows(self, items: torch.Tensor, fold: torch.Tensor | None) -> torch.Tensor:
        """Dense rows [..., n_items] of the item-item matrix for a few items (only called when
        :attr:`item_item_active`)."""
        raise NotImplementedError(f"head {self.name!r} has no item-item matrix")

    def item_item_support(self, items: torch.Tensor, fold: torch.Tensor | None) -> Side:
        """The support items' side of the item-item blend, merged into ``s_side`` before
        :meth:`init_fast` (only called when :attr:`item_item_active`)."""
        raise NotImplementedError(f"head {self.name!r} has no item-item matrix")

    def set_trend(self, prior: torch.Tensor, weight: float, decay: float = 0.0) -> None:
        """The popularity prior [n_catalogue], its ranking weight and decay (:mod:`recsys.models.trend`)."""


HEADS: dict[str, type[Head]] = {}
"""The registered heads by ``model.head`` name."""


def register_head(name: str) -> Callable[[type[Head]], type[Head]]:
    """Class decorator: register a :class:`Head` subclass (with its own capabilities) as ``name``."""

    def add(cls: type[Head]) -> type[Head]:
        if not (isinstance(cls, type) and issubclass(cls, Head)):
            raise TypeError(f"head {name!r}: {cls!r} is not a Head subclass")
        if "capabilities" not in cls.__dict__:
            raise TypeError(f"head {name!r}: {cls.__name__} does not declare its capabilities")
        if name in HEADS and HEADS[name] is not cls:
            raise TypeError(f"head {name!r} is already registered ({HEADS[name].__name__})")
        cls.name = name
        HEADS[name] = cls
        return cls

    return add


def head_class(name: str) -> type[Head]:
    """The registered head called ``name`` (a SpecError listing the registered ones otherwise)."""
    try:
        return HEADS[name]
    except (KeyError, TypeError):
        raise SpecError(
            f"config key model.head: unknown head {name!r} (registered: {', '.join(sorted(HEADS))})"
        ) from None


@register_head("melu")
class MeLUHead(Head):
    """MeLU's decision network: an MLP over the concatenation [user; item] -> rating."""

    capabilities = HeadCapabilities()

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, user_dim: int, item_dim: int, *, rating_mean: float, n_items: int
    ) -> MeLUHead:
        return cls(user_dim, item_dim, cfg.hidden, rating_mean)

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

    def item_side(self, items: torch.Tensor, index: torch.Tensor | None = None) -> Side:
        return {"x": items}

    def predict(self, p: Params, user: torch.Tensor, side: Side) -> torch.Tensor:
        x = side["x"]
        u = user.unsqueeze(-2).expand(*x.shape[:-1], user.shape[-1])
        return _run_f(p, "layers", len(self.layers), torch.cat([u, x], dim=-1)).squeeze(-1)

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predictions with the module's own weights (no adaptation)."""
        return self.predict(dict(self.named_parameters()), user, self.item_side(items))


@register_head("factorized")
class FactorizedHead(Head):
    """score = <user tower(user), item tower(item)> / sqrt(d) + item bias(item) + global bias.

    The item side (tower output and bias) does not depend on the user, so it is computed once for
    the whole catalogue; per-user adaptation touches only the user tower.
    """

    capabilities = HeadCapabilities()
    factor_key = "h"

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, user_dim: int, item_dim: int, *, rating_mean: float, n_items: int
    ) -> FactorizedHead:
        return cls(user_dim, item_dim, cfg.hidden, cfg.factor_dim, rating_mean)

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

    def item_side(self, items: torch.Tensor, index: torch.Tensor | None = None) -> Side:
        return {"h": _run(self.item_tower, items), "b": self.item_bias(items).squeeze(-1)}

    def predict(self, p: Params, user: torch.Tensor, side: Side) -> torch.Tensor:
        if self.user_dim == 0:  # no user features: the tower starts from a constant input
            user = user.new_ones(*user.shape[:-1], 1)
        w = _run_f(p, "user_tower", len(self.user_tower), user)
        return (side["h"] @ w.unsqueeze(-1)).squeeze(-1) * self.scale + side["b"] + p["global_bias"]

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.predict(dict(self.named_parameters()), user, self.item_side(items))


@register_head("hybrid")
class HybridHead(ItemItemBlend, PathWeights, AlsPath, ClassicalItemItem, Head):
    """Meta-learned fold-in: ratings from a closed-form ridge fit, ranking from a support-set encoder.

    The head has two independent paths, each with its own embeddings (the network concatenates a
    rating part and a ranking part of every item and user vector), so each can keep the epoch that
    validates best for it (see :meth:`param_groups`).

    Ratings: ``r = mu + b_i + <w_u, [q_i, 1]>``. The item factors ``q_i`` and biases ``b_i`` come from
    the item's embeddings (content fields and item id). A new user's ``w_u`` (factors and a user bias)
    is the ridge solution on the support residuals, shrunk towards a prior predicted from the user's
    features, with learned shrinkage (per user when ``support_trust``: a linear function of a summary of
    the support offsets the global log-shrinkage); it is a differentiable batched ``torch.linalg.solve``
    (Bertinetto et al., ICLR 2019), so the item factors are meta-trained *for* fold-in.

    Ranking: ``s = <z_u, psi_i> + c_i + alpha * sum_s g(r_s) B[s, i]``, where ``z_u`` encodes the
    support set (its items' vectors modulated by the ratings, plus the user's features) — a
    task-conditioned summary in the spirit of MAMO / TaNP — and ``B`` is an optional fixed item-item
    matrix fitted on the training users (EASE, Steck 2019) whose support rows are blended in with a
    learned rating weighting ``g`` and scale ``alpha``. During training each task uses a ``B`` fitted
    on the *other* half of the training users (out of fold), so the blend weight is learned on
    scores that generalise. Trained with a softmax over the catalogue; inner steps, when configured,
    refine ``w_u`` and ``z_u``. After training, classical paths (ALS, item-item fold-ins, a trend prior)
    may be added with weights chosen on validation users (:mod:`recsys.post_training`).
    """

    capabilities = HeadCapabilities(
        ranking_output=True,
        closed_form_adaptation=True,
        item_offsets=True,
        item_item_blend=True,
        trend_prior=True,
        path_weights=True,
        two_paths=True,
    )
    RATING = ("q_tower.", "q_bias.", "prior.", "mu", "log_lambda", "trust.")
    factor_key = "psi"  # the ranking path's item factors

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, user_dim: int, item_dim: int, *, rating_mean: float, n_items: int
    ) -> HybridHead:
        ii, k = item_item_storage(cfg, n_items)
        hy = cfg.hybrid
        dims = (user_dim, item_dim, cfg.hidden, cfg.factor_dim, rating_mean, ii, n_items)
        cf = hy.classical_item_item and n_items <= hy.item_item_dense_items
        paths = {"mf_fallback": hy.mf_fallback, "als_path": hy.als_path, "cf_path": cf}
        return cls(*dims, support_trust=hy.fold_in_trust == "support", ii_neighbours=k, **paths)

    def __init__(
        self,
        user_dim: int,
        item_dim: int,
        hidden: tuple[int, ...],
        factor_dim: int,
        rating_mean: float = 0.0,
        n_items: int = 0,
        n_catalogue: int = 0,
        support_trust: bool = True,
        ii_neighbours: int = 0,
        mf_fallback: bool = False,
        als_path: bool = False,
        cf_path: bool = False,
    ) -> None:
        """``user_dim`` / ``item_dim``: the size of ONE path's part of the user / item vectors;
        ``n_items``: catalogue size for the item-item blend (0: off); ``n_catalogue``: catalogue size;
        ``support_trust``: the fold-in's shrinkage also depends on a summary of the support set;
        ``ii_neighbours``: 0 for a dense item-item matrix, else its sparse top-k width;
        ``mf_fallback`` / ``als_path`` / ``cf_path``: keep buffers for the MF rating fallback / the ALS ranking
        path / the classical item-item path (:mod:`recsys.models.path_weights`, ``als_path``,
        ``cf_path``)."""
        super().__init__()
        d = factor_dim
        self.d = d
        self.user_dim = user_dim
        self.item_dim = item_dim
        h = hidden[0] if hidden else d
        u_in = max(1, user_dim)
        self.q_tower = _mlp([item_dim, h, d])
        self.q_bias = nn.Linear(item_dim, 1)
        self.prior = _mlp([u_in, h, d + 1])
        self.mu = nn.Parameter(torch.tensor(float(rating_mean)))
        self.log_lambda = nn.Parameter(torch.tensor([math.log(5.0), math.log(5.0)]))
        # per-user trust: offsets to the log-shrinkage (factors, bias) from a summary of the support
        # (see support_summary); zero-initialised, so training starts from the global shrinkage
        self.trust = nn.Linear(SUPPORT_STATS + d, 2) if support_trust else None
        self.r_tower = _mlp([item_dim, h, d])
        self.r_in = _mlp([item_dim, h, d])
        self.r_bias = nn.Linear(item_dim, 1)
        self.encoder = _mlp([d + u_in, *hidden, d])
        self.rate_gain = nn.Parameter(torch.ones(d))
        self.rate_slope = nn.Parameter(torch.zeros(d))
        # item-item blend (recsys.models.item_item_blend): dense or sparse top-k, set by set_item_item()
        # (empty when disabled); the out-of-fold copies are only needed while training and are not saved
        self._init_item_item(n_items, ii_neighbours)
        # data-driven item baseline (damped mean rating minus the global mean) added to b_i; zero for
        # items without training ratings, whose bias then comes from their content alone
        self.register_buffer("item_offset", torch.zeros(n_catalogue))
        # the trend prior, the ranking paths' mix and the fold-in's weight, chosen after training
        # (recsys.models.path_weights; recsys.post_training)
        self._init_path_weights(n_catalogue, mf=mf_fallback)
        self._init_als_path(als_path)
        self._init_cf_path(cf_path)
        self.ii_scale = nn.Parameter(torch.tensor(1.0))
        self.ii_rate = nn.Parameter(torch.tensor([1.0, 0.0]))
        self.ii_gate = nn.Linear(d, 1)  # per-user trust in the item-item scores, from the support summary
        with torch.no_grad():
            for m in (self.prior[-1], self.q_tower[-1]):
                m.weight.mul_(0.1)
                m.bias.zero_()
            self.ii_gate.weight.zero_()
            self.ii_gate.bias.fill_(math.log(math.e - 1.0))  # softplus -> 1
            if self.trust is not None:
                self.trust.weight.zero_()
                self.trust.bias.zero_()

    def adaptable(self, mode: str) -> list[str]:
        return []  # adaptation acts on the per-user vectors from init_fast

    def fast_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"fast.w": (self.d + 1,), "fast.z": (self.d,)}

    def param_groups(self) -> dict[str, list[str]]:
        """Head parameter names of the rating path and of the ranking path (disjoint)."""
        names = [n for n, _ in self.named_parameters()]
        rating = [n for n in names if n.startswith(self.RATING)]
        return {"rating": rating, "ranking": [n for n in names if n not in rating]}

    def _user_input(self, user: torch.Tensor) -> torch.Tensor:
        return user if self.user_dim else user.new_ones(*user.shape[:-1], 1)

    def set_item_offsets(self, offsets: torch.Tensor) -> None:
        self.item_offset.copy_(offsets)

    def item_side(self, items: torch.Tensor, index: torch.Tensor | None = None) -> Side:
        di = self.item_dim
        x_rate, x_rank = items[..., :di], items[..., di:]
        q = _run(self.q_tower, x_rate)
        b = self.q_bias(x_rate).squeeze(-1)
        extra = {}
        if index is not None:
            extra["idx"] = index
            if self.item_offset.numel():
                b = b + self.item_offset[index]
            extra |= self.mf_item_side(index) | self.als_item_side(index)
        return extra | {
            "q1": torch.cat([q, torch.ones_like(q[..., :1])], dim=-1),
            "b": b,
            "psi": _run(self.r_tower, x_rank),
            "psi_in": _run(self.r_in, x_rank),
            "c": self.r_bias(x_rank).squeeze(-1),
        }

    def init_fast(
        self, p: Params, user: torch.Tensor, s_side: Side, sy: torch.Tensor, sm: torch.Tensor
    ) -> Params:
        du = self.user_dim
        u_rate = self._user_input(user[..., :du])
        u_rank = self._user_input(user[..., du:])
        m = sm.to(sy.dtype)
        w0 = _run_f(p, "prior", len(self.prior), u_rate)  # [d + 1]
        phi = s_side["q1"] * m.unsqueeze(-1)  # padding rows -> zero
        resid = (sy - p["mu"] - s_side["b"]) * m
        lam = torch.exp(self.log_shrinkage(p, phi, resid, m))
        diag = torch.cat([lam[0].expand(self.d), lam[1:2]])
        a = phi.transpose(-1, -2) @ phi + torch.diag(diag)
        rhs = phi.transpose(-1, -2) @ resid + diag * w0
        # solve_ex skips the singularity check (a is positive definite): no host sync on GPU
        w = torch.linalg.solve_ex(a, rhs, check_errors=False).result
        centred = (sy - p["mu"]) * m
        mod = s_side["psi_in"] * (p["rate_gain"] + p["rate_slope"] * centred.unsqueeze(-1))
        pooled = (mod * m.unsqueeze(-1)).sum(-2) / m.sum().clamp_min(1.0).sqrt()
        z = _run_f(p, "encoder", len(self.encoder), torch.cat([pooled, u_rank], dim=-1))
        fast = {"fast.w": w, "fast.z": z}
        for fold_in in (self.mf_fold_in, self.als_fold_in, self.cf_fold_in):  # the classical paths
            fast |= fold_in(s_side, sy, m)
        if self.trend.numel():  # the prior's weight for this user's support size
            fast["fast.trend_w"] = trend.user_weight(self.trend_weight, self.trend_decay, m.sum())
        if self.item_item_active:
            scores = blend(s_side, self.item_item_weights(p, z, sy, sm), self.item_item_catalogue)
            if scores is not None:
                fast["fast.ii"] = scores  # [n_items]
        return fast

    def item_item_weights(
        self, p: Params, z: torch.Tensor, sy: torch.Tensor, sm: torch.Tensor
    ) -> torch.Tensor:
        """[S] each support item's weight on its row of B in ``fast.ii``: the user's gate (from ``z``)
        times the learned rating weighting (zero on padding); :meth:`rank` scales the sum by ``ii_scale``."""
        weight = (p["ii_rate"][0] + p["ii_rate"][1] * (sy - p["mu"])) * sm.to(sy.dtype)
        return F.softplus(F.linear(z, p["ii_gate.weight"], p["ii_gate.bias"])) * weight

    def support_terms(self, p: Params, s_side: Side, sy: torch.Tensor, sm: torch.Tensor) -> torch.Tensor:
        w = self.item_item_weights(p, p["fast.z"], sy, sm)  # inner steps on the ratings leave z as is
        return (
            self.rank_mix[1] * p["ii_scale"] * w.unsqueeze(-1) * dense_rows(s_side, self.item_item_catalogue)
        )

    def log_shrinkage(
        self, p: Params, phi: torch.Tensor, resid: torch.Tensor, m: torch.Tensor
    ) -> torch.Tensor:
        """One user's ridge log-shrinkage [factors, bias]: global, plus the learned trust offset."""
        if self.trust is None:
            return p["log_lambda"]
        return p["log_lambda"] + F.linear(support_summary(phi, resid, m), p["trust.weight"], p["trust.bias"])

    def predict(self, p: Params, user: torch.Tensor, side: Side) -> torch.Tensor:
        return self.mf_mix(p["mu"] + side["b"], side["q1"] @ p["fast.w"], p, side)

    def rank(self, p: Params, user: torch.Tensor, side: Side) -> torch.Tensor:
        return sum(self.rank_parts(p, user, side).values())

    def rank_parts(self, p: Params, user: torch.Tensor, side: Side) -> dict[str, torch.Tensor]:
        """The ranking score's terms: support encoder, item-item blend, ALS and classical paths, trend."""
        mix = self.rank_mix
        parts = {"support_encoder": mix[0] * (side["psi"] @ p["fast.z"] + side["c"])}
        if "fast.ii" in p and "idx" in side:
            parts["item_item"] = mix[1] * p["ii_scale"] * p["fast.ii"][side["idx"]]
        parts |= self.als_part(p, side) | self.cf_part(p, side)
        if "idx" in side and self.trend.numel():
            parts["trend"] = p.get("fast.trend_w", self.trend_weight) * self.trend[side["idx"]]
        return parts
