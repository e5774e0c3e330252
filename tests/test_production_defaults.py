"""Production defaults and small or odd logs (issue: "Your own log, your own pipeline").

`recsys train --interactions LOG --out M` with no other flags learns from every user; constant timestamps
mean "no timestamps"; a log too small to meta-train on fails with one clear line; evaluation says which
support sizes it skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys import ColdStartRecommender
from recsys.data.dataset import load_files
from recsys.data.log_checks import MIN_TASK_USERS
from recsys.data.tasks import UserLog, sample_tasks
from recsys.errors import DataError
from tests.test_download_and_cli import run_cli

FAST = {"train.epochs": 1, "model.embedding_dim": 8, "model.hidden": (16,), "model.factor_dim": 8}


def make_log(
    n_users: int, per_user: int, n_items: int, *, ts: str = "varied", seed: int = 0, ts_col: str = "timestamp"
) -> pl.DataFrame:
    """A random rating log; ``ts``: ``varied`` (users join a day apart), ``zero``, ``same`` or ``none``."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for j, item in enumerate(rng.choice(n_items, size=min(per_user, n_items), replace=False)):
            t = {"zero": 0, "same": 1_700_000_000}.get(ts, 1_600_000_000 + u * 86_400 + j * 3_600)
            rows.append((u, int(item), float(rng.integers(1, 6)), t))
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "rating", ts_col], orient="row")
    return frame.drop(ts_col) if ts == "none" else frame


def fast_config(tmp_path: Path) -> Path:
    path = tmp_path / "fast.json"
    path.write_text(
        json.dumps({"model": {"embedding_dim": 8, "hidden": [16], "factor_dim": 8}, "train": {"epochs": 1}})
    )
    return path


def train_cli(tmp_path: Path, log: Path, *extra: str):
    out = tmp_path / "model"
    proc = run_cli(
        "train",
        "--interactions",
        str(log),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--config",
        str(fast_config(tmp_path)),
        "--no-mlflow",
        *extra,
    )
    return proc, out


def saved_info(out: Path) -> dict:
    return json.loads((out / "history.json").read_text())["info"]


# ---- production defaults ------------------------------------------------------------------------------


@pytest.mark.parametrize("ts", ["varied", "zero", "none"])
def test_train_with_no_flags_learns_from_every_user(tmp_path: Path, ts: str) -> None:
    """Timestamps or not, constant or not: no new users are held out by default; only validation users
    are carved out (for model selection), and the summary says so."""
    log = tmp_path / "log.csv"
    make_log(60, 12, 50, ts=ts).write_csv(log)
    proc, out = train_cli(tmp_path, log)
    assert proc.returncode == 0, proc.stderr
    info = saved_info(out)
    assert info["holdout"] == {"protocol": "none"}
    assert info["train_users"] + info["validation_users"] == 60 and info["validation_users"] == 6
    assert "no new users held out" in proc.stdout and "trained on 54 users" in proc.stdout
    if ts == "zero":
        assert "every timestamp is the same" in proc.stderr


def test_constant_timestamps_are_no_timestamps_not_an_empty_training_set(tmp_path: Path) -> None:
    """All-equal timestamps used to leave `error: no interactions to train on` under the temporal split."""
    log = tmp_path / "log.csv"
    make_log(60, 12, 50, ts="same").write_csv(log)
    ds = load_files(log)
    assert not ds.has_timestamps
    proc, out = train_cli(tmp_path, log, "--holdout", "temporal")
    assert proc.returncode == 2 and "temporal split needs timestamps" in proc.stderr
    proc, out = train_cli(tmp_path, log, "--holdout", "random")
    assert proc.returncode == 0, proc.stderr
    assert saved_info(out)["holdout"]["protocol"] == "random"


def test_a_column_named_like_a_timestamp_is_used_with_a_warning(tmp_path: Path, caplog) -> None:
    log = tmp_path / "log.csv"
    make_log(20, 5, 30, ts_col="ts").write_csv(log)
    with caplog.at_level(logging.WARNING):
        ds = load_files(log)
    assert ds.has_timestamps and "using column 'ts' as the timestamp" in caplog.text


