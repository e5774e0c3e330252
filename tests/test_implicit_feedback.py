"""Explicit logs treated as implicit feedback (--implicit): training and evaluation on catalogue metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.data.schema import RATING
from recsys.data.synthetic import make_synthetic, write_synthetic
from recsys.workflows import load_data
from tests.mlflow_servers import cli


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_synthetic(
        make_synthetic(n_users=120, n_items=40, n_interactions=2400, seed=4),
        tmp_path_factory.mktemp("imp") / "d",
    )


def test_as_implicit_drops_ratings_and_keeps_every_interaction(folder) -> None:
    explicit = load_data(str(folder))
    implicit = load_data(str(folder), implicit=True)
    assert not explicit.implicit and implicit.implicit
    assert RATING not in implicit.interactions.columns and implicit.rating_scale is None
    assert implicit.interactions.height == explicit.interactions.height
    assert implicit.name.endswith("-implicit") and implicit.as_implicit().name == implicit.name
    assert implicit.stats()["feedback"] == "implicit"


def test_cli_evaluate_implicit_reports_catalogue_metrics_only(folder, tmp_path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nembedding_dim = 4\nhidden = [8]\nfactor_dim = 8\n"
        "[train]\nepochs = 2\nmeta_batch_size = 16\nnum_threads = 1\npatience = 0\n"
    )
    proc = cli(
        capsys,
        "evaluate", "--dataset", str(folder), "--implicit", "--config", str(config), "--protocol", "random",
        "--shots", "3", "--baselines", "popularity,item-knn,implicit-als", "--seeds", "1", "--ablations", "none",
        "--no-tune", "--no-mlflow", "--out", str(tmp_path / "report"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["feedback"] == "implicit"
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == {"meta-learner", "popularity", "item-knn", "implicit-als"}
    for row in rows.values():
        assert "recall@20" in row and "ndcg@10" in row
        assert "mae" not in row and "query_ndcg@3" not in row  # no ratings to predict
        assert 0.0 <= row["recall@20"]["mean"] <= 1.0
