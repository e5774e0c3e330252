"""For real: ``mlflow server`` on loopback, ``recsys train --tracking-uri ... --register``, promotion by
alias, ``mlflow models serve -m models:/NAME@champion --env-manager local`` and ``POST /invocations``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from recsys.data.synthetic import make_synthetic, write_synthetic
from recsys.recommender import ColdStartRecommender
from tests.mlflow_servers import http, mlflow_server, model_server, post_json, run_cli

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.mlflow_server

FAST = (
    "[model]\nembedding_dim = 4\nhidden = [8]\n[train]\nepochs = 2\nmeta_batch_size = 16\nnum_threads = 1\n"
)
COLUMNS = ["user_id", "item_id", "rating", "gender"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    write_synthetic(make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=5), root / "data")
    (root / "fast.toml").write_text(FAST)
    with mlflow_server(root / "server") as server:
        train = run_cli(
            "train", "--dataset", str(root / "data"), "--out", str(root / "model"), "--config",
            str(root / "fast.toml"), "--protocol", "random", "--tracking-uri", server.uri,
            "--experiment", "serving", "--register", "movies", cwd=root,
        )  # fmt: skip
        assert train.returncode == 0, train.stderr
        promote = run_cli(
            "tracking",
            "promote",
            "movies",
            "1",
            "--alias",
            "champion",
            "--tracking-uri",
            server.uri,
            cwd=root,
        )
        assert promote.returncode == 0, promote.stderr
        with model_server("models:/movies@champion", server.uri, root / "serve.log") as url:
            yield SimpleNamespace(root=root, server=server, url=url, train=train)


def test_training_against_the_server_is_tracked_and_registered(served) -> None:
    client = mlflow.MlflowClient(served.server.uri)
    mv = client.get_model_version_by_alias("movies", "champion")
    assert str(mv.version) == "1" and f"MLflow run {mv.run_id}" in served.train.stdout
    assert "registered: models:/movies/1" in served.train.stdout
    run = client.get_run(mv.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["recsys.kind"] == "train"
    assert [m.step for m in client.get_metric_history(mv.run_id, "val_mae")] == [1, 2]
    assert run.data.params["model.embedding_dim"] == "4" and "val_mae_adapted" in run.data.metrics
    # artifacts went through the server into its artifacts folder, not into the client's working dir
    stored = list((served.root / "server" / "server-artifacts").rglob("model.safetensors"))
    assert stored and not (served.root / "mlartifacts").exists() and not (served.root / "mlflow.db").exists()


def test_rest_recommendations_rank_known_items_and_match_in_process_scores(served, monkeypatch) -> None:
    users = {"ann": ({1: 5.0, 2: 4.0, 9: 1.0}, "F"), "bob": ({5: 2.0}, None)}
    rows = [[u, str(i), r, g] for u, (ratings, g) in users.items() for i, r in ratings.items()]
    rows.append(["cat", None, None, "M"])  # a user with no ratings: pure cold start from features
    status, body = post_json(
        f"{served.url}/invocations",
        {"dataframe_split": {"columns": COLUMNS, "data": rows}, "params": {"n": 5}},
    )
    assert status == 200, body
    preds = body["predictions"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.server.uri)
    rec = ColdStartRecommender.load("models:/movies@champion")  # the same model, fetched from the server
    catalogue = set(rec.item_ids)
    users["cat"] = ({}, "M")
    for user, (ratings, gender) in users.items():
        got = [p for p in preds if p["user_id"] == user]
        want = rec.recommend(ratings, n=5, user_features={"gender": gender} if gender else None)
        assert [p["rank"] for p in got] == [1, 2, 3, 4, 5]
        assert [p["item_id"] for p in got] == [i for i, _ in want]
        assert {p["item_id"] for p in got} <= catalogue and not {p["item_id"] for p in got} & set(ratings)
        np.testing.assert_allclose([p["score"] for p in got], [s for _, s in want], atol=1e-5)
        assert got[0]["title"] == rec.title(want[0][0])
    # dataframe_records and default params (n = 10) work too
    status, body = post_json(
        f"{served.url}/invocations", {"dataframe_records": [{"user_id": "dan", "item_id": "3", "rating": 4}]}
    )
    assert status == 200 and len(body["predictions"]) == 10


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({}, "dataframe_split"),
        ({"dataframe_split": {"columns": COLUMNS[:3], "data": []}}, "empty"),
        ({"dataframe_split": {"columns": COLUMNS[:3], "data": [["a", "1", None]]}}, "NaN"),
        ({"dataframe_split": {"columns": COLUMNS[:3], "data": [["a", "1", "five"]]}}, "rating"),
        ({"dataframe_split": {"columns": COLUMNS[:3], "data": [["a", "1", 9.5]]}}, "outside the scale"),
        ({"dataframe_split": {"columns": COLUMNS[:3], "data": [["a", "424242", 4.0]]}}, "unknown item"),
        ({"dataframe_split": {"columns": COLUMNS[:2], "data": [["a", "1"]]}}, "rating"),
        (
            {"dataframe_split": {"columns": COLUMNS[:3], "data": [["a", "1", 4.0]]}, "params": {"n": 0}},
            "positive",
        ),
        (
            {"dataframe_split": {"columns": COLUMNS[:3], "data": [["a", "1", 4.0]]}, "params": {"n": "x"}},
            "'n'",
        ),
        ([1, 2, 3], "dictionary"),
    ],
)
def test_rest_malformed_input_is_a_4xx_with_a_message(served, payload, words) -> None:
    status, body = post_json(f"{served.url}/invocations", payload)
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and words in body["message"], body


def test_rest_non_json_and_unknown_items_ignored_on_request(served) -> None:
    status, text = http(f"{served.url}/invocations", b"not json")
    assert status == 400 and "JSON" in text
    payload = {
        "dataframe_split": {"columns": COLUMNS[:3], "data": [["a", "424242", 4.0], ["a", "1", 5.0]]},
        "params": {"n": 3, "on_unknown": "ignore"},
    }
    status, body = post_json(f"{served.url}/invocations", payload)
    assert status == 200 and [p["rank"] for p in body["predictions"]] == [1, 2, 3]
