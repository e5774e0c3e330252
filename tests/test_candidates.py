"""Issue 19, points 2 and 6: candidate control (``items=``, ``exclude=``, ``where=``, availability)
applied before top-N at every entry point (API, recommend_frame, CLI, pyfunc, REST), and the output
rows (rank, item_id, score, predicted_rating, title only when the catalogue has titles)."""

from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from recsys import ColdStartRecommender
from recsys.candidates import candidate_mask, parse_where
from recsys.data.spec import FieldSpec
from recsys.data.synthetic import make_synthetic
from recsys.errors import ScoringInputError, UnknownItemError
from tests.mlflow_servers import cli
from tests.test_ids_and_rest import _apps, _mlflow_model, _predict_400, _pyfunc, post, rows
from tests.test_reliability_inputs import TINY, tiny_model, tiny_model_dir

RATINGS = {1: 5.0, 2: 4.0, 9: 1.0}


@functools.cache
def genres() -> dict[int, set[str]]:
    """Item id -> genres of the synthetic items ``tiny_model`` was trained on (same seed)."""
    items = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3).items
    return {
        i: set(g or []) for i, g in zip(items["item_id"].to_list(), items["genre"].to_list(), strict=True)
    }


@functools.cache
def categories() -> dict[int, str]:
    items = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3).items
    return dict(zip(items["item_id"].to_list(), items["category"].to_list(), strict=True))


@functools.cache
def untitled_rating_model() -> ColdStartRecommender:
    """A rating-only head (``melu``) on a catalogue without titles."""
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=4)
    rec = ColdStartRecommender(TINY | {"model": TINY["model"] | {"head": "melu"}})
    return rec.fit(
        ds.interactions,
        ds.users,
        ds.items,
        item_fields=[FieldSpec("genre", "multi")],
        rating_scale=(1.0, 5.0),
    )


def full_ranking(rec: ColdStartRecommender, ratings: dict = RATINGS) -> list:
    """Every unrated item, best first (no candidate restriction)."""
    return [i for i, _ in rec.recommend(ratings, n=rec.space.n_items)]


# ---- the API ------------------------------------------------------------------------------------
def test_allow_list_returns_exactly_n_items_all_from_it_in_the_unrestricted_order() -> None:
    rec = tiny_model()
    allowed = [*rec.item_ids[::3], *RATINGS]  # 20 items, some of them rated
    got = rec.recommend(RATINGS, n=8, items=allowed)
    assert len(got) == 8
    want = [i for i in full_ranking(rec) if i in set(allowed)][:8]
    assert [i for i, _ in got] == want  # filtered before top-N, never top-N then filtered


def test_deny_list_returns_exactly_n_items_none_of_them_denied() -> None:
    rec = tiny_model()
    top10 = full_ranking(rec)[:10]
    got = [i for i, _ in rec.recommend(RATINGS, n=10, exclude=top10)]
    assert len(got) == 10 and not set(got) & set(top10)
    assert got == [i for i in full_ranking(rec) if i not in set(top10)][:10]


def test_where_on_a_multi_valued_genre_field_returns_exactly_n_items_with_any_of_the_values() -> None:
    rec = tiny_model()
    wanted = {"g1", "g2"}
    matching = [i for i in full_ranking(rec) if genres()[i] & wanted]
    assert len(matching) > 10  # enough to fill the list
    got = [i for i, _ in rec.recommend(RATINGS, n=10, where={"genre": sorted(wanted)})]
    assert got == matching[:10]
    assert [i for i, _ in rec.recommend(RATINGS, n=5, where={"genre": "g1"})] == [
        i for i in full_ranking(rec) if "g1" in genres()[i]
    ][:5]


def test_where_fields_combine_with_and() -> None:
    rec = tiny_model()
    category = categories()[full_ranking(rec)[0]]
    got = [i for i, _ in rec.recommend(RATINGS, n=60, where={"genre": ["g1", "g3"], "category": category})]
    want = [i for i in full_ranking(rec) if genres()[i] & {"g1", "g3"} and categories()[i] == category]
    assert got == want and 0 < len(got) < 60


def test_allow_deny_and_where_combined_return_what_exists_when_fewer_than_n_are_allowed() -> None:
    rec = tiny_model()
    allowed = rec.item_ids[:30]
    denied = rec.item_ids[:5]
    got = [i for i, _ in rec.recommend(RATINGS, n=50, items=allowed, exclude=denied, where={"genre": "g1"})]
    want = [i for i in full_ranking(rec) if i in allowed[5:] and "g1" in genres()[i]]
    assert got == want and 0 < len(got) < 50
    assert rec.recommend(RATINGS, n=5, items=list(RATINGS)) == []  # only rated items allowed: nothing left
    assert rec.recommend(RATINGS, n=5, items=[]) == []  # an empty allow-list allows nothing


