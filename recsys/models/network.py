"""The cold-start network: user and item field embeddings feeding a decision head."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from recsys.config import ModelConfig
from recsys.errors import SpecError
from recsys.models.embedding import FieldEmbedding
from recsys.models.heads import FactorizedHead, HybridHead, MeLUHead

if TYPE_CHECKING:
    from recsys.features.space import FeatureSpace


class ColdStartNet(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        *,
        item_vocab: int,
        item_token_fields: int,
        item_dense: int,
        user_vocab: int,
        user_token_fields: int,
        user_dense: int,
        rating_mean: float = 0.0,
        n_items: int = 0,
    ) -> None:
        super().__init__()
        cfg.validate()  # a config edited after it was built (head "hybird", hidden [10**9]): one SpecError
        self.cfg = cfg
        d = cfg.embedding_dim
        self.item_embedding = FieldEmbedding(
            item_vocab, item_token_fields, item_dense, d, cfg.pooling, cfg.sparse
        )
        self.user_embedding = FieldEmbedding(
            user_vocab, user_token_fields, user_dense, d, cfg.pooling, cfg.sparse
        )
        du, di = self.user_embedding.out_dim, self.item_embedding.out_dim
        # the hybrid head's ranking path has embeddings of its own (concatenated after the rating part)
        self.two_paths = cfg.head == "hybrid"
        if self.two_paths:
            self.rank_item_embedding = FieldEmbedding(
                item_vocab, item_token_fields, item_dense, d, cfg.pooling, cfg.sparse
            )
            self.rank_user_embedding = FieldEmbedding(
                user_vocab, user_token_fields, user_dense, d, cfg.pooling, cfg.sparse
            )
        if cfg.head == "factorized":
            self.head: nn.Module = FactorizedHead(du, di, cfg.hidden, cfg.factor_dim, rating_mean)
        elif cfg.head == "hybrid":
            ii = n_items if cfg.hybrid.item_item and n_items <= cfg.hybrid.item_item_max_items else 0
            trust = cfg.hybrid.fold_in_trust == "support"
            self.head = HybridHead(
                du, di, cfg.hidden, cfg.factor_dim, rating_mean, ii, n_items, support_trust=trust
            )
        elif cfg.head == "melu":
            self.head = MeLUHead(du, di, cfg.hidden, rating_mean)
        else:  # unreachable after validate(); never a silent MeLU head
            raise SpecError(f"config key model.head: unknown head {cfg.head!r}")

    @classmethod
    def for_space(
        cls, cfg: ModelConfig, space: FeatureSpace, *, rating_mean: float = 0.0, n_items: int | None = None
    ) -> ColdStartNet:
        """A network sized for ``space``'s encoders (``n_items``: catalogue size for the hybrid head's
        item-item blend and item offsets, default the space's; 0 turns both off)."""
        ie, ue = space.item_encoder, space.user_encoder
        return cls(
            cfg,
            item_vocab=ie.num_embeddings,
            item_token_fields=ie.n_token_fields,
            item_dense=ie.n_dense,
            user_vocab=ue.num_embeddings,
            user_token_fields=ue.n_token_fields,
            user_dense=ue.n_dense,
            rating_mean=rating_mean,
            n_items=space.n_items if n_items is None else n_items,
        )

    def embed_items(self, indices: torch.Tensor, offsets: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        x = self.item_embedding(indices, offsets, dense)
        if self.two_paths:
            x = torch.cat([x, self.rank_item_embedding(indices, offsets, dense)], dim=-1)
        return x

    def embed_users(self, indices: torch.Tensor, offsets: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        x = self.user_embedding(indices, offsets, dense)
        if self.two_paths:
            x = torch.cat([x, self.rank_user_embedding(indices, offsets, dense)], dim=-1)
        return x

    def param_groups(self) -> dict[str, list[str]] | None:
        """Full parameter names of independent paths that may keep different best epochs (or None)."""
        if not self.two_paths:
            return None
        groups = {k: [f"head.{n}" for n in v] for k, v in self.head.param_groups().items()}
        groups["rating"] += [
            f"{e}.{n}"
            for e in ("item_embedding", "user_embedding")
            for n, _ in getattr(self, e).named_parameters()
        ]
        groups["ranking"] += [
            f"{e}.{n}"
            for e in ("rank_item_embedding", "rank_user_embedding")
            for n, _ in getattr(self, e).named_parameters()
        ]
        return groups

    def sparse_parameters(self) -> list[nn.Parameter]:
        if not self.cfg.sparse:
            return []
        bags = [self.item_embedding, self.user_embedding]
        if self.two_paths:
            bags += [self.rank_item_embedding, self.rank_user_embedding]
        return [b.bag.weight for b in bags]
