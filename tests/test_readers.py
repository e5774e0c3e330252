"""Readers: canonical schema, column mapping, formats, and a clear error for every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsys.data import load_dataset
from recsys.data.readers import read_interactions, read_side_table
from recsys.data.spec import DatasetSpec, FieldSpec, TableSpec
from recsys.errors import DataError, SpecError
from tests.conftest import write


def read(path: Path, **kw) -> pl.DataFrame:
    return read_interactions(TableSpec(path=str(path), **kw.pop("table", {})), None, **kw)


def test_canonical_schema_and_types(tiny_log: Path) -> None:
    df = read(tiny_log)
    assert df.columns == ["user_id", "item_id", "rating", "timestamp"]
    assert df["user_id"].dtype == pl.String and df["rating"].dtype == pl.Float32
    assert df["timestamp"].dtype == pl.Int64
    assert df.height == 48


def test_integer_ids_stay_integers(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", "user_id,item_id,rating\n1,10,4\n2,-3,5\n")
    df = read(p)
    assert df["user_id"].dtype == pl.Int64 and df["item_id"].to_list() == [10, -3]


def test_huge_ids_are_kept_as_strings(tmp_path: Path) -> None:
    huge = "123456789012345678901234567890"
    df = read(write(tmp_path / "a.csv", f"user_id,item_id\n{huge},1\n2,2\n"))
    assert df["user_id"].to_list() == [huge, "2"]


def test_column_mapping(tmp_path: Path) -> None:
    p = write(tmp_path / "a.tsv", "who\twhat\tstars\twhen\nA\tX\t3\t10\nB\tY\t4\t11\n")
    cols = {"user_id": "who", "item_id": "what", "rating": "stars", "timestamp": "when"}
    df = read(p, table={"columns": cols})
    assert df["rating"].to_list() == [3.0, 4.0]


def test_implicit_log_without_rating(tmp_path: Path) -> None:
    p = write(tmp_path / "plays.csv", "user_id,item_id,timestamp\na,x,1\na,y,2\nb,x,3\n")
    ds = load_dataset(p)
    assert ds.implicit and "rating" not in ds.interactions.columns
    assert ds.stats()["feedback"] == "implicit"


def test_parquet_with_list_and_iso_timestamps(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": ["a", "b"],
            "timestamp": ["2020-01-01T00:00:00", "2020-01-02T00:00:00"],
        }
    )
    frame.write_parquet(tmp_path / "l.parquet")
    df = read(tmp_path / "l.parquet")
    assert df["timestamp"].to_list() == [1577836800, 1577923200]


def test_duplicates_keep_latest_and_are_reported(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "user_id,item_id,rating,timestamp\n1,1,2,50\n1,1,5,90\n1,1,3,70\n1,2,4,1\n")
    from recsys.data.tables import ReadReport

    report = ReadReport()
    df = read(p, report=report)
    assert report.duplicates_dropped == 2
    assert df.filter(pl.col("item_id") == 1)["rating"].to_list() == [5.0]


# ---- bad input: each error names the file, line, field and what was expected ---------------------


def test_malformed_row_names_line(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "user_id,item_id,rating\n1,2,3\n4,5,6,7,8\n")
    with pytest.raises(DataError) as err:
        read(p)
    assert err.value.line == 3 and "m.csv" in str(err.value) and "fields" in str(err.value)


def test_truncated_line_names_line_and_field(tmp_path: Path) -> None:
    p = write(tmp_path / "t.csv", "user_id,item_id,rating\n1,2,3\n4,5\n")
    with pytest.raises(DataError) as err:
        read(p)
    assert err.value.line == 3 and err.value.field == "rating"


def test_missing_column(tmp_path: Path) -> None:
    p = write(tmp_path / "c.csv", "user,item_id\n1,2\n")
    with pytest.raises(DataError) as err:
        read(p)
    assert err.value.field == "user_id" and "has ['user', 'item_id']" in str(err.value)


def test_wrong_delimiter_is_explained(tmp_path: Path) -> None:
    p = write(tmp_path / "w.csv", "user_id\titem_id\trating\n1\t2\t3\n")
    with pytest.raises(DataError, match="separated by '\\\\t'"):
        read(p)


def test_non_numeric_rating(tmp_path: Path) -> None:
    p = write(tmp_path / "r.csv", "user_id,item_id,rating\n1,2,3\n1,3,five\n")
    with pytest.raises(DataError) as err:
        read(p)
    assert (err.value.line, err.value.field, err.value.got) == (3, "rating", "five")
    assert "expected a number" in str(err.value)


def test_nan_rating(tmp_path: Path) -> None:
    p = write(tmp_path / "n.csv", "user_id,item_id,rating\n1,2,NaN\n")
    with pytest.raises(DataError, match="finite") as err:
        read(p)
    assert err.value.line == 2


def test_rating_outside_scale(tmp_path: Path) -> None:
    p = write(tmp_path / "s.csv", "user_id,item_id,rating\n1,2,3\n1,3,7\n")
    with pytest.raises(DataError, match=r"in \[1, 5\]") as err:
        read(p, rating_scale=(1.0, 5.0))
    assert err.value.line == 3


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        read(write(tmp_path / "e.csv", ""))
    with pytest.raises(DataError, match="no rows"):
        read(write(tmp_path / "h.csv", "user_id,item_id\n"))


def test_wrong_encoding_names_line(tmp_path: Path) -> None:
    p = tmp_path / "enc.csv"
    p.write_bytes("user_id,item_id\n1,ok\n2,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8") as err:
        read(p)
    assert err.value.line == 3
    df = read(p, table={"encoding": "latin-1"})
    assert df["item_id"].to_list() == ["ok", "Café"]


def test_missing_file() -> None:
    with pytest.raises(DataError, match="not found"):
        read(Path("/nonexistent/x.csv"))


def test_damaged_parquet(tmp_path: Path) -> None:
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="Parquet"):
        read(p)


def test_dat_format_wrong_field_count(tmp_path: Path) -> None:
    p = write(tmp_path / "r.dat", "1::2::3::4\n1::3::4\n")
    with pytest.raises(DataError) as err:
        read(
            p,
            table={
                "separator": "::",
                "header": False,
                "names": ["user_id", "item_id", "rating", "timestamp"],
            },
        )
    assert err.value.line == 2


def test_unknown_field_kind() -> None:
    with pytest.raises(SpecError, match="unknown kind 'fuzzy'"):
        FieldSpec(name="x", kind="fuzzy")
    with pytest.raises(SpecError, match="unknown kind"):
        DatasetSpec.from_dict(
            {
                "name": "a",
                "interactions": {"path": "x.csv"},
                "items": {"path": "i.csv", "fields": [{"name": "g", "kind": "bag"}]},
            }
        )


def test_unknown_spec_key() -> None:
    with pytest.raises(SpecError, match="unknown spec key"):
        DatasetSpec.from_dict({"name": "a", "interactions": {"path": "x.csv"}, "ratings_scale": [1, 5]})


def test_side_table_fields(tmp_path: Path) -> None:
    p = write(tmp_path / "items.csv", "id,genres,price,title\n1,A|B,3.5,One\n2,,x,Two\n")
    spec = TableSpec(path=str(p), key="id", fields=[FieldSpec("genres", "multi"), FieldSpec("title", "text")])
    df = read_side_table(spec, None, "item_id")
    assert df["genres"].to_list() == [["A", "B"], []]
    bad = TableSpec(path=str(p), key="id", fields=[FieldSpec("price", "numeric")])
    with pytest.raises(DataError) as err:
        read_side_table(bad, None, "item_id")
    assert (err.value.line, err.value.field) == (3, "price")


def test_side_table_missing_field_column(tmp_path: Path) -> None:
    p = write(tmp_path / "users.csv", "user_id,age\n1,20\n")
    spec = TableSpec(path=str(p), fields=[FieldSpec("gender")])
    with pytest.raises(DataError, match="gender"):
        read_side_table(spec, None, "user_id")


@pytest.mark.parametrize(
    "text",
    [
        'name = "a"\nrating_scale = "abc"\n[interactions]\npath = "x.csv"\n',
        'name = "a"\n[interactions]\npath = "x.csv"\nseparator = 5\n',
        'name = "a"\n[interactions]\npath = "x.csv"\n[items]\npath = "i.csv"\nfields = [{ name = "p", kind = "numeric", buckets = "x" }]\n',
    ],
    ids=["rating-scale-string", "separator-int", "buckets-string"],
)
def test_spec_values_of_the_wrong_type_are_spec_errors(tmp_path: Path, text: str) -> None:
    p = tmp_path / "spec.toml"
    p.write_text(text)
    with pytest.raises(SpecError):
        DatasetSpec.from_toml(p)


def test_spec_file_not_utf8_is_a_spec_error(tmp_path: Path) -> None:
    p = tmp_path / "spec.toml"
    p.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(SpecError, match="UTF-8"):
        DatasetSpec.from_toml(p)