def test_unavailable_items_are_never_recommended_by_any_entry_point() -> None:
    rec = copy.copy(tiny_model())  # the shared model stays untouched
    top = full_ranking(rec)[:12]
    available = np.ones(rec.space.n_items, dtype=bool)
    available[rec._lookup(top)] = False
    rec._available = available
    got = [i for i, _ in rec.recommend(RATINGS, n=10)]
    assert len(got) == 10 and not set(got) & set(top)
    assert got == full_ranking(tiny_model())[12:22]
    for row in rec.recommend_batch([RATINGS, {}], n=10, items=top[:3] + got[:2]):
        assert not {i for i, _ in row} & set(top)
    frame = rec.recommend_frame(
        pl.DataFrame({"user_id": ["a", "b"], "item_id": [1, None], "rating": [5.0, None]}), n=15
    )
    assert frame.height == 30 and not set(frame["item_id"].to_list()) & set(top)
    assert candidate_mask(tiny_model()) is None  # nothing restricts a plain request


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ({"genrex": "g1"}, ["unknown item field 'genrex'", "category, genre"]),
        ({"genre": "G1"}, ["unknown value(s) 'G1'", "valid values include", "did you mean 'g1'"]),
        ({"genre": ["g1", "zzz"]}, ["unknown value(s) 'zzz'", "12 in all"]),
        ({"__item_id": "1"}, ["unknown item field"]),
        ({"genre": []}, ["no values given"]),
        ({"genre": [True]}, ["must be text"]),
        ("genre=g1", ["must be a mapping"]),
    ],
)
def test_a_bad_where_field_or_value_is_one_clear_scoring_input_error(where, words) -> None:
    rec = tiny_model()
    for call in (
        lambda: rec.recommend(RATINGS, where=where),
        lambda: rec.recommend_frame(
            pd.DataFrame({"user_id": ["a"], "item_id": [1], "rating": [5.0]}), where=where
        ),
    ):
        with pytest.raises(ScoringInputError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and all(w in message for w in words), message


def test_where_on_a_numeric_item_field_is_refused_naming_its_kind_and_the_fields_to_filter_on() -> None:
    from recsys.candidates import where_mask
    from recsys.features.space import FeatureSpace

    log = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 2], "rating": [4.0, 3.0, 5.0]})
    items = pl.DataFrame({"item_id": [1, 2], "year": [1990.0, 2000.0], "genre": [["a"], ["a", "b"]]})
    fields = [FieldSpec("year", "numeric", buckets=2), FieldSpec("genre", "multi")]
    space = FeatureSpace.fit(log, items=items, item_fields=fields)
    with pytest.raises(ScoringInputError, match=r"item field 'year' is numeric; fields to filter on: genre$"):
        where_mask(space, {"year": "1990"})
    assert where_mask(space, {"genre": "b"}).tolist() == [False, True]
    assert where_mask(space, {"genre": ["a", "b"]}).tolist() == [True, True]


def test_unknown_ids_in_items_or_exclude_are_an_error_by_default_and_skipped_with_ignore() -> None:
    rec = tiny_model()
    for arg in ("items", "exclude"):
        with pytest.raises(UnknownItemError, match=rf"{arg}: 1 unknown item id\(s\): 424242"):
            rec.recommend(RATINGS, n=5, **{arg: [3, 424242]})
    assert [i for i, _ in rec.recommend(RATINGS, n=5, items=[3, 424242], on_unknown="ignore")] == [3]
    kept = rec.recommend(RATINGS, n=5, exclude=["424242"], on_unknown="ignore")
    assert kept == rec.recommend(RATINGS, n=5)
    with pytest.raises(ScoringInputError, match="items must be a list"):
        rec.recommend(RATINGS, items="3")


def test_where_text_is_a_json_object_or_field_equals_values_terms() -> None:
    assert parse_where('{"genre": ["g1"]}') == {"genre": ["g1"]}
    assert parse_where("genre=g1, g2; category=c1;genre=g3") == {
        "genre": ["g1", "g2", "g3"],
        "category": ["c1"],
    }
    assert parse_where("") is None and parse_where(None) is None
    for bad in ("genre", "=g1", "genre=", "{not json", "[1]"):
        with pytest.raises(ScoringInputError):
            parse_where(bad)


