"""The cold-start network: user and item field embeddings feeding a decision head."""

from __future__ import annotations

import torch
from torch import nn

from recsys.config import ModelConfig
from recsys.models.embedding import FieldEmbedding
from recsys.models.heads import FactorizedHead, HybridHead, MeLUHead


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
    ) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embedding_dim
        self.item_embedding = FieldEmbedding(
            item_vocab, item_token_fields, item_dense, d, cfg.pooling, cfg.sparse
        )
        self.user_embedding = FieldEmbedding(
            user_vocab, user_token_fields, user_dense, d, cfg.pooling, cfg.sparse
        )
        du, di = self.user_embedding.out_dim, self.item_embedding.out_dim
        if cfg.head == "factorized":
            self.head: nn.Module = FactorizedHead(du, di, cfg.hidden, cfg.factor_dim, rating_mean)
        elif cfg.head == "hybrid":
            self.head = HybridHead(du, di, cfg.hidden, cfg.factor_dim, rating_mean)
        else:
            self.head = MeLUHead(du, di, cfg.hidden, rating_mean)

    def embed_items(self, indices: torch.Tensor, offsets: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.item_embedding(indices, offsets, dense)

    def embed_users(self, indices: torch.Tensor, offsets: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.user_embedding(indices, offsets, dense)

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [self.item_embedding.bag.weight, self.user_embedding.bag.weight] if self.cfg.sparse else []
