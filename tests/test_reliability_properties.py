"""Property-based tests (hypothesis): no input makes the readers or the scorer fail with anything but
the project's documented errors, and whatever the scorer returns is a valid ranking of known items.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recsys.data.readers import read_interactions, read_side_table
from recsys.data.spec import FieldSpec, TableSpec
from recsys.errors import (
    DataError,
    FeatureMismatchError,
    RecsysError,
    ScoringInputError,
    SpecError,
    UnknownItemError,
)
from recsys.requests import recommend_frame
from tests.test_reliability_inputs import tiny_model

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CANONICAL = ["user_id", "item_id", "rating", "timestamp"]

# ---- readers ------------------------------------------------------------------------------------

CSV_CHARS = st.sampled_from(list("0123456789,;\t|:\"' \n\r-.eE+naNifxyzé\x00\ufeff"))
HEADERS = st.sampled_from(
    [
        "user_id,item_id,rating\n",
        "user_id,item_id,rating,timestamp\n",
        "user_id,item_id\n",
        "user_id\titem_id\trating\n",
        "user_id;item_id;rating\n",
        "",
    ]
)


def _check_canonical(df: pl.DataFrame, scale: tuple[float, float]) -> None:
    assert df.columns == [c for c in CANONICAL if c in df.columns] and df.columns[:2] == CANONICAL[:2]
    for col in ("user_id", "item_id"):
        assert df[col].dtype in (pl.Int64, pl.String) and df[col].null_count() == 0
    if "rating" in df.columns:
        r = df["rating"]
        assert r.dtype == pl.Float32 and r.null_count() == 0 and r.is_finite().all()
        assert r.min() >= scale[0] and r.max() <= scale[1]
    if "timestamp" in df.columns:
        assert df["timestamp"].dtype == pl.Int64 and df["timestamp"].null_count() == 0
    assert df.select("user_id", "item_id").is_unique().all()  # de-duplicated


@SETTINGS
@given(
    header=HEADERS,
    body=st.text(CSV_CHARS, max_size=120),
    raw=st.binary(max_size=64),
    use_raw=st.booleans(),
    suffix=st.sampled_from([".csv", ".tsv", ".txt"]),
    encoding=st.sampled_from(["utf-8", "latin-1"]),
)
def test_interaction_reader_returns_the_canonical_schema_or_a_data_error(
    tmp_path_factory, header, body, raw, use_raw, suffix, encoding
) -> None:
    path = tmp_path_factory.mktemp("r") / f"log{suffix}"
    path.write_bytes(raw if use_raw else (header + body).encode("utf-8"))
    scale = (1.0, 5.0)
    try:
        df = read_interactions(TableSpec(path=str(path), encoding=encoding), None, rating_scale=scale)
    except (DataError, SpecError) as exc:
        assert str(exc)
        return
    _check_canonical(df, scale)


SIDE_FIELDS = [
    FieldSpec("genre", "multi"),
    FieldSpec("size", "numeric"),
    FieldSpec("brand"),
    FieldSpec("weight", "dense"),
]


@SETTINGS
@given(
    header=st.sampled_from(
        ["item_id,genre,size,brand,weight\n", "item_id,genre\n", "item_id;genre;size\n", ""]
    ),
    body=st.text(CSV_CHARS, max_size=120),
)
def test_side_table_reader_returns_one_column_per_field_or_a_data_error(
    tmp_path_factory, header, body
) -> None:
    path = tmp_path_factory.mktemp("s") / "items.csv"
    path.write_bytes((header + body).encode("utf-8"))
    try:
        df = read_side_table(TableSpec(path=str(path), fields=SIDE_FIELDS), None, "item_id")
    except (DataError, SpecError) as exc:
        assert str(exc)
        return
    assert df.columns == ["item_id", "genre", "size", "brand", "weight"]
    assert df["genre"].dtype == pl.List(pl.String) and df["brand"].dtype == pl.String
    assert df["size"].dtype == pl.Float64 and not df["size"].is_infinite().any()
    assert df["item_id"].is_unique().all()


PARQUET_COLUMNS = st.sampled_from(
    [
        pl.Series([1, 2, 3], dtype=pl.Int64),
        pl.Series([1, None, 3], dtype=pl.Int32),
        pl.Series([2**64 - 1, 3, 4], dtype=pl.UInt64),
        pl.Series(["a", "b", "a"]),
        pl.Series(["3", "x", " 4 "]),
        pl.Series([None, None, None], dtype=pl.Null),
        pl.Series([1.5, float("nan"), 4.0]),
        pl.Series([float("inf"), 1.0, 2.0]),
        pl.Series([[1], [2, 3], []]),
        pl.Series([{"a": 1}, {"a": 2}, None]),
        pl.Series([True, False, True]),
        pl.Series(["2020-01-01", "2020-01-02", "garbage"]),
        pl.Series([b"x", b"\xff", b"y"]),
        pl.Series([1, 2, 3], dtype=pl.Decimal(10, 2)),
        pl.Series(["a", "b", "c"], dtype=pl.Categorical),
        pl.Series([pd.Timestamp("2020-01-01"), None, pd.Timestamp("1970-01-01")]),
        pl.Series([pd.Timedelta(1), None, pd.Timedelta(3)], dtype=pl.Duration("us")),
        pl.Series([1e300, 2.0, 3.0]),
    ]
)


@SETTINGS
@given(columns=st.lists(PARQUET_COLUMNS, min_size=4, max_size=4), kind=st.sampled_from(["log", "side"]))
def test_parquet_of_any_column_types_reads_or_is_a_data_error(tmp_path_factory, columns, kind) -> None:
    names = CANONICAL if kind == "log" else ["item_id", "genre", "size", "brand"]
    path = tmp_path_factory.mktemp("p") / "t.parquet"
    pl.DataFrame({n: c.alias(n) for n, c in zip(names, columns, strict=True)}).write_parquet(path)
    try:
        if kind == "log":
            _check_canonical(
                read_interactions(TableSpec(path=str(path)), None, rating_scale=(1.0, 5.0)), (1, 5)
            )
        else:
            read_side_table(TableSpec(path=str(path), fields=SIDE_FIELDS[:3]), None, "item_id")
    except (DataError, SpecError) as exc:
        assert str(exc)


# ---- the scorer -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rec():
    return tiny_model()


def _known_ids():
    return st.sampled_from(tiny_model().item_ids)


ITEM_KEYS = st.one_of(
    _known_ids(),  # known, as integers
    _known_ids().map(str),  # known, as JSON-style strings
    st.integers(min_value=-(2**70), max_value=2**70),  # mostly unknown
    st.text(max_size=6),
    st.none(),
    st.floats(allow_nan=True),
    st.tuples(st.integers(), st.integers()),
    st.booleans(),
)
RATINGS = st.one_of(
    st.floats(min_value=1.0, max_value=5.0),  # valid
    st.integers(min_value=1, max_value=5),  # valid
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
FEATURE_VALUES = st.one_of(
    st.sampled_from(["F", "M", "occ1", "age2"]), st.text(max_size=5), st.none(), st.integers(), st.floats(),
    st.lists(st.text(max_size=3), max_size=2),
)  # fmt: skip
USER_FEATURES = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["gender", "age", "occupation"]), FEATURE_VALUES, max_size=3),
    st.dictionaries(st.sampled_from(["gender", "shoe_size", ""]), FEATURE_VALUES, min_size=1, max_size=2),
    st.text(max_size=3),
    st.lists(st.none(), max_size=2),
    st.integers(),
)


def _is_valid_rating(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        x = float(v)
    except OverflowError:
        return False
    return math.isfinite(x) and 1.0 <= x <= 5.0


@SETTINGS
@given(
    ratings=st.dictionaries(ITEM_KEYS, RATINGS, max_size=25),
    n=st.integers(min_value=1, max_value=100),
    exclude_rated=st.booleans(),
    on_unknown=st.sampled_from(["error", "ignore"]),
    features=USER_FEATURES,
)
def test_scorer_returns_a_valid_ranking_or_a_documented_error(
    rec, ratings, n, exclude_rated, on_unknown, features
) -> None:
    catalogue = rec.item_ids
    keys = list(ratings)
    idx = rec._lookup(keys)  # which keys name catalogue items (1 and "1" name the same one)
    known = {catalogue[i] for i in idx if i >= 0}
    n_unknown = int((idx < 0).sum())
    assert all(
        i < 0 for k, i in zip(keys, idx, strict=True) if not isinstance(k, (int, str)) or isinstance(k, bool)
    )
    features_ok = features is None or (
        isinstance(features, dict) and set(features) <= {"gender", "age", "occupation"}
    )
    should_work = (
        all(_is_valid_rating(v) for v in ratings.values())
        and (on_unknown == "ignore" or n_unknown == 0)
        and features_ok
    )
    try:
        top = rec.recommend(
            ratings, n=n, user_features=features, exclude_rated=exclude_rated, on_unknown=on_unknown
        )
    except (ScoringInputError, UnknownItemError, FeatureMismatchError) as exc:
        assert str(exc) and not should_work, f"valid request refused: {exc}"
        return
    assert should_work, "an invalid request was accepted"
    ids = [i for i, _ in top]
    scores = [s for _, s in top]
    assert len(set(ids)) == len(ids) and set(ids) <= set(catalogue)
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True)
    if exclude_rated:
        assert not set(ids) & known
        assert len(ids) == min(n, len(catalogue) - len(known))
    else:
        assert len(ids) == min(n, len(catalogue))


CELL_ITEMS = st.one_of(
    _known_ids(), _known_ids().map(str), st.integers(), st.text(max_size=4), st.none(), st.floats()
)
CELL_RATINGS = st.one_of(
    st.floats(min_value=1.0, max_value=5.0), st.floats(), st.none(), st.text(max_size=3), st.integers(-3, 9)
)  # fmt: skip


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]), CELL_ITEMS, CELL_RATINGS, st.sampled_from([None, "F", "M", "X"])
        ),
        min_size=0,
        max_size=20,
    ),
    n=st.integers(min_value=1, max_value=70),
    library=st.sampled_from(["pandas", "polars"]),
    exclude_rated=st.booleans(),
)
def test_batch_scoring_returns_valid_rankings_or_a_documented_error(
    rec, rows, n, library, exclude_rated
) -> None:
    """``recommend_frame`` is what ``recsys recommend-batch`` and the REST endpoint (the pyfunc) run:
    a documented error there is an HTTP 400, anything else would be a 500."""
    columns = ["user_id", "item_id", "rating", "gender"]
    if library == "pandas":
        frame = pd.DataFrame(rows, columns=columns, dtype=object)
    else:
        try:
            frame = pl.DataFrame(rows, schema=columns, orient="row", strict=False)
        except Exception:  # polars itself cannot build this mixed-type frame; not our input
            assume(False)
    try:
        out = recommend_frame(rec, frame, n=n, exclude_rated=exclude_rated)
    except RecsysError as exc:
        assert str(exc)
        return
    catalogue = set(rec.item_ids)
    for user, part in out.group_by("user_id"):
        part = part.sort("rank")
        ids = part["item_id"].to_list()
        assert part["rank"].to_list() == list(range(1, len(ids) + 1)) and len(ids) <= n
        assert len(set(ids)) == len(ids) and set(ids) <= catalogue
        scores = part["score"].to_numpy()
        assert np.isfinite(scores).all() and (np.diff(scores) <= 0).all()
        if exclude_rated:
            rated = {r[1] for r in rows if r[0] == user[0] and r[1] is not None}
            assert not {i for i in ids if i in rated or str(i) in {str(x) for x in rated}}


def test_properties_use_the_documented_errors_only() -> None:
    for cls in (DataError, SpecError, ScoringInputError, UnknownItemError, FeatureMismatchError):
        assert issubclass(cls, RecsysError)
    assert Path(__file__).name.startswith("test_reliability_")
