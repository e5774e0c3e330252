"""Data layer: dataset specs, readers, built-in datasets, downloads, splits and task sampling."""

from recsys.data.dataset import Dataset, load_dataset
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.data.spec import DatasetSpec, FieldKind, FieldSpec, TableSpec

__all__ = [
    "ITEM",
    "RATING",
    "TIMESTAMP",
    "USER",
    "Dataset",
    "DatasetSpec",
    "FieldKind",
    "FieldSpec",
    "TableSpec",
    "load_dataset",
]