# ---- output rows --------------------------------------------------------------------------------
def test_output_rows_have_rank_item_id_score_predicted_rating_and_title() -> None:
    rec = tiny_model()  # hybrid head: ranks by its ranking score, still predicts ratings
    got = rec.recommend_rows(RATINGS, n=6, where={"genre": "g2"})
    want = rec.recommend(RATINGS, n=6, where={"genre": "g2"})
    assert [list(r) for r in got] == [["rank", "item_id", "score", "predicted_rating", "title"]] * 6
    assert [r["rank"] for r in got] == list(range(1, 7))
    assert [(r["item_id"], r["score"]) for r in got] == want
    np.testing.assert_allclose(
        [r["predicted_rating"] for r in got], rec.predict(RATINGS, [r["item_id"] for r in got]), atol=1e-5
    )
    assert [r["title"] for r in got] == [rec.title(r["item_id"]) for r in got]
    frame = rec.recommend_frame(pl.DataFrame({"user_id": ["a"] * 3, "item_id": [1, 2, 9], "rating": [5.0, 4.0, 1.0]}), n=6, where={"genre": "g2"})  # fmt: skip
    assert frame.columns == ["user_id", "rank", "item_id", "score", "predicted_rating", "title"]
    np.testing.assert_allclose(
        frame["predicted_rating"].to_numpy(), [r["predicted_rating"] for r in got], atol=1e-5
    )


def test_a_rating_only_head_without_titles_has_predicted_rating_equal_to_score_and_no_title_key() -> None:
    rec = untitled_rating_model()
    got = rec.recommend_rows(RATINGS, n=5)
    assert [set(r) for r in got] == [{"rank", "item_id", "score", "predicted_rating"}] * 5
    assert all(r["predicted_rating"] == r["score"] for r in got)
    frame = rec.recommend_frame(pl.DataFrame({"user_id": ["a"], "item_id": [1], "rating": [5.0]}), n=5)
    assert frame.columns == ["user_id", "rank", "item_id", "score", "predicted_rating"]
    assert [r["item_id"] for r in rec.recommend_rows({}, n=4, where={"genre": "g0"})] == [
        i for i, _ in rec.recommend({}, n=4, where={"genre": "g0"})
    ]


def test_recommend_ranks_without_computing_the_catalogues_ratings_and_matches_the_rows(monkeypatch) -> None:
    """``recommend`` returns (item, score) only: the hybrid head's rating pass over the catalogue is
    skipped (it cost a third of a request at 62k items), with the same items and scores as the rows,
    which do compute the predicted ratings; a rating-only head still ranks by its predicted ratings."""
    rec = tiny_model()
    want = [(r["item_id"], r["score"]) for r in rec.recommend_rows(RATINGS, n=8)]
    calls: list[str] = []
    real = rec.learner.score

    def score(fast, user_vec, side, what):
        calls.append(what)
        return real(fast, user_vec, side, what)

    monkeypatch.setattr(rec.learner, "score", score)
    assert rec.recommend(RATINGS, n=8) == want
    assert calls == ["rank"]
    calls.clear()
    rec.recommend_rows(RATINGS, n=8)
    assert sorted(calls) == ["predict", "rank"]
    rating_only = untitled_rating_model()
    assert rating_only.recommend(RATINGS, n=5) == [
        (r["item_id"], r["score"]) for r in rating_only.recommend_rows(RATINGS, n=5)
    ]


