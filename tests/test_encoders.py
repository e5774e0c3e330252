"""Feature encoders: vocabularies with unknown tokens, CSR bags, buckets, persistence."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.spec import FieldKind, FieldSpec
from recsys.features.encoders import TableEncoder, Vocabulary
from recsys.features.space import FeatureSpace


def test_vocabulary_unknown_and_min_count() -> None:
    v = Vocabulary.fit(pl.Series(["a", "b", "a", None]), min_count=2)
    assert v.tokens == ["a"]
    assert v.encode(pl.Series(["a", "b", "zzz", None])).tolist() == [1, 0, 0, 0]


def _items() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [1, 2, 3],
            "genre": [["A", "B"], [], ["B", "C", "A"]],
            "brand": ["x", "y", None],
            "price": [1.0, 10.0, 100.0],
            "weight": [2.0, 4.0, None],
        }
    )


SPECS = [
    FieldSpec("genre", FieldKind.MULTI),
    FieldSpec("brand"),
    FieldSpec("price", FieldKind.NUMERIC, buckets=2),
    FieldSpec("weight", FieldKind.DENSE),
]


def test_csr_bags_layout() -> None:
    enc = TableEncoder.fit("item_id", SPECS, _items())
    table = enc.encode(_items())
    F = enc.n_token_fields
    assert F == 3 and table.n_rows == 3
    assert len(table.offsets) == 3 * F + 1
    lengths = np.diff(table.offsets).reshape(3, F)
    assert lengths[:, 0].tolist() == [2, 1, 3]  # the empty genre list becomes one unknown token
    genre_unknown = enc.field_offsets[0]
    assert table.indices[table.offsets[F] : table.offsets[F + 1]].tolist() == [genre_unknown]
    # every id falls in its field's block of the shared table
    for f in range(F):
        lo, hi = enc.field_offsets[f], enc.field_offsets[f + 1]
        ids = np.concatenate(
            [table.indices[table.offsets[r * F + f] : table.offsets[r * F + f + 1]] for r in range(3)]
        )
        assert ((ids >= lo) & (ids < hi)).all()
    assert table.dense.shape == (3, 1) and table.dense[2, 0] == 0.0  # missing dense -> mean


def test_gather_equals_encoding_rows() -> None:
    enc = TableEncoder.fit("item_id", SPECS, _items())
    table = enc.encode(_items())
    rows = np.array([2, 0, 2])
    got = table.gather(rows)
    direct = enc.encode(_items()[rows.tolist()])
    assert got.indices.tolist() == direct.indices.tolist()
    assert got.offsets.tolist() == direct.offsets.tolist()


def test_unseen_values_map_to_unknown() -> None:
    enc = TableEncoder.fit("item_id", SPECS, _items())
    new = pl.DataFrame(
        {"item_id": [9], "genre": [["Z"]], "brand": ["never"], "price": [5.0], "weight": [3.0]}
    )
    t = enc.encode(new)
    assert t.indices[:2].tolist() == [enc.field_offsets[0], enc.field_offsets[1]]


def test_numeric_buckets_explicit_bins() -> None:
    spec = FieldSpec("age", FieldKind.NUMERIC, bins=[18, 30])
    enc = TableEncoder.fit("user_id", [spec], pl.DataFrame({"user_id": [1, 2, 3], "age": [10.0, 20.0, 40.0]}))
    t = enc.encode(pl.DataFrame({"user_id": [1, 2, 3], "age": [10.0, 20.0, 40.0]}))
    assert len(set(t.indices.tolist())) == 3


def test_encoder_round_trip() -> None:
    enc = TableEncoder.fit("item_id", SPECS, _items())
    again = TableEncoder.from_dict(enc.to_dict())
    a, b = enc.encode(_items()), again.encode(_items())
    assert a.indices.tolist() == b.indices.tolist() and np.allclose(a.dense, b.dense)


def test_feature_space_item_id_only_for_training_items(synthetic_small) -> None:
    ds = synthetic_small
    train = ds.interactions.filter(pl.col("item_id") != 1)
    space = FeatureSpace.fit_dataset(ds, train, title_field="title")
    assert space.n_items == 120  # item 1 stays in the catalogue from the item table
    row = int(space.items.lookup([1])[0])
    bag = space.item_table.gather(np.array([row]))
    id_field = space.item_encoder.n_token_fields - 1
    unknown_id = space.item_encoder.field_offsets[id_field]
    assert bag.indices[bag.offsets[id_field]] == unknown_id
    assert space.titles[row] == "Item 1"


def test_feature_space_round_trip(synthetic_small) -> None:
    ds = synthetic_small
    space = FeatureSpace.fit_dataset(ds)
    again = FeatureSpace.from_json(space.to_json(), space.arrays())
    assert again.items.to_list() == space.items.to_list()
    u = [{"occupation": "occ1", "age": "age2"}, None]
    assert again.encode_user_features(u).indices.tolist() == space.encode_user_features(u).indices.tolist()


def test_numeric_field_given_text_is_a_feature_mismatch() -> None:
    import pytest

    from recsys.errors import FeatureMismatchError

    enc = TableEncoder.fit("item_id", SPECS, _items())
    bad = _items().with_columns(pl.Series("price", ["cheap", "10", None]))
    with pytest.raises(FeatureMismatchError, match="price"):
        enc.encode(bad)
