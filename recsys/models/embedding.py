"""All fields of one side (users or items) embedded by a single ``nn.EmbeddingBag`` call.

The fields share one table (see :mod:`recsys.features.encoders` for the id layout), so a batch of
``N`` rows with ``F`` token fields is ``N * F`` bags in one call: single-valued fields are bags of one
token, multi-valued fields (genres, actors) pool their tokens (mean by default). Dense fields get a
learned per-field vector scaled by the value. The output concatenates the fields: ``[N, (F + D) * dim]``.
"""

from __future__ import annotations

import torch
from torch import nn

INIT_STD = 0.1
"""Standard deviation of a freshly initialised embedding table."""


class FieldEmbedding(nn.Module):
    def __init__(
        self,
        num_embeddings: int,
        n_token_fields: int,
        n_dense: int,
        dim: int,
        pooling: str = "mean",
        sparse: bool = False,
    ) -> None:
        super().__init__()
        self.n_token_fields = n_token_fields
        self.n_dense = n_dense
        self.dim = dim
        self.bag = nn.EmbeddingBag(
            max(1, num_embeddings),
            dim,
            mode=pooling,
            sparse=sparse,
            include_last_offset=True,
            padding_idx=0,
            _weight=torch.empty(max(1, num_embeddings), dim),  # initialised below, once
        )
        if not self.bag.weight.is_meta:  # on ``meta`` (shape checks) normal_ imports torch._dynamo: 2 s
            # the draw EmbeddingBag's own initialisation made (``_weight`` skips it), so that a seed
            # gives the same network as before the meta-device fix (the random stream is unchanged)
            nn.init.normal_(self.bag.weight)
            nn.init.normal_(self.bag.weight, std=INIT_STD)
        with torch.no_grad():
            self.bag.weight[0].zero_()
        dense = torch.empty(n_dense, dim)
        if not dense.is_meta:  # the same draws as ``torch.randn(n_dense, dim) * 0.1``
            dense.normal_(0.0, 0.1)
        self.dense_weight = nn.Parameter(dense)
        self.dense_bias = nn.Parameter(torch.zeros(n_dense, dim))

    @property
    def out_dim(self) -> int:
        return (self.n_token_fields + self.n_dense) * self.dim

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        n = dense.shape[0]
        parts = []
        if self.n_token_fields:
            parts.append(self.bag(indices, offsets).view(n, self.n_token_fields * self.dim))
        if self.n_dense:
            parts.append((dense[:, :, None] * self.dense_weight + self.dense_bias).reshape(n, -1))
        if not parts:
            return dense.new_zeros(n, 0)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