# ---- CLI ----------------------------------------------------------------------------------------
def test_cli_recommend_items_exclude_and_where_flags(capsys, tmp_path) -> None:
    rec = tiny_model()
    ratings = tmp_path / "me.json"
    ratings.write_text(json.dumps({str(k): v for k, v in RATINGS.items()}))
    allowed = tmp_path / "allowed.txt"
    allowed.write_text("\n".join(str(i) for i in rec.item_ids[:40]) + "\n\n")
    denied = tmp_path / "denied.json"
    denied.write_text(json.dumps(rec.item_ids[:4]))
    proc = cli(
        capsys, "recommend", "--model", str(tiny_model_dir()), "--ratings", str(ratings), "-n", "4",
        "--items", str(allowed), "--exclude", str(denied), "--where", "genre=g1,g2", "--where", "category=" + categories()[5],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = rec.recommend(
        RATINGS, n=4, items=rec.item_ids[:40], exclude=rec.item_ids[:4],
        where={"genre": ["g1", "g2"], "category": categories()[5]},
    )  # fmt: skip
    assert [r["item_id"] for r in got] == [i for i, _ in want] and got
    assert [r["rank"] for r in got] == list(range(1, len(got) + 1))
    assert set(got[0]) == {"rank", "item_id", "score", "predicted_rating", "title"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--where", "genre"], "--where expects FIELD=VALUE"),
        (["--where", "nope=1"], "unknown item field 'nope'"),
        (["--where", "genre=zzz"], "valid values include"),
        (["--items", "EMPTY"], "lists no item ids"),
        (["--items", "MISSING"], "not found"),
        (["--exclude", "UNKNOWN"], "--ignore-unknown"),
    ],
)
def test_cli_bad_candidate_flags_exit_2_with_one_line(capsys, tmp_path, args, words) -> None:
    ratings = tmp_path / "me.json"
    ratings.write_text('{"1": 5}')
    files = {"EMPTY": "\n", "UNKNOWN": "424242\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    args = [str(tmp_path / a) if a in (*files, "MISSING") else a for a in args]
    proc = cli(capsys, "recommend", "--model", str(tiny_model_dir()), "--ratings", str(ratings), *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], proc.stderr


def test_cli_recommend_batch_applies_the_candidate_flags(capsys, tmp_path) -> None:
    table = tmp_path / "new.csv"
    pl.DataFrame(
        {"user_id": ["a", "a", "b"], "item_id": ["1", "2", "3"], "rating": [5.0, 4.0, 2.0]}
    ).write_csv(table)
    out = tmp_path / "recs.csv"
    proc = cli(
        capsys, "recommend-batch", "--model", str(tiny_model_dir()), "--ratings", str(table), "--out", str(out),
        "-n", "5", "--where", "genre=g4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = pl.read_csv(out)
    assert got.height == 10 and all("g4" in genres()[i] for i in got["item_id"].to_list())
    assert got.columns == ["user_id", "rank", "item_id", "score", "predicted_rating", "title"]
    bad = cli(
        capsys, "recommend-batch", "--model", str(tiny_model_dir()), "--ratings", str(table), "--out",
        str(tmp_path / "o.csv"), "--where", "genre=",
    )  # fmt: skip
    assert bad.returncode == 2 and "--where expects" in bad.stderr and not (tmp_path / "o.csv").exists()


# ---- pyfunc and REST ----------------------------------------------------------------------------
def test_pyfunc_params_items_exclude_and_where_narrow_the_candidates() -> None:
    rec = tiny_model()
    frame = pd.DataFrame({"user_id": ["a"] * 3, "item_id": ["1", "2", "9"], "rating": [5.0, 4.0, 1.0]})
    allowed = [str(i) for i in rec.item_ids[:40]]
    params = {"n": 4, "items": allowed, "exclude": allowed[:4], "where": "genre=g1,g2"}
    want = rec.recommend(
        RATINGS, n=4, items=rec.item_ids[:40], exclude=rec.item_ids[:4], where={"genre": ["g1", "g2"]}
    )
    # in process, and as `mlflow models serve` loads it (params checked against the signature)
    for out in (_pyfunc().predict(None, frame, params), _mlflow_model().predict(frame, params=params)):
        assert out["item_id"].tolist() == [i for i, _ in want] and len(want) == 4
    as_json = _mlflow_model().predict(frame, params={"n": 4, "where": '{"genre": ["g1", "g2"]}'})
    assert as_json["item_id"].tolist() == [
        i for i, _ in rec.recommend(RATINGS, n=4, where={"genre": ["g1", "g2"]})
    ]
    default = _mlflow_model().predict(frame, params={"n": 4})  # the defaults ([] and "") restrict nothing
    assert default["item_id"].tolist() == [i for i, _ in rec.recommend(RATINGS, n=4)]


def test_pyfunc_bad_candidate_params_are_an_http_400() -> None:
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [5.0]})
    assert "unknown item field 'nope'" in _predict_400(frame, {"where": "nope=1"})
    assert "unknown value(s) 'zzz'" in _predict_400(frame, {"where": {"genre": "zzz"}})
    assert "not a valid JSON object" in _predict_400(frame, {"where": "{bad"})
    assert "items: 1 unknown item id(s)" in _predict_400(frame, {"items": ["424242"]})


def test_rest_where_param_narrows_the_candidates_and_a_bad_value_is_a_400() -> None:
    guarded = _apps()[1]
    status, answer = post(
        guarded, rows(["a", "1", 5.0], params={"n": 3, "where": "genre=g5", "exclude": ["2"]})
    )
    assert status == 200, answer
    got = [p["item_id"] for p in answer["predictions"]]
    assert len(got) == 3 and all("g5" in genres()[int(i)] for i in got) and 2 not in got
    assert set(answer["predictions"][0]) == {
        "user_id",
        "rank",
        "item_id",
        "score",
        "predicted_rating",
        "title",
    }
    status, answer = post(guarded, rows(["a", "1", 5.0], params={"where": "genre=nope"}))
    assert status == 400 and "unknown value(s) 'nope'" in answer["message"], answer
