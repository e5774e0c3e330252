"""Users the model was trained on: the record kept with the model, ``recommend_user`` /
``recommend_users`` by id, its file, the opt-out, the CLI (``recommend --user``, ``recommend-batch
--users``) and the pyfunc's ``known_users`` param."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from recsys import ColdStartRecommender
from recsys.data.ids import IdIndex
from recsys.data.synthetic import make_synthetic
from recsys.errors import ModelFileError, RecsysError, UnknownItemError, UnknownUserError
from recsys.known_users import USER_LOG_FILE, KnownUsers
from recsys.utils.io import sha256_file
from tests.mlflow_servers import cli
from tests.test_reliability_inputs import TINY, tiny_model, tiny_model_dir


def logged_ratings(user_id: int, max_ratings: int | None = None) -> dict:
    """A training user's ratings written by hand from the training log: in time order."""
    log = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3).interactions  # tiny_model's
    rows = log.filter(pl.col("user_id") == user_id).sort("timestamp")
    ratings = dict(zip(rows["item_id"].to_list(), rows["rating"].to_list(), strict=True))
    return dict(list(ratings.items())[-max_ratings:]) if max_ratings else ratings


@functools.cache
def some_users() -> list[int]:
    return tiny_model().user_log.log.user_ids.to_list()[::29][:4]


def test_the_record_holds_every_user_of_the_log_in_time_order() -> None:
    rec = tiny_model()
    log = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3).interactions
    assert rec.user_log.n_users == log["user_id"].n_unique()  # validation users included
    assert rec.user_log.n_interactions == log.height
    for user in some_users():
        items = rec.user_log.log.items[rec.user_log.log.indptr[rec.user_log.rows_of([user])[0]] :][:3]
        assert rec.space.items.ids.gather(items).to_list() == list(logged_ratings(user))[:3]


def test_recommend_user_equals_recommend_with_the_users_ratings_passed_by_hand() -> None:
    rec = tiny_model()
    for user in some_users():
        assert rec.recommend_user(user, n=8) == rec.recommend(logged_ratings(user), n=8)
        features = {"gender": "F"}
        assert rec.recommend_user(
            str(user), n=5, exclude_rated=False, user_features=features
        ) == rec.recommend(logged_ratings(user), n=5, exclude_rated=False, user_features=features)


def test_recommend_users_scores_many_in_one_pass_equal_to_recommend_batch() -> None:
    rec = tiny_model()
    users = some_users()
    assert rec.recommend_users(users, n=6) == rec.recommend_batch([logged_ratings(u) for u in users], n=6)
    assert rec.recommend_users([], n=6) == []
    cand = {"items": rec.item_ids[:30], "exclude": rec.item_ids[:5]}  # the candidates of recommend
    expected = rec.recommend_batch([logged_ratings(u) for u in users], n=6, **cand)
    assert rec.recommend_users(users, n=6, **cand) == expected
    assert all(i in rec.item_ids[5:30] for top in expected for i, _ in top)


def test_unknown_user_is_an_error_naming_it() -> None:
    rec = tiny_model()
    with pytest.raises(UnknownUserError, match=r"unknown user id\(s\) 99999") as err:
        rec.recommend_user(99999)
    assert isinstance(err.value, RecsysError) and "on_unknown='cold'" in str(err.value)
    with pytest.raises(UnknownUserError, match="'nobody'"):
        rec.recommend_users([some_users()[0], "nobody"])


def test_unknown_user_with_on_unknown_cold_is_pure_cold_start() -> None:
    rec = tiny_model()
    assert rec.recommend_user(99999, n=5, on_unknown="cold") == rec.recommend({}, n=5)
    batch = rec.recommend_users([some_users()[0], 99999], n=5, on_unknown="cold")
    assert batch == rec.recommend_batch([logged_ratings(some_users()[0]), {}], n=5)  # the same padding
    with pytest.raises(RecsysError, match="on_unknown"):
        rec.recommend_user(99999, on_unknown="ignore")


def test_history_adds_fresher_ratings_and_the_later_rating_of_an_item_wins() -> None:
    rec = tiny_model()
    user = some_users()[1]
    logged = logged_ratings(user)
    rerated, new = next(iter(logged)), next(i for i in rec.item_ids if i not in logged)
    expected = {k: v for k, v in logged.items() if k != rerated} | {rerated: 1.0, new: 5.0}
    by_hand = rec.recommend(expected, n=7)
    assert rec.recommend_user(user, n=7, history={rerated: 1.0, new: 5.0}) == by_hand
    table = pd.DataFrame(
        {
            "user_id": [user, user, some_users()[2]],  # another user's row is ignored
            "item_id": [new, rerated, new],
            "rating": [5.0, 1.0, 2.0],
            "timestamp": [20, 10, 5],  # taken in time order: the re-rating first
        }
    )
    assert rec.recommend_user(user, n=7, history=table) == by_hand
    got = rec.recommend_users([user, some_users()[2]], n=7, history=pl.from_pandas(table))
    other = {k: v for k, v in logged_ratings(some_users()[2]).items() if k != new} | {new: 2.0}
    assert got == rec.recommend_batch([expected, other], n=7)  # the same padding as the batch
    with pytest.raises(UnknownItemError):
        rec.recommend_user(user, history={"no-such-item": 4.0})
    assert rec.recommend_user(user, n=7, history={"no-such-item": 4.0}, on_unknown_item="ignore") == (
        rec.recommend(logged, n=7)
    )


