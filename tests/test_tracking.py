"""MLflow tracking on the embedded local store: params, per-epoch metrics, artifacts, the pyfunc model,
model URIs, and what happens when a tracking server is unreachable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from recsys.config import RecommenderConfig
from recsys.data.synthetic import make_synthetic, write_synthetic
from recsys.recommender import ColdStartRecommender
from recsys.tracking.mlflow_run import Tracker, TrackingOptions, TrackingUnavailableError
from recsys.tracking.params import (
    MAX_PARAM_LENGTH,
    data_fingerprint,
    eval_metric_key,
    flatten_params,
    metric_name,
    run_params,
)
from recsys.tracking.registry import set_alias, version_tags
from recsys.workflows import train_model
from tests.mlflow_servers import cli, free_port

mlflow = pytest.importorskip("mlflow")

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8]},
    "train": {"epochs": 2, "meta_batch_size": 16, "patience": 0, "num_threads": 1},
}
NEW_USERS = [({1: 5.0, 2: 3.0, 7: 1.0}, {"gender": "F"}), ({4: 2.0}, None), ({}, {"age": "age1"})]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One tracked training run (with a registered model) in a local store in a temporary folder."""
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=4)
        write_synthetic(ds, root / "data")
        cfg = RecommenderConfig.from_dict(TINY)
        with Tracker(TrackingOptions(experiment="tests"), kind="train") as tr:
            params = run_params(ds, cfg, protocol="random")
            tr.log_params(params)
            rec, _ = train_model(ds, cfg, protocol="random", callbacks=[tr.epoch_callback])
            tr.log_training(rec)
            ref = tr.log_model(rec, "tiny", version_tags(rec, params["data.fingerprint"]))
        client = mlflow.MlflowClient(tr.uri)
        yield SimpleNamespace(root=root, tr=tr, rec=rec, ref=ref, ds=ds, client=client, params=params)


def test_names_params_and_fingerprints() -> None:
    assert metric_name("val_ndcg@3") == "val_ndcg_at_3"
    assert metric_name("meta-learner (no adaptation)") == "meta-learner_no_adaptation"
    row = {"protocol": "melu", "scenario": "user_cold_state", "k": "all", "method": "meta-learner (1 step)"}
    assert (
        eval_metric_key(row, "query_ndcg@3")
        == "eval/melu/user_cold_state/kall/meta-learner_1_step/query_ndcg_at_3"
    )
    row = {"protocol": "temporal", "scenario": "new_users", "k": "5", "method": "item-knn"}
    assert eval_metric_key(row, "recall@20") == "eval/temporal/k5/item-knn/recall_at_20"
    flat = flatten_params({"model": {"hidden": [8, 8], "dim": 4}, "x": None, "long": "a" * 7000})
    assert flat["model.hidden"] == "[8, 8]" and flat["model.dim"] == "4" and flat["x"] == "None"
    assert len(flat["long"]) == MAX_PARAM_LENGTH
    frame = pl.DataFrame({"user_id": [1, 2, 3], "item_id": ["a", "b", "c"], "rating": [1.0, 2.0, 3.0]})
    fp = data_fingerprint(frame)
    assert fp == data_fingerprint(frame.reverse().select(["rating", "user_id", "item_id"]))
    assert fp != data_fingerprint(frame.with_columns(pl.Series("rating", [1.0, 2.0, 4.0])))
    assert fp != data_fingerprint(frame.head(2))


def test_default_store_is_a_local_sqlite_file_with_local_artifacts(store) -> None:
    root = store.root.resolve()
    assert store.tr.uri == f"sqlite:///{root}/mlflow.db" and (root / "mlflow.db").exists()
    exp = store.client.get_experiment_by_name("tests")
    assert exp.artifact_location == (root / "mlartifacts" / "tests").as_uri()
    run = store.client.get_run(store.tr.run_id)
    assert run.info.status == "FINISHED"
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(root / "mlartifacts")
    assert not (root / "mlruns").exists() and not (root / "mlflow-spool").exists()
    # the logged model's files are local too, in the same experiment
    model = store.client.get_logged_model(store.ref.model_uri.removeprefix("models:/"))
    assert model.experiment_id == exp.experiment_id
    assert Path(model.artifact_location.removeprefix("file://")).is_relative_to(root / "mlartifacts")


