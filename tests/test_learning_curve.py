"""The learning-curve pipeline: nested cuts of whole users, and the table with its crossover."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipelines.learning_curve import cut_log, summary


@pytest.fixture
def log_folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    rows = [(u, i, float(1 + (u + i) % 5), 1000 + u * 10 + i) for u in range(1, 41) for i in range(u % 7 + 2)]
    pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row").write_csv(
        src / "ratings.csv"
    )
    pl.DataFrame({"user_id": range(1, 41), "gender": ["F", "M"] * 20}).write_csv(src / "users.csv")
    pl.DataFrame({"item_id": range(10), "genres": ["a|b"] * 10}).write_csv(src / "movies.csv")
    return src


def test_cuts_keep_whole_users_and_smaller_cuts_are_subsets_of_larger_ones(log_folder, tmp_path) -> None:
    full = pl.read_csv(log_folder / "ratings.csv")
    users = {}
    for n in (5, 20):
        counts = cut_log(log_folder, tmp_path / f"cut{n}", n)
        cut = pl.read_csv(tmp_path / f"cut{n}" / "ratings.csv")
        users[n] = set(cut["user_id"].to_list())
        assert len(users[n]) == n and counts["users.csv"] == n and counts["movies.csv"] == 10
        for u in users[n]:  # every rating of a kept user, nothing else
            assert cut.filter(pl.col("user_id") == u).height == full.filter(pl.col("user_id") == u).height
        assert set(pl.read_csv(tmp_path / f"cut{n}" / "users.csv")["user_id"].to_list()) == users[n]
    assert users[5] < users[20]
    assert cut_log(log_folder, tmp_path / "again", 5) and users[5] == set(
        pl.read_csv(tmp_path / "again" / "ratings.csv")["user_id"].to_list()
    )


def test_asking_for_more_users_than_the_log_has_is_an_error(log_folder, tmp_path) -> None:
    with pytest.raises(ValueError, match="40 users, fewer than the 41"):
        cut_log(log_folder, tmp_path / "cut", 41)


def _report(meta_mae: float, diff: tuple[float, float, float], k: str = "5") -> dict:
    def cell(m: float) -> dict:
        return {"mean": m, "low": m - 0.01, "high": m + 0.01}

    common = {"protocol": "random", "scenario": "new_users", "k": k, "users": 60, "tasks": 60}
    return {
        "splits": {"random": [{"train_users": 240}]},
        "methods": {"meta-learner": {"kind": "meta-learner"}, "item-mean": {"kind": "baseline"}},
        "results": [
            common | {"method": "meta-learner", "mae": cell(meta_mae)},
            common | {"method": "item-mean", "mae": cell(0.80)},
        ],
        "paired": [
            common
            | {"metric": "mae", "baseline": "item-mean", "mean": diff[0], "low": diff[1], "high": diff[2]}
        ],
    }


def test_the_crossover_is_the_smallest_size_from_which_the_default_is_never_behind(tmp_path) -> None:
    plan = {
        300: (0.83, (0.03, 0.02, 0.04)),
        1000: (0.80, (0.0, -0.01, 0.01)),
        3000: (0.78, (-0.02, -0.03, -0.01)),
    }
    for n, (mae, diff) in plan.items():
        (tmp_path / f"users-{n}").mkdir()
        (tmp_path / f"users-{n}" / "report.json").write_text(json.dumps(_report(mae, diff)))
    text = summary(tmp_path)
    assert "from 1,000 users on, the default is behind no fair baseline" in text
    assert (
        "| 300 | 240 | 60 | 5 | MAE | 0.830 | 0.800 (item-mean) | +0.030 [+0.020, +0.040] | **behind**"
        in text
    )
    assert "300: 0 of 1, 1,000: 0 of 1, 3,000: 1 of 1" in text
    (tmp_path / "users-3000" / "report.json").write_text(json.dumps(_report(0.83, plan[300][1])))
    assert "none within the sizes run: at the largest, the default is behind" in summary(tmp_path)


def test_the_full_log_row_compares_only_the_support_sizes_the_cuts_ran(tmp_path) -> None:
    """The suite's full-log part runs K = 1 to 20, the cuts K = 3, 5, 10 (here 5): a full-log K the cuts
    did not run is not in the table, nor in the crossover."""
    (tmp_path / "users-300").mkdir()
    (tmp_path / "users-300" / "report.json").write_text(json.dumps(_report(0.78, (-0.02, -0.03, -0.01))))
    full = tmp_path / "full"
    full.mkdir()
    both = _report(0.78, (-0.02, -0.03, -0.01))
    only_full = _report(0.83, (0.03, 0.02, 0.04), k="1")
    both["results"] += only_full["results"]
    both["paired"] += only_full["paired"]
    (full / "report.json").write_text(json.dumps(both))
    text = summary(tmp_path, full)
    assert "| 6,040 | 240 | 60 | 5 | MAE |" in text
    assert "| 6,040 | 240 | 60 | 1 |" not in text
    assert "from 300 users on, the default is behind no fair baseline" in text
