"""Neural building blocks: field embeddings over ``EmbeddingBag`` and the decision heads."""

from recsys.models.embedding import FieldEmbedding
from recsys.models.heads import FactorizedHead, HybridHead, MeLUHead
from recsys.models.network import ColdStartNet

__all__ = ["ColdStartNet", "FactorizedHead", "FieldEmbedding", "HybridHead", "MeLUHead"]