def test_columns_that_are_not_used_are_named_in_a_warning(tmp_path: Path, caplog) -> None:
    log = tmp_path / "log.csv"
    make_log(20, 5, 30).with_columns(pl.lit("web").alias("channel")).write_csv(log)
    with caplog.at_level(logging.WARNING):
        load_files(log)
    assert "['channel'] ignored" in caplog.text


def test_the_deprecated_protocol_flag_still_holds_out_users(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    make_log(60, 12, 50).write_csv(log)
    proc, out = train_cli(tmp_path, log, "--protocol", "random")
    assert proc.returncode == 0, proc.stderr
    assert saved_info(out)["holdout"]["test_users"] == {"new_users": 12}


def test_an_unknown_holdout_is_a_usage_error_listing_the_valid_ones(tmp_path: Path) -> None:
    proc, _ = train_cli(tmp_path, tmp_path / "missing.csv", "--holdout", "future")
    assert proc.returncode == 2 and "none, temporal, random, melu" in proc.stderr


# ---- any log trains or fails with one clear line ------------------------------------------------------


def test_a_thirty_user_log_trains_and_the_model_loads(tmp_path: Path) -> None:
    rec = ColdStartRecommender(**FAST).fit(make_log(30, 8, 40))
    assert rec.info["train_users"] + rec.info["validation_users"] == 30
    rec.save(tmp_path / "m")
    assert len(ColdStartRecommender.load(tmp_path / "m").recommend({1: 5.0}, n=3)) == 3


@pytest.mark.parametrize(
    ("case", "frame", "message"),
    [
        ("single user", make_log(1, 10, 20), "1 user(s) with >= 2 ratings"),
        ("300 users with one rating each", make_log(300, 1, 50), "0 user(s) with >= 2 ratings (of 300 users"),
        ("a catalogue of one item", make_log(100, 1, 1), "1 distinct item(s)"),
        ("nine users", make_log(MIN_TASK_USERS - 1, 10, 30), f"needs at least {MIN_TASK_USERS}"),
    ],
)
def test_a_log_too_small_to_meta_train_on_is_one_clear_data_error(case, frame, message) -> None:
    with pytest.raises(DataError) as err:
        ColdStartRecommender(**FAST).fit(frame)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_single_user_log_through_the_cli_is_one_error_line_and_status_2(tmp_path: Path) -> None:
    """It used to be a TypeError in split_protocol."""
    log = tmp_path / "log.csv"
    make_log(1, 10, 20).write_csv(log)
    proc, _ = train_cli(tmp_path, log)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    proc, _ = train_cli(tmp_path, log, "--holdout", "temporal")
    assert proc.returncode == 2 and "leave none to hold out" in proc.stderr


def test_a_catalogue_of_two_items_trains() -> None:
    """Every user rated both items: it used to be an IndexError in tasks.py."""
    users = np.repeat(np.arange(40), 2)
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {"user_id": users, "item_id": np.tile([0, 1], 40), "rating": rng.integers(1, 6, 80).astype(float)}
    )
    rec = ColdStartRecommender(**FAST).fit(frame)
    assert [i for i, _ in rec.recommend({0: 5.0}, n=5)] == [1]


def test_identical_ratings_train_as_implicit_feedback_and_the_saved_model_loads(
    tmp_path: Path, caplog
) -> None:
    """It used to save a model that refused to load ("invalid rating scale (4.0, 4.0)")."""
    frame = make_log(40, 8, 30).with_columns(pl.lit(4.0).alias("rating"))
    with caplog.at_level(logging.WARNING):
        rec = ColdStartRecommender(**FAST).fit(frame)
    assert "every rating is 4" in caplog.text and rec.space.implicit
    rec.save(tmp_path / "m")
    loaded = ColdStartRecommender.load(tmp_path / "m")
    assert len(loaded.recommend({1: 4.0}, n=5)) == 5


def test_a_temporal_holdout_on_a_small_shop_log_trains(tmp_path: Path) -> None:
    """A 2,000-row shop log with timestamps: the temporal cut used to leave no training tasks (IndexError
    in fit_item_item)."""
    log = tmp_path / "shop.csv"
    make_log(250, 8, 300).write_csv(log)
    proc, out = train_cli(tmp_path, log, "--holdout", "temporal")
    assert proc.returncode == 0, proc.stderr
    assert saved_info(out)["holdout"]["protocol"] == "temporal"