def test_max_ratings_keeps_the_most_recent_interactions() -> None:
    rec = tiny_model()
    user = some_users()[0]
    assert len(logged_ratings(user)) > 3
    assert rec.recommend_user(user, n=5, max_ratings=3) == rec.recommend(logged_ratings(user, 3), n=5)
    with pytest.raises(RecsysError, match="max_ratings"):
        rec.recommend_user(user, max_ratings=0)


def test_save_load_round_trip_keeps_the_record() -> None:
    folder = tiny_model_dir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert USER_LOG_FILE in manifest["files"]
    again = ColdStartRecommender.load(folder)
    rec = tiny_model()
    for name in ("indptr", "items", "ratings"):
        np.testing.assert_array_equal(getattr(again.user_log.log, name), getattr(rec.user_log.log, name))
    assert again.user_log.log.user_ids.to_list() == rec.user_log.log.user_ids.to_list()
    assert again.recommend_users(some_users(), n=5) == rec.recommend_users(some_users(), n=5)


def test_string_user_ids_round_trip_through_the_user_log_file(tmp_path: Path) -> None:
    log = pl.DataFrame(
        {
            "user_id": ["ü-1", "b", "ü-1", "", "b"],
            "item_id": [3, 1, 2, 1, 3],
            "rating": [4.0, 2.0, 5.0, 3.0, 1.0],
            "timestamp": [5, 1, 2, 3, 0],
        }
    )
    record = KnownUsers.from_log(log, IdIndex(pl.Series([1, 2, 3])))
    record.save(tmp_path / USER_LOG_FILE)
    again = KnownUsers.load(tmp_path / USER_LOG_FILE, n_items=3)
    assert again.log.user_ids.to_list() == record.log.user_ids.to_list() == ["", "b", "ü-1"]
    rows = again.rows_of(["ü-1", "b"])
    assert again.log.items[again.log.indptr[rows[0]] : again.log.indptr[rows[0] + 1]].tolist() == [
        1,
        2,
    ]  # by time
    with pytest.raises(ModelFileError, match="outside the catalogue"):
        KnownUsers.load(tmp_path / USER_LOG_FILE, n_items=2)


def test_an_edited_user_log_with_a_matching_checksum_is_refused(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir(), folder)
    record = tiny_model().user_log
    record.log.items[0] = 10_000  # beyond the catalogue
    try:
        record.save(folder / USER_LOG_FILE)
    finally:
        record.log.items[0] = ColdStartRecommender.load(tiny_model_dir()).user_log.log.items[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][USER_LOG_FILE] = sha256_file(folder / USER_LOG_FILE)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="damaged user log"):
        ColdStartRecommender.load(folder)


@functools.cache
def opted_out() -> ColdStartRecommender:
    ds = make_synthetic(n_users=60, n_items=30, n_interactions=900, seed=4)
    return ColdStartRecommender(TINY | {"train": TINY["train"] | {"keep_user_log": False}}).fit_dataset(ds)


def test_opt_out_keeps_no_record_and_recommend_user_says_so(tmp_path: Path) -> None:
    rec = opted_out()
    assert rec.user_log is None
    folder = tmp_path / "m"
    ColdStartRecommender.load(tiny_model_dir()).save(folder)  # a record from an earlier save...
    rec.save(folder)  # ...is removed by a save without one
    assert not (folder / USER_LOG_FILE).exists()
    assert USER_LOG_FILE not in json.loads((folder / "manifest.json").read_text())["files"]
    again = ColdStartRecommender.load(folder)
    assert again.user_log is None and again.config.train.keep_user_log is False
    for model in (rec, again):
        with pytest.raises(UnknownUserError, match="keeps no record of its training users"):
            model.recommend_user(1, on_unknown="cold")


