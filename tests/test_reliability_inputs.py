"""Bad input, each case tested: readers (garbled, truncated, wrong delimiter or encoding, odd ids and
ratings, empty or missing feature tables, unseen feature values) and scoring through the API, the
CLI, batch tables and the MLflow pyfunc behind the REST endpoint (unknown items, NaN / infinite /
off-scale ratings, the same item twice, thousands of ratings, empty requests, wrong JSON types,
unknown user-feature values and names). Every failure is one of the project's documented errors
with a message; nothing else escapes. (tests/test_readers.py, tests/test_recommender.py,
tests/test_batch.py and tests/test_serving.py hold the cases that were covered before.)
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from recsys import ColdStartRecommender
from recsys.data import load_dataset
from recsys.data.dataset import load_files
from recsys.data.readers import read_interactions, read_side_table
from recsys.data.spec import FieldSpec, TableSpec
from recsys.data.synthetic import make_synthetic, write_synthetic
from recsys.errors import (
    DataError,
    FeatureMismatchError,
    RecsysError,
    ScoringInputError,
    UnknownItemError,
)
from recsys.requests import recommend_frame
from tests.conftest import write
from tests.mlflow_servers import cli

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8], "factor_dim": 8},
    "train": {"epochs": 1, "meta_batch_size": 16, "num_threads": 1},
}


@functools.cache
def tiny_model() -> ColdStartRecommender:
    """One epoch on synthetic data (integer ids, scale 1-5, categorical user features), trained once
    per test process and shared by the reliability tests."""
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3)
    return ColdStartRecommender(TINY).fit_dataset(ds)


@functools.cache
def tiny_model_dir() -> Path:
    folder = tempfile.mkdtemp(prefix="recsys-reliability-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return tiny_model().save(Path(folder) / "model")


@functools.cache
def rich_model() -> ColdStartRecommender:
    """A model whose users have every kind of feature: categorical, multi-valued, numeric, dense."""
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=8)
    rng = np.random.default_rng(0)
    n = ds.users.height
    users = ds.users.with_columns(
        pl.Series("years", rng.integers(18, 70, n)).cast(pl.Float64),
        pl.Series("income", rng.normal(50, 10, n)),
        pl.Series("tags", [["a", "b", "c"][: i % 4] for i in range(n)]),
    )
    fields = [
        FieldSpec("gender"),
        FieldSpec("years", "numeric", buckets=4),
        FieldSpec("income", "dense"),
        FieldSpec("tags", "multi"),
    ]
    rec = ColdStartRecommender(TINY | {"model": TINY["model"] | {"hybrid": {"item_item": False}}})
    return rec.fit(
        ds.interactions, users, ds.items, user_fields=fields, item_fields=[], rating_scale=(1.0, 5.0)
    )


def assert_ranking(rec: ColdStartRecommender, top: list, n: int, rated=()) -> None:
    """A valid answer: unique known items, none of the rated ones, scores finite and descending."""
    ids = [i for i, _ in top]
    scores = [s for _, s in top]
    assert len(ids) == len(set(ids)) <= n
    assert set(ids) <= set(rec.item_ids) and not set(ids) & set(rated)
    assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)


# ---- readers ----------------------------------------------------------------------------------


def read(path: Path, **kw) -> pl.DataFrame:
    return read_interactions(TableSpec(path=str(path), **kw.pop("table", {})), None, **kw)


@pytest.mark.parametrize(
    ("content", "words", "line"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "UTF-8", 1),  # a binary file
        ("user_id,item_id\n".encode("utf-16"), "UTF-8", 1),  # UTF-16 (BOM 0xff 0xfe)
        (b"user_id,item_id,rating\n1,2,3\n\x00\x01\x02,\x03\n", "", 3),  # NULs and control bytes
        (b'user_id,item_id,rating\n1,2,3\n4,"5,6\n7,8,9\n', "", None),  # an unterminated quote
        (b'user_id,item_id,rating\n1,2,3\n"4"\r,5,6,7\n', "", None),  # quote + stray carriage return
        (b"user_id,item_id,rating\n1,2,3\n1,2,", "missing", 3),  # cut mid-line (truncated file)
        (b"user_id;item_id;rating\n1;2;3\n", "separated by ';'", None),  # wrong delimiter
    ],
)
def test_garbled_truncated_and_binary_files_are_data_errors(tmp_path, content, words, line) -> None:
    p = tmp_path / "log.csv"
    p.write_bytes(content)
    with pytest.raises(DataError) as err:
        read(p)
    assert words in str(err.value) and "log.csv" in str(err.value)
    if line is not None:
        assert err.value.line == line


def test_huge_and_negative_ids_round_trip_through_training_and_scoring(tmp_path) -> None:
    huge = 10**30  # beyond int64: kept as the string the file holds
    rows = ["user_id,item_id,rating"] + [
        f"{u},{i},{1 + (u * 7 + i) % 5}"
        for u in (-5, -1, 0, huge, 2**63 - 1, 1, 2, 3, 4, 5)
        for i in (-3, -2, -1, 7, 11)
    ]  # 10 users: the fewest the meta-learner trains on (recsys.data.log_checks.MIN_TASK_USERS)
    log = read(write(tmp_path / "ids.csv", "\n".join(rows) + "\n"))
    assert log["user_id"].dtype == pl.String and str(huge) in log["user_id"].to_list()
    assert log["item_id"].dtype == pl.Int64 and sorted(log["item_id"].unique().to_list()) == [
        -3,
        -2,
        -1,
        7,
        11,
    ]
    rec = ColdStartRecommender(TINY | {"train": TINY["train"] | {"validation_fraction": 0.0}})
    rec.fit(log, rating_scale=(1.0, 5.0))
    top = rec.recommend({-3: 5.0, "-2": 1.0}, n=10)
    assert_ranking(rec, top, 10, rated={-3, -2})
    assert {i for i, _ in top} == {-1, 7, 11}


def test_ratings_off_scale_nan_or_too_large_are_data_errors(tmp_path) -> None:
    with pytest.raises(DataError, match=r"in \[1, 5\]") as err:
        read(write(tmp_path / "a.csv", "user_id,item_id,rating\n1,1,4\n1,2,-1\n"), rating_scale=(1.0, 5.0))
    assert err.value.line == 3
    with pytest.raises(DataError, match="finite") as err:
        read(write(tmp_path / "b.csv", "user_id,item_id,rating\n1,1,inf\n"))
    # no declared scale: a rating that does not fit a 32-bit float would become infinite in training
    with pytest.raises(DataError, match="too large") as err:
        read(write(tmp_path / "c.csv", "user_id,item_id,rating\n1,1,4\n1,2,1e39\n"))
    assert (err.value.line, err.value.field) == (3, "rating")


def test_bad_timestamps_are_data_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="not a number") as err:
        read(write(tmp_path / "t.csv", "user_id,item_id,timestamp\n1,1,yesterday\n"))
    assert err.value.field == "timestamp"
    with pytest.raises(DataError, match="out of range") as err:
        read(write(tmp_path / "u.csv", "user_id,item_id,timestamp\n1,1,5\n1,2,1e300\n"))
    assert err.value.line == 3


def test_missing_timestamps_are_data_errors(tmp_path) -> None:
    """Found by the property tests: a null date in a Parquet log, or an empty ISO date, passed through."""
    frame = pl.DataFrame(
        {"user_id": [1, 2], "item_id": [1, 2], "timestamp": [pd.Timestamp("2020-01-01"), None]}
    )
    frame.write_parquet(tmp_path / "log.parquet")
    with pytest.raises(DataError, match="missing value") as err:
        read(tmp_path / "log.parquet")
    assert (err.value.field, err.value.line) == ("timestamp", 2)
    with pytest.raises(DataError, match="missing value") as err:
        read(write(tmp_path / "iso.csv", "user_id,item_id,timestamp\n1,1,2020-01-01\n1,2,\n"))
    assert (err.value.field, err.value.line) == ("timestamp", 3)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("item_id", pl.Series([[1], [2, 3]])),  # lists where ids belong
        ("user_id", pl.Series([{"a": 1}, {"a": 2}])),  # structs
        ("item_id", pl.Series([b"\xff", b"x"])),  # binary, not text
        ("rating", pl.Series([[3.0], [4.0]])),
        ("rating", pl.Series([True, False])),
        ("timestamp", pl.Series([pd.Timedelta(1), None], dtype=pl.Duration("us"))),
    ],
)
def test_parquet_columns_of_the_wrong_type_are_data_errors(tmp_path, column, values) -> None:
    frame = {"user_id": [1, 2], "item_id": [1, 2], "rating": [3.0, 4.0], "timestamp": [1, 2]}
    frame[column] = values
    pl.DataFrame(frame).write_parquet(tmp_path / "log.parquet")
    with pytest.raises(DataError) as err:
        read(tmp_path / "log.parquet")
    assert err.value.field == column and "log.parquet" in str(err.value)


def test_side_table_field_of_the_wrong_type_is_a_data_error(tmp_path) -> None:
    pl.DataFrame({"item_id": [1, 2], "brand": [["a"], ["b"]]}).write_parquet(tmp_path / "items.parquet")
    spec = TableSpec(path=str(tmp_path / "items.parquet"), fields=[FieldSpec("brand")])  # categorical
    with pytest.raises(DataError, match="unsupported column type") as err:
        read_side_table(spec, None, "item_id")
    assert err.value.field == "brand"


def test_feature_table_named_by_the_spec_but_missing_is_a_data_error(tmp_path) -> None:
    data = write_synthetic(make_synthetic(n_users=30, n_items=20, n_interactions=300, seed=1), tmp_path / "d")
    (data / "users.parquet").unlink()
    with pytest.raises(DataError, match="file not found") as err:
        load_dataset(data)
    assert "users.parquet" in str(err.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("users.csv", ""),  # empty
        ("users.csv", "user_id,age\n"),  # header only
        ("users.csv", 'user_id,age\n1,"30\n'),  # garbled
        ("users.csv", "user_id;age\n1;30\n"),  # wrong delimiter: no user_id column
        ("users.parquet", "not parquet at all"),
        ("users.csv", "user_id,age\n1,caf\xe9\n"),  # Latin-1, not UTF-8
    ],
)
def test_inferred_feature_tables_that_are_empty_or_garbled_are_data_errors(tmp_path, name, content) -> None:
    log = write(tmp_path / "log.csv", "user_id,item_id,rating\n1,1,3\n1,2,4\n2,1,5\n")
    users = tmp_path / name
    users.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_files(log, users=users)
    assert name in str(err.value)


def test_damaged_parquet_interaction_file_is_a_data_error(tmp_path) -> None:
    (tmp_path / "log.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="Parquet"):
        load_files(tmp_path / "log.parquet")
    with pytest.raises(DataError, match="Parquet"):
        load_dataset(tmp_path / "log.parquet")


def test_feature_values_never_seen_in_training_map_to_the_unknown_token(tmp_path) -> None:
    log = write(
        tmp_path / "log.csv",
        "user_id,item_id,rating\n"
        + "".join(f"{u},{i},{1 + (u + i) % 5}\n" for u in range(1, 13) for i in range(1, 9)),
    )
    # users 11-12 have no feature row; item 9 appears only in the item table, with an unseen genre
    users = write(
        tmp_path / "users.csv", "user_id,job\n" + "".join(f"{u},job{u % 3}\n" for u in range(1, 11))
    )
    items = write(
        tmp_path / "items.csv",
        "item_id,genre,title\n" + "".join(f"{i},g{i % 2},T{i}\n" for i in range(1, 9)) + "9,never-seen,T9\n",
    )
    ds = load_files(log, users=users, items=items, rating_scale=(1.0, 5.0))
    rec = ColdStartRecommender(TINY | {"train": TINY["train"] | {"validation_fraction": 0.0}}).fit_dataset(ds)
    assert 9 in rec.item_ids  # a new item, scored from its (unknown) features
    space = rec.space
    unseen = space.encode_user_features([{"job": "astronaut"}])
    missing = space.encode_user_features([{}])
    assert np.array_equal(unseen.indices, missing.indices)  # both the unknown token
    genre = space.item_encoder.fields[0]
    assert genre.vocab.lookup("never-seen") == 0 and genre.vocab.lookup("g1") > 0
    assert_ranking(rec, rec.recommend({1: 5.0}, n=9, user_features={"job": "astronaut"}), 9, rated={1})


# ---- scoring through the API ------------------------------------------------------------------


def test_the_same_item_twice_the_last_rating_counts() -> None:
    rec = tiny_model()
    both = rec.predict({1: 1.0, "1": 5.0, 2: 3.0}, [4, 5, 6])  # 1 and "1" are the same item
    assert np.array_equal(both, rec.predict({2: 3.0, 1: 5.0}, [4, 5, 6]))
    items, ratings = rec._encode_requests([{1: 1.0, "1": 5.0}], "error")
    assert (items >= 0).sum() == 1 and ratings[0, 0] == 5.0


@pytest.mark.parametrize(
    "key",
    [None, 1.0, 2.5, (1, 2), frozenset([1]), b"1", True, "abc", 10**30, -7, " ", "1.0"],
)
def test_item_ids_of_any_type_are_known_or_unknown_never_a_crash(key) -> None:
    rec = tiny_model()
    with pytest.raises(UnknownItemError, match="unknown item"):
        rec.recommend({key: 4.0, 3: 5.0})
    assert rec.recommend({key: 4.0, 3: 5.0}, n=4, on_unknown="ignore") == rec.recommend({3: 5.0}, n=4)
    assert rec.title(key) is None


@pytest.mark.parametrize(
    ("rating", "words"),
    [
        (10**400, "too large"),
        (float("-inf"), "not finite"),
        (np.float32("nan"), "not finite"),
        (0.999, "outside the scale"),
        (True, "not a number"),
        (np.bool_(False), "not a number"),
        ("4", "not a number"),
        ([4.0], "not a number"),
        (3 + 0j, "not a number"),
    ],
)
def test_bad_rating_values_are_scoring_input_errors(rating, words) -> None:
    with pytest.raises(ScoringInputError, match=words):
        tiny_model().recommend({1: 5.0, 2: rating})


def test_numpy_numbers_are_accepted() -> None:
    rec = tiny_model()
    want = rec.recommend({1: 5.0, 2: 3.0}, n=4)
    assert rec.recommend({np.int64(1): np.float32(5.0), np.int32(2): np.int64(3)}, n=4) == want


def test_thousands_of_ratings_every_item_rated_returns_an_empty_list() -> None:
    rec = tiny_model()
    everything = {i: float(1 + k % 5) for k, i in enumerate(rec.item_ids)}
    assert rec.recommend(everything, n=10) == []
    noise = {10**6 + k: 3.0 for k in range(5000)}  # thousands of unknown ones too
    assert rec.recommend(everything | noise, n=10, on_unknown="ignore") == []
    two_left = dict(list(everything.items())[2:])
    top = rec.recommend(two_left, n=10)
    assert {i for i, _ in top} == set(rec.item_ids[:2])
    assert len(rec.recommend(everything, n=5, exclude_rated=False)) == 5


def test_empty_requests_are_pure_cold_start() -> None:
    rec = tiny_model()
    assert rec.recommend_batch([]) == []
    cold = rec.recommend_batch([{}, None], n=5)
    assert cold[0] == cold[1] and len(cold[0]) == 5
    assert_ranking(rec, cold[0], 5)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda r: r.recommend_batch(None), "list of rating dicts"),
        (lambda r: r.recommend_batch({1: 4.0}), "list of rating dicts"),
        (lambda r: r.recommend_batch("abc"), "list of rating dicts"),
        (lambda r: r.recommend_batch([[1, 4.0]]), "must be a dict"),
        (lambda r: r.recommend({1: 4.0}, user_features="F"), "must be a dict"),
        (lambda r: r.recommend({1: 4.0}, user_features=["gender", "F"]), "must be a dict"),
        (lambda r: r.recommend_batch([{1: 4.0}], user_features={"gender": "F"}), "one dict"),
        (lambda r: r.recommend_batch([{1: 4.0}], user_features=[None, None]), "user-feature dicts"),
        (lambda r: r.predict({1: 4.0}, 5), "list of item ids"),
        (lambda r: r.predict({1: 4.0}, "12"), "list of item ids"),
        (lambda r: r.predict({1: 4.0}, None), "list of item ids"),
        (lambda r: r.recommend({1: 4.0}, exclude_rated="no"), "True or False"),
        (lambda r: r.recommend({1: 4.0}, n=-1), "positive"),
        (lambda r: r.recommend({1: 4.0}, on_unknown="skip"), "on_unknown"),
        (lambda r: r.score_users([{1: 4.0}], what="best"), "what"),
        (lambda r: r.score_users([{1: 4.0}], steps=-2), "steps"),
        (lambda r: r.score_padded(np.array([[10**6]]), np.array([[4.0]])), "indices"),
        (lambda r: r.score_padded(np.array([[1]]), np.array([[np.nan]])), "finite"),
        (lambda r: r.score_padded(np.array([1]), np.array([4.0])), "shape"),
    ],
)
def test_wrong_types_and_params_are_scoring_input_errors(call, words) -> None:
    with pytest.raises(ScoringInputError, match=words):
        call(tiny_model())


def test_unknown_user_feature_names_are_an_error_unseen_values_are_unknown() -> None:
    rec = tiny_model()
    with pytest.raises(FeatureMismatchError, match=r"unknown user feature\(s\) \['shoe_size'\]"):
        rec.recommend({1: 4.0}, user_features={"gender": "F", "shoe_size": 42})
    unseen = rec.recommend({1: 4.0}, n=5, user_features={"gender": "X", "occupation": ["a"], "age": {"b": 1}})
    assert unseen == rec.recommend({1: 4.0}, n=5, user_features={})


@pytest.mark.parametrize(
    ("features", "words"),
    [
        ({"years": float("inf")}, "not finite"),
        ({"income": "-inf"}, "not finite"),
        ({"years": 10**400}, "too large"),
        ({"income": 1e308}, "too large to encode"),  # finite, but not once standardised
    ],
)
def test_non_finite_numeric_user_features_are_scoring_input_errors(features, words) -> None:
    with pytest.raises(ScoringInputError, match=words):
        rich_model().recommend({1: 4.0}, user_features=features)


def test_odd_user_feature_values_of_every_kind_score_as_unknown_or_missing() -> None:
    rec = rich_model()
    base = rec.predict({1: 4.0}, [2, 3, 4], user_features={})
    for odd in ({"years": float("nan")}, {"years": "old"}, {"income": [1]}, {"tags": 5}, {"tags": {"x": 1}}):
        got = rec.predict({1: 4.0}, [2, 3, 4], user_features=odd)
        assert np.allclose(got, base), odd
    assert np.isfinite(rec.predict({1: 4.0}, [2], user_features={"years": "31", "tags": "a|b"})).all()


def test_fit_refuses_frames_with_missing_ids_or_bad_ratings() -> None:
    good = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "rating": [4.0, 3.0, 5.0, 1.0]})
    for column, value, words in (
        ("user_id", None, "without user_id"),
        ("rating", float("nan"), "not finite"),
        ("rating", float("inf"), "not finite"),
        ("rating", 7.0, "off the scale"),
    ):
        frame = good.with_columns(
            pl.when(pl.int_range(pl.len()) == 2).then(value).otherwise(pl.col(column)).alias(column)
        )
        with pytest.raises(DataError, match=words) as err:
            ColdStartRecommender(TINY).fit(frame, rating_scale=(1.0, 5.0))
        assert err.value.field == column and "row 2" in str(err.value)
    with pytest.raises(DataError, match="not numbers"):
        ColdStartRecommender(TINY).fit(good.with_columns(pl.col("rating").cast(pl.String)))


# ---- scoring through the CLI: `recsys recommend --ratings file.json` ----------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"1": 5}\xff', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "cannot read"),  # nesting deeper than the parser's stack
        (b'{"1": ' + b"9" * 5000 + b"}", "cannot read"),  # an integer too long to convert
        (b"[1, 2]", "item_id and rating"),
        (b'[{"item_id": 1}]', "item_id and rating"),
        (b'"five stars"', "expected {item_id: rating}"),
        (b'{"ratings": null}', "expected {item_id: rating}"),
        (b'{"ratings": {"1": 5}, "user_features": "F"}', "user_features must be an object"),
        (b'{"1": NaN}', "not finite"),
        (b'{"1": Infinity}', "not finite"),
        (b'{"1": 1e400}', "not finite"),
        (b'{"1": "5"}', "not a number"),
        (b'{"1": [5]}', "not a number"),
        (b'{"1": true}', "not a number"),
        (b'{"1": 6}', "outside the scale"),
        (b'{"424242": 5}', "unknown item"),
        (b'{"ratings": {"1": 5}, "user_features": {"shoe_size": 42}}', "unknown user feature"),
    ],
)
def test_cli_recommend_bad_ratings_files_are_one_line_errors(tmp_path, capsys, content, words) -> None:
    path = tmp_path / "ratings.json"
    path.write_bytes(content)
    proc = cli(capsys, "recommend", "--model", str(tiny_model_dir()), "--ratings", str(path))
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("error:") and words in proc.stderr and "Traceback" not in proc.stderr


def test_cli_recommend_a_folder_or_missing_ratings_file(tmp_path, capsys) -> None:
    for path in (tmp_path, tmp_path / "nope.json"):
        proc = cli(capsys, "recommend", "--model", str(tiny_model_dir()), "--ratings", str(path))
        assert proc.returncode == 2 and proc.stderr.startswith("error:"), proc


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ({}, 20),  # empty request: pure cold start
        ({"ratings": {}, "user_features": {"gender": "never-seen"}}, 20),  # unseen value: unknown token
        ({"ratings": [{"item_id": 1, "rating": 1}, {"item_id": "1", "rating": 5}]}, 20),  # twice: last wins
        ("all", 0),  # every item rated: nothing left to recommend
    ],
)
def test_cli_recommend_edge_requests_work(tmp_path, capsys, content, expect) -> None:
    rec = tiny_model()
    if content == "all":
        content = {str(i): 3 for i in rec.item_ids}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(content))
    proc = cli(capsys, "recommend", "--model", str(tiny_model_dir()), "--ratings", str(path))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == expect and len({r["item_id"] for r in rows}) == expect
    assert {r["item_id"] for r in rows} <= set(rec.item_ids)


# ---- scoring from tables: recommend_frame, `recsys recommend-batch` and the pyfunc (REST) ---------

HOSTILE_FRAMES = [
    pl.DataFrame({"user_id": ["a"], "item_id": [[1, 2]], "rating": [3.0]}),
    pl.DataFrame({"user_id": [{"k": 1}], "item_id": ["1"], "rating": [3.0]}),
    pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [[3.0]]}),
    pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [{"r": 3.0}]}),
    pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [pd.Timestamp("2020-01-01")]}),
    pd.DataFrame({"user_id": ["a", 1], "item_id": ["1", 2], "rating": [3.0, "4"]}),  # mixed types
    pd.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [object()]}),
    pd.DataFrame([["a", "1", 3.0, 4.0]], columns=["user_id", "item_id", "rating", "rating"]),
    pd.DataFrame([["a", "1", 3.0]]),  # no column names
    {"user_id": ["a"], "item_id": ["1"], "rating": [3.0]},  # not a table
]


@pytest.mark.parametrize("frame", HOSTILE_FRAMES, ids=range(len(HOSTILE_FRAMES)))
def test_hostile_rating_tables_are_scoring_input_errors(frame) -> None:
    with pytest.raises(ScoringInputError):
        recommend_frame(tiny_model(), frame)


def test_table_edge_cases_work() -> None:
    rec = tiny_model()
    ids = [str(i) for i in rec.item_ids]
    everything = pl.DataFrame({"user_id": ["all"] * len(ids), "item_id": ids, "rating": [3.0] * len(ids)})
    out = recommend_frame(rec, everything, n=5)
    assert out.height == 0 and out.columns[:4] == ["user_id", "rank", "item_id", "score"]
    many = pl.DataFrame(
        {"user_id": ["m"] * 3000, "item_id": [ids[k % len(ids)] for k in range(3000)], "rating": [4.0] * 3000}
    )  # every item rated many times: the last rating of each counts
    assert recommend_frame(rec, many, n=5).height == 0
    unseen = pl.DataFrame({"user_id": ["u"], "item_id": ["1"], "rating": [4.0], "gender": ["never-seen"]})
    got = recommend_frame(rec, unseen, n=5)
    assert got["item_id"].to_list() == [i for i, _ in rec.recommend({1: 4.0}, n=5)]
    for kwargs in ({"batch_size": 0}, {"user_col": 3}):
        with pytest.raises(ScoringInputError):
            recommend_frame(rec, unseen, **kwargs)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("r.csv", b"user_id,item_id,rating\na,1,3\nb,2", "missing or NaN rating"),  # truncated
        ("r.csv", b"user_id,item_id,rating\na,\xff\xfe,3\n", "cannot read"),
        ("r.csv", b"", "cannot read"),
        ("r.parquet", b"PAR1 garbage", "cannot read"),
        ("r.json", b"{}", "expected a .parquet, .csv or .tsv"),
        ("r.csv", b"user_id;item_id;rating\na;1;3\n", "needs column"),
    ],
)
def test_cli_recommend_batch_bad_files_are_one_line_errors(tmp_path, capsys, name, content, words) -> None:
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out.csv"
    proc = cli(capsys, "recommend-batch", "--model", str(tiny_model_dir()), "--ratings", str(tmp_path / name),
               "--out", str(out))  # fmt: skip
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc
    assert not out.exists()


def test_cli_recommend_batch_output_that_cannot_be_written_is_an_error(tmp_path, capsys) -> None:
    pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [4.0]}).write_csv(tmp_path / "r.csv")
    (tmp_path / "taken").mkdir()
    proc = cli(capsys, "recommend-batch", "--model", str(tiny_model_dir()), "--ratings", str(tmp_path / "r.csv"),
               "--out", str(tmp_path / "taken"))  # fmt: skip
    assert proc.returncode == 2 and "cannot write" in proc.stderr, proc


def test_pyfunc_turns_every_bad_table_into_an_http_400(monkeypatch) -> None:
    """What ``mlflow models serve`` runs for ``POST /invocations`` (tests/test_serving.py drives the
    real server): each documented error becomes INVALID_PARAMETER_VALUE, which the server answers
    with HTTP 400 and the message, never a 500."""
    pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException

    from recsys.tracking.pyfunc import RecsysPyfunc

    model = RecsysPyfunc()
    model.rec = tiny_model()
    cases = [f for f in HOSTILE_FRAMES if isinstance(f, pd.DataFrame)] + [
        pd.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [float("nan")]}),
        pd.DataFrame({"user_id": ["a"], "item_id": ["424242"], "rating": [4.0]}),
        pd.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [4.0], "shoe_size": [42]}),
    ]
    for frame in cases:
        with pytest.raises(MlflowException) as err:
            model.predict(None, frame)
        assert err.value.get_http_status_code() == 400 and err.value.message
    for params in ({"n": [1]}, {"exclude_rated": "maybe"}, {"on_unknown": 1}):
        with pytest.raises(MlflowException) as err:
            model.predict(None, cases[-2].assign(item_id="1"), params)
        assert err.value.get_http_status_code() == 400
    good = model.predict(
        None, pd.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "1"], "rating": [1.0, 5.0]})
    )
    assert len(good) == 10 and 1 not in set(good["item_id"])


def test_every_error_class_is_documented() -> None:
    import recsys.errors as errors

    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert issubclass(obj, RecsysError) and obj.__doc__, name