def test_a_holdout_that_leaves_too_few_training_users_says_so(tmp_path: Path) -> None:
    from recsys.config import RecommenderConfig
    from recsys.workflows import train_model

    log = tmp_path / "log.csv"
    make_log(MIN_TASK_USERS, 10, 30).write_csv(log)
    with pytest.raises(DataError, match="left for training by the temporal holdout"):
        train_model(load_files(log), RecommenderConfig(), protocol="temporal")


def test_sampling_tasks_for_no_users_gives_no_tasks() -> None:
    from recsys.data.ids import IdIndex

    log = UserLog.from_frame(make_log(5, 4, 10), IdIndex(pl.Series(list(range(10)))))
    tasks = sample_tasks(log, np.zeros(0, np.int64), np.random.default_rng(0), support_size=5, query_size=10)
    assert len(tasks) == 0 and tasks.support.shape[0] == 0 and tasks.query.shape[0] == 0


# ---- evaluation: the K the users' ratings allow -------------------------------------------------------


def test_evaluate_runs_the_support_sizes_users_can_fill_and_says_which_were_skipped(tmp_path: Path) -> None:
    """Users with 14 ratings: K = 1 and 3 have tasks (K + 10 <= 14), K = 5 and 10 do not. It used to be an
    IndexError."""
    log = tmp_path / "log.csv"
    make_log(80, 14, 60).write_csv(log)
    out = tmp_path / "report"
    proc = run_cli(
        "evaluate", "--dataset", str(log), "--protocol", "random", "--shots", "1,3,5,10", "--seeds", "1",
        "--baselines", "item-mean", "--ablations", "none", "--no-mlflow",
        "--config", str(fast_config(tmp_path)), "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert {r["k"] for r in report["results"]} == {"1", "3"}
    assert set(report["skipped"]) == {"random, K = 5", "random, K = 10"}
    assert "K + 10 = 15 ratings" in report["skipped"]["random, K = 5"]
    assert "Support sizes skipped" in (out / "report.md").read_text()


def test_evaluate_with_no_support_size_any_user_can_fill_is_one_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    make_log(80, 8, 60).write_csv(log)
    proc = run_cli(
        "evaluate", "--dataset", str(log), "--protocol", "random", "--shots", "1,3", "--seeds", "1",
        "--baselines", "item-mean", "--ablations", "none", "--no-mlflow",
        "--config", str(fast_config(tmp_path)), "--out", str(tmp_path / "report"),
    )  # fmt: skip
    assert proc.returncode == 2 and "no new user could be evaluated at any support size" in proc.stderr


def test_a_frame_whose_timestamps_are_all_missing_trains_without_timestamps_some_missing_is_an_error() -> (
    None
):
    """A null in an integer timestamp column used to become a garbage time in tasks.py."""
    frame = make_log(30, 8, 40)
    none = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp"))
    rec = ColdStartRecommender(**FAST).fit(none)
    assert rec.info["train_users"] + rec.info["validation_users"] == 30
    some = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("timestamp")).alias("timestamp")
    )
    with pytest.raises(DataError, match="1 timestamp"):
        ColdStartRecommender(**FAST).fit(some)


def test_recommend_batch_with_a_fifo_as_ratings_is_one_line_without_waiting(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "ratings.csv"
    os.mkfifo(fifo)
    proc = run_cli(
        "recommend-batch", "--model", str(tmp_path), "--ratings", str(fifo), "--out", str(tmp_path / "o")
    )
    assert proc.returncode == 2 and "FIFO" in proc.stderr


def test_a_fifo_or_dev_zero_as_a_dataset_spec_is_one_spec_error_without_waiting(tmp_path: Path) -> None:
    import os

    from recsys.data.spec import DatasetSpec
    from recsys.errors import SpecError

    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="FIFO"):
        DatasetSpec.from_toml(fifo)
    with pytest.raises(SpecError, match="character device"):
        DatasetSpec.from_toml("/dev/zero")
