"""Batch scoring from a ratings table: same answers as ``recommend_batch``, clear errors, the CLI."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data.synthetic import make_synthetic
from recsys.errors import FeatureMismatchError, ScoringInputError, UnknownItemError
from recsys.recommender import ColdStartRecommender
from recsys.requests import encode_frame, recommend_frame
from tests.mlflow_servers import cli

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8]},
    "train": {"epochs": 1, "meta_batch_size": 16, "num_threads": 1},
}


@pytest.fixture(scope="module")
def rec() -> ColdStartRecommender:
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3)
    return ColdStartRecommender(TINY).fit_dataset(ds)


def table(requests: list[dict], features: list[dict | None], ids=str) -> pl.DataFrame:
    """A ratings table for rating dicts; a user without ratings gets a null item / rating row."""
    rows = []
    for u, (ratings, feats) in enumerate(zip(requests, features, strict=True)):
        base = {"user_id": f"user-{u}", **(feats or {})}
        if not ratings:
            rows.append({**base, "item_id": None, "rating": None})
        for j, (item, r) in enumerate(ratings.items()):
            rows.append(
                {**(base if j == 0 else {"user_id": base["user_id"]}), "item_id": ids(item), "rating": r}
            )
    return pl.DataFrame(rows)


def test_frame_matches_recommend_batch(rec) -> None:
    requests = [{1: 5.0, 2: 3.0}, {}, {5: 1.0, 7: 4.0, 9: 2.0, 11: 5.0}, {3: 4.0}]
    features = [{"gender": "F"}, {"age": "age1", "occupation": "occ2"}, None, {"gender": "M"}]
    for ids in (str, int):
        out = recommend_frame(rec, table(requests, features, ids), n=6)
        expected = rec.recommend_batch(requests, 6, features)
        assert out.columns == ["user_id", "rank", "item_id", "score", "predicted_rating", "title"]
        for u, want in enumerate(expected):
            got = out.filter(pl.col("user_id") == f"user-{u}").sort("rank")
            assert got["rank"].to_list() == list(range(1, 7))
            assert got["item_id"].to_list() == [i for i, _ in want]
            np.testing.assert_allclose(got["score"].to_numpy(), [s for _, s in want], rtol=0, atol=1e-5)
            assert got["title"].to_list() == [rec.title(i) for i, _ in want]
            assert set(got["item_id"].to_list()).isdisjoint(requests[u])  # rated items excluded


def test_frame_batches_pandas_and_include_rated(rec) -> None:
    requests = [{i: float(1 + i % 5), i + 1: 3.0} for i in range(1, 40)]
    frame = table(requests, [None] * len(requests))
    small = recommend_frame(rec, frame.to_pandas(), n=3, batch_size=7)  # pandas in, 6 batches
    full = recommend_frame(rec, frame, n=3)
    # batching changes float summation order only: same ranking, scores equal to float precision
    assert small.drop("score", "predicted_rating").equals(full.drop("score", "predicted_rating"))
    for column in ("score", "predicted_rating"):
        assert np.allclose(small[column].to_numpy(), full[column].to_numpy(), rtol=1e-5, atol=1e-5)
    with_rated = recommend_frame(rec, frame, n=3, exclude_rated=False)
    want = rec.recommend_batch(requests, 3, exclude_rated=False)
    assert with_rated["item_id"].to_list() == [i for row in want for i, _ in row]


def test_large_catalogue_scores_fewer_users_at_a_time_with_the_same_answers(rec, monkeypatch) -> None:
    """On a catalogue above ``SCORE_CHUNK_VALUES / batch_size`` items the scoring batches shrink (16 users
    at a time over 1M items) to bound memory; the recommendations stay the same."""
    from recsys.meta import scoring

    requests = [{i: float(1 + i % 5), i + 2: 4.0} for i in range(1, 30)]
    full = rec.recommend_batch(requests, 5)
    monkeypatch.setattr(scoring, "SCORE_CHUNK_VALUES", 3 * rec.space.n_items)  # 3 users a batch
    small = rec.recommend_batch(requests, 5)
    assert [[i for i, _ in row] for row in small] == [[i for i, _ in row] for row in full]
    np.testing.assert_allclose(
        [[s for _, s in r] for r in small], [[s for _, s in r] for r in full], atol=1e-5
    )


def test_last_rating_of_a_repeated_item_counts(rec) -> None:
    frame = pl.DataFrame({"user_id": ["a", "a", "a"], "item_id": ["1", "2", "1"], "rating": [1.0, 4.0, 5.0]})
    enc = encode_frame(rec, frame)
    idx = rec.space.items.lookup([1, 2])
    row = dict(zip(enc.items[0].tolist(), enc.ratings[0].tolist(), strict=True))
    assert row == {int(idx[0]): 5.0, int(idx[1]): 4.0}


@pytest.mark.parametrize(
    ("frame", "error", "words"),
    [
        (pl.DataFrame({"user_id": [], "item_id": [], "rating": []}), ScoringInputError, "empty"),
        (pl.DataFrame({"user_id": ["a"], "item_id": ["1"]}), ScoringInputError, "rating"),
        (
            pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [float("nan")]}),
            ScoringInputError,
            "NaN",
        ),
        (
            pl.DataFrame(
                {"user_id": ["a"], "item_id": ["1"], "rating": [None]},
                schema_overrides={"rating": pl.Float64},
            ),
            ScoringInputError,
            "missing",
        ),
        (
            pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [float("inf")]}),
            ScoringInputError,
            "infinite",
        ),
        (
            pl.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "2"], "rating": [3.0, 9.0]}),
            ScoringInputError,
            "row 1, user 'b', item '2'",
        ),
        (
            pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": ["five"]}),
            ScoringInputError,
            "not a number",
        ),
        (
            pl.DataFrame({"user_id": [None], "item_id": ["1"], "rating": [3.0]}),
            ScoringInputError,
            "no user_id",
        ),
        (pl.DataFrame({"user_id": ["a"], "item_id": [None], "rating": [3.0]}), ScoringInputError, "no item"),
        (
            pl.DataFrame({"user_id": ["a"], "item_id": ["987654"], "rating": [3.0]}),
            UnknownItemError,
            "'987654'",
        ),
        (
            pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [3.0], "shoe": ["x"]}),
            FeatureMismatchError,
            "shoe",
        ),
    ],
)
def test_bad_tables_are_clear_errors(rec, frame, error, words) -> None:
    with pytest.raises(error, match=None) as info:
        recommend_frame(rec, frame)
    assert words in str(info.value)


def test_bad_params_are_clear_errors(rec) -> None:
    frame = pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [3.0]})
    for kwargs in ({"n": 0}, {"n": "3"}, {"exclude_rated": "no"}, {"on_unknown": "skip"}):
        with pytest.raises(ScoringInputError):
            recommend_frame(rec, frame, **kwargs)


def test_unknown_items_can_be_ignored(rec) -> None:
    frame = pl.DataFrame({"user_id": ["a", "a"], "item_id": ["987654", "1"], "rating": [3.0, 5.0]})
    out = recommend_frame(rec, frame, n=4, on_unknown="ignore")
    want = rec.recommend({1: 5.0}, n=4)
    assert out["item_id"].to_list() == [i for i, _ in want]


def test_cli_recommend_batch(rec, tmp_path, capsys) -> None:
    model = rec.save(tmp_path / "model")
    requests = [{1: 5.0, 2: 2.0}, {4: 3.0}, {}]
    table(requests, [None, {"gender": "F"}, None]).write_parquet(tmp_path / "new_users.parquet")
    out = tmp_path / "recs.parquet"
    proc = cli(
        capsys,
        "recommend-batch", "--model", str(model), "--ratings", str(tmp_path / "new_users.parquet"),
        "--out", str(out), "-n", "5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "15 recommendations for 3 users" in proc.stdout
    got = pl.read_parquet(out)
    want = rec.recommend_batch(requests, 5, [None, {"gender": "F"}, None])
    assert got["item_id"].to_list() == [i for row in want for i, _ in row]
    assert got.columns == ["user_id", "rank", "item_id", "score", "predicted_rating", "title"]
    # CSV in: a clear one-line error for an unknown item, no output written
    table([{987654: 4.0}], [None]).write_csv(tmp_path / "bad.csv")
    bad = cli(
        capsys,
        "recommend-batch", "--model", str(model), "--ratings", str(tmp_path / "bad.csv"),
        "--out", str(tmp_path / "o.csv"),
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown item" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "o.csv").exists()
