"""Feature encoding: vocabularies, field encoders and CSR bags ready for ``nn.EmbeddingBag``."""

from recsys.features.encoders import EncodedTable, FieldEncoder, TableEncoder, Vocabulary

__all__ = ["EncodedTable", "FieldEncoder", "TableEncoder", "Vocabulary"]