def test_run_records_config_data_epochs_and_artifacts(store) -> None:
    run = store.client.get_run(store.tr.run_id)
    p, m, tags = run.data.params, run.data.metrics, run.data.tags
    assert p["model.embedding_dim"] == "4" and p["model.hidden"] == "[8]" and p["train.epochs"] == "2"
    assert p["meta.inner_steps"] == str(store.rec.config.meta.inner_steps)
    assert p["dataset"] == "synthetic" and p["data.rows"] == str(store.ds.interactions.height)
    assert p["data.fingerprint"] == data_fingerprint(store.ds.interactions)
    assert p["version.torch"] and p["version.mlflow"] == mlflow.__version__ and p["git_commit"]
    assert tags["recsys.kind"] == "train"
    history = store.client.get_metric_history(store.tr.run_id, "train_loss")
    assert [h.step for h in history] == [1, 2]
    val = store.client.get_metric_history(store.tr.run_id, "val_mae")
    assert [round(h.value, 6) for h in val] == [round(r["val_mae"], 6) for r in store.rec.history]
    assert len(store.client.get_metric_history(store.tr.run_id, "val_ndcg_at_3")) == 2
    assert m["val_mae_adapted"] == pytest.approx(store.rec.summary.mae_adapted)
    files = {f.path for f in store.client.list_artifacts(store.tr.run_id, "recsys")}
    assert {"recsys/config.json", "recsys/features.json", "recsys/history.json"} <= files
    # the machine that trained it: another CPU's kernels train another ranking side
    assert "recsys/machine.json" in files
    assert tags["recsys.torch_kernels"] == str(torch.backends.cpu.get_cpu_capability())


def test_registered_version_and_model_uris_load_the_same_recommender(store) -> None:
    run_id = store.tr.run_id
    mv = store.client.get_model_version("tiny", "1")
    assert store.ref.version == "1" and mv.run_id == run_id
    assert float(mv.tags["recsys.val_mae_adapted"]) == pytest.approx(store.rec.summary.mae_adapted)
    set_alias("tiny", "1", "champion", store.tr.uri)
    ratings, feats = NEW_USERS[0]
    want = store.rec.recommend(ratings, n=5, user_features=feats)
    uris = [
        f"runs:/{run_id}/model",
        f"runs:/{run_id}",
        store.ref.model_uri,
        "models:/tiny/1",
        "models:/tiny@champion",
    ]
    for uri in uris:
        got = ColdStartRecommender.load(uri).recommend(ratings, n=5, user_features=feats)
        assert [i for i, _ in got] == [i for i, _ in want], uri
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-6)


def test_pyfunc_round_trip_gives_the_in_process_scores_and_has_no_pickle(store) -> None:
    from mlflow.exceptions import MlflowException

    local = Path(mlflow.artifacts.download_artifacts(store.ref.model_uri, tracking_uri=store.tr.uri))
    assert (local / "pyfunc_code.py").exists() and (
        local / "artifacts" / "recsys_model" / "manifest.json"
    ).exists()
    assert not list(local.rglob("*.pkl")) and not list(local.rglob("*.pickle"))
    model = mlflow.pyfunc.load_model(store.ref.model_uri)
    sig = model.metadata.signature
    assert sig.inputs.input_names()[:3] == ["user_id", "item_id", "rating"]
    assert {p.name: p.default for p in sig.params} == {
        "n": 10, "exclude_rated": True, "on_unknown": "error", "items": [], "exclude": [], "where": "",
        "explain": False, "similar_to": "", "by": "auto", "known_users": False,
    }  # fmt: skip
    rows = []
    for u, (ratings, feats) in enumerate(NEW_USERS):
        if not ratings:
            rows.append({"user_id": f"u{u}", "item_id": None, "rating": None, **(feats or {})})
        for item, r in ratings.items():
            rows.append({"user_id": f"u{u}", "item_id": str(item), "rating": r, **(feats or {})})
    frame = pd.DataFrame(rows)
    out = model.predict(frame, params={"n": 4})
    assert list(out.columns) == ["user_id", "rank", "item_id", "score", "predicted_rating", "title"]
    for u, (ratings, feats) in enumerate(NEW_USERS):
        want = store.rec.recommend(ratings, n=4, user_features=feats)
        got = out[out.user_id == f"u{u}"]
        assert got["item_id"].tolist() == [i for i, _ in want]
        np.testing.assert_allclose(got["score"], [s for _, s in want], atol=1e-5)
    bad = pd.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [float("nan")]})
    with pytest.raises(MlflowException) as info:
        model.predict(bad)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE" and "NaN" in info.value.message