def test_models_saved_before_the_user_log_load_with_no_known_users(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(tiny_model_dir(), folder)
    (folder / USER_LOG_FILE).unlink()
    config = json.loads((folder / "config.json").read_text())
    del config["train"]["keep_user_log"]
    (folder / "config.json").write_text(json.dumps(config))
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"][USER_LOG_FILE]
    manifest["files"]["config.json"] = sha256_file(folder / "config.json")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = ColdStartRecommender.load(folder)
    assert old.user_log is None and old.config.train.keep_user_log is False
    assert old.recommend({1: 5.0}, n=3) == tiny_model().recommend({1: 5.0}, n=3)
    with pytest.raises(UnknownUserError, match="keeps no record"):
        old.recommend_user(some_users()[0])


# ---- the command line ----------------------------------------------------------------------------------
def test_cli_recommend_user_prints_the_users_recommendations(capsys, tmp_path: Path) -> None:
    user = some_users()[0]
    proc = cli(capsys, "recommend", "--model", str(tiny_model_dir()), "--user", str(user), "-n", "4")
    assert proc.returncode == 0, proc.stderr
    assert [r["item_id"] for r in json.loads(proc.stdout)] == [
        i for i, _ in tiny_model().recommend_user(user, n=4)
    ]
    fresh = tmp_path / "fresh.csv"
    fresh.write_text(f"user_id,item_id,rating\n{user},{tiny_model().item_ids[0]},5\n")
    proc = cli(
        capsys, "recommend", "--model", str(tiny_model_dir()), "--user", str(user), "--history", str(fresh)
    )
    expected = tiny_model().recommend_user(user, history=pl.read_csv(fresh))
    assert proc.returncode == 0 and [r["item_id"] for r in json.loads(proc.stdout)] == [
        i for i, _ in expected
    ]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--user", "1", "--ratings", "r.json"], "exactly one of --ratings"),
        ([], "exactly one of --ratings"),
        (["--ratings", "r.json", "--history", "r.json"], "--history goes with --user"),
        (["--user", "no-such-user"], "unknown user id(s) 'no-such-user'"),
    ],
)
def test_cli_recommend_user_bad_combinations_exit_2_with_one_line(
    capsys, tmp_path: Path, args, words
) -> None:
    (tmp_path / "r.json").write_text('{"1": 5}')
    args = [str(tmp_path / a) if a == "r.json" else a for a in args]
    proc = cli(capsys, "recommend", "--model", str(tiny_model_dir()), *args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


def test_cli_recommend_batch_users_file_scores_known_users(capsys, tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text("\n".join(map(str, some_users())) + "\n\n")
    out = tmp_path / "out.csv"
    model = str(tiny_model_dir())
    proc = cli(
        capsys,
        "recommend-batch",
        "--model",
        model,
        "--users",
        str(tmp_path / "users.txt"),
        "--out",
        str(out),
        "-n",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    got = pl.read_csv(out)
    expected = tiny_model().recommend_users(some_users(), n=3)
    for user, top in zip(some_users(), expected, strict=True):
        assert got.filter(pl.col("user_id") == user)["item_id"].to_list() == [i for i, _ in top]
    both = cli(
        capsys,
        "recommend-batch",
        "--model",
        model,
        "--users",
        str(tmp_path / "users.txt"),
        "--ratings",
        str(out),
        "--out",
        str(out),
    )
    assert both.returncode == 2 and "exactly one of --ratings" in both.stderr


def test_cli_train_no_user_log_sets_the_config_key(capsys) -> None:
    from recsys.cli.options import ConfigOptions

    assert "--no-user-log" in cli(capsys, "train", "--help").stdout

    assert ConfigOptions().build().train.keep_user_log is True
    assert ConfigOptions(no_user_log=True).build().train.keep_user_log is False


# ---- the pyfunc (REST) ------------------------------------------------------------------------------------
def _pyfunc():
    from recsys.tracking.pyfunc import RecsysPyfunc

    model = RecsysPyfunc()
    model.rec = tiny_model()
    return model


def test_pyfunc_known_users_param_scores_users_by_id() -> None:
    from recsys.tracking.pyfunc import model_signature

    users = some_users()[:2]
    request = pd.DataFrame(
        {"user_id": [str(u) for u in users], "item_id": [None, None], "rating": [None, None]}
    )
    got = _pyfunc().predict(None, request, {"known_users": True, "n": 4})
    for user, top in zip(users, tiny_model().recommend_users(users, n=4), strict=True):
        assert got[got["user_id"] == str(user)]["item_id"].tolist() == [i for i, _ in top]
    only_ids = _pyfunc().predict(
        None, pd.DataFrame({"user_id": [str(users[0])]}), {"known_users": True, "n": 4}
    )
    assert only_ids["item_id"].tolist() == got[got["user_id"] == str(users[0])]["item_id"].tolist()
    fresher = pd.DataFrame(
        {"user_id": [str(users[0])], "item_id": [str(tiny_model().item_ids[0])], "rating": [5.0]}
    )
    with_history = _pyfunc().predict(None, fresher, {"known_users": True, "n": 4})
    expected = tiny_model().recommend_user(users[0], n=4, history={tiny_model().item_ids[0]: 5.0})
    assert with_history["item_id"].tolist() == [i for i, _ in expected]
    assert "known_users" in [p["name"] for p in model_signature(tiny_model()).params.to_dict()]


def test_pyfunc_unknown_known_user_is_an_http_400() -> None:
    from mlflow.exceptions import MlflowException

    request = pd.DataFrame({"user_id": ["no-such-user"], "item_id": [None], "rating": [None]})
    with pytest.raises(MlflowException, match="unknown user id") as err:
        _pyfunc().predict(None, request, {"known_users": True})
    assert err.value.get_http_status_code() == 400
    with pytest.raises(MlflowException, match="known_users must be true or false"):
        _pyfunc().predict(None, request, {"known_users": "yes"})