def test_unreachable_server_fails_fast_or_falls_back_to_the_local_store(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingUnavailableError) as info:
        Tracker(TrackingOptions(tracking_uri=dead)).start()
    text = str(info.value)
    assert dead in text and "unreachable" in text and "--fallback-local" in text and "--no-mlflow" in text
    with Tracker(TrackingOptions(tracking_uri=dead, fallback_local=True, experiment="fb")) as tr:
        tr.log_metrics({"x": 1.5}, step=1)
    assert tr.fell_back and tr.uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    run = mlflow.MlflowClient(tr.uri).get_run(tr.run_id)
    assert run.data.metrics["x"] == 1.5 and run.info.status == "FINISHED"
    # disabled: nothing written at all
    with Tracker(TrackingOptions(enabled=False)) as off:
        off.log_metrics({"x": 1.0})
    assert not off.active and off.run_id is None


def test_cli_train_against_an_unreachable_server_is_a_clear_error_before_training(
    store, tmp_path, capsys
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    proc = cli(
        capsys,
        "train", "--dataset", str(store.root / "data"), "--out", str(tmp_path / "m"), "--tracking-uri", dead,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        f"error: MLflow tracking server {dead} is unreachable" in proc.stderr
        and "--fallback-local" in proc.stderr
    )
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_cli_evaluate_is_a_tracked_run_with_report_artifacts(store, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tr.uri)
    proc = cli(
        capsys,
        "evaluate", "--model", "models:/tiny/1", "--dataset", str(store.root / "data"),
        "--protocol", "random", "--shots", "3", "--baselines", "item-mean", "--seeds", "1",
        "--ablations", "none", "--no-tune", "--out", str(tmp_path / "report"), "--experiment", "tests-eval",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    exp = store.client.get_experiment_by_name("tests-eval")
    (run,) = store.client.search_runs([exp.experiment_id])
    assert run.data.tags["recsys.kind"] == "evaluate" and run.data.tags["recsys.model"] == "models:/tiny/1"
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    row = next(r for r in report["results"] if r["method"] == "meta-learner" and r["k"] == "3")
    assert run.data.metrics["eval/random/k3/meta-learner/mae"] == pytest.approx(row["mae"]["mean"])
    assert "eval/random/k3/item-mean/recall_at_20" in run.data.metrics
    assert run.data.params["eval.shots"] == "[3]" and run.data.params["model"] == "models:/tiny/1"
    files = {f.path for f in store.client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.json", "report/report.md"} <= files and any(f.endswith(".png") for f in files)
    assert "train meta-learner" not in report["timings_seconds"]  # the registered model was reused


def test_cli_promote_moves_an_alias(store, capsys) -> None:
    proc = cli(
        capsys, "tracking", "promote", "tiny", "1", "--alias", "challenger", "--tracking-uri", store.tr.uri
    )
    assert proc.returncode == 0 and "models:/tiny@challenger -> version 1" in proc.stdout
    assert str(store.client.get_model_version_by_alias("tiny", "challenger").version) == "1"
    bad = cli(capsys, "tracking", "promote", "tiny", "99", "--tracking-uri", store.tr.uri)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot set alias champion of tiny v99")


def test_models_uri_is_fetched_from_the_given_tracking_uri_when_the_environment_points_elsewhere(
    store, tmp_path, monkeypatch
) -> None:
    """Regression: MLflow's download_artifacts ignored its registry_uri for ``models:/`` URIs, so
    ``--tracking-uri`` lost to ``MLFLOW_TRACKING_URI`` ("Registered Model ... not found")."""
    from recsys.utils.locations import resolve_model_location

    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    folder = resolve_model_location("models:/tiny/1", tracking_uri=store.tr.uri)
    assert (folder / "manifest.json").exists()
    # the process-wide settings are put back exactly
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    assert os.environ["MLFLOW_TRACKING_URI"] == other and "MLFLOW_REGISTRY_URI" not in os.environ
