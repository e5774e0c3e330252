"""A real ``mlflow server`` killed in the middle of a tracked training run: training goes on and the
run's record loses nothing (kept calls are retried when the server is back, or sent later by
``recsys tracking sync``)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from recsys.config import RecommenderConfig
from recsys.data.synthetic import make_synthetic
from recsys.recommender import ColdStartRecommender
from recsys.tracking.mlflow_run import Tracker, TrackingOptions
from recsys.tracking.params import run_params
from recsys.tracking.registry import version_tags
from recsys.workflows import train_model
from tests.mlflow_servers import MlflowServer, cli

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.mlflow_server

CFG = {
    "model": {"embedding_dim": 4, "hidden": [8]},
    "train": {"epochs": 4, "meta_batch_size": 16, "patience": 0, "num_threads": 1},
}


def test_server_killed_mid_run_training_goes_on_and_nothing_is_lost(
    tmp_path, monkeypatch, caplog, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECSYS_MLFLOW_SPOOL", raising=False)
    caplog.set_level(logging.WARNING, logger="recsys.tracking")
    server = MlflowServer(tmp_path / "server")
    events: list[tuple[int, str]] = []

    def outage(epoch: int, record: dict) -> None:
        # runs after the tracker's own callback: epoch 1 reaches the server, then it dies;
        # it is back for epoch 3 (kept calls flushed), dies again after epoch 3 for the rest of the run
        if epoch in (1, 3):
            server.kill()
            events.append((epoch, "killed"))
        elif epoch == 2:
            server.start()
            events.append((epoch, "restarted"))

    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=6)
    cfg = RecommenderConfig.from_dict(CFG)
    server.start()
    try:
        with Tracker(TrackingOptions(tracking_uri=server.uri, experiment="outage"), kind="train") as tr:
            params = run_params(ds, cfg, protocol="random")
            tr.log_params(params)
            rec, _ = train_model(ds, cfg, protocol="random", callbacks=[tr.epoch_callback, outage])
            assert tr.flushed_later >= 1  # epoch 2's metrics were kept, then sent at epoch 3
            tr.log_training(rec)
            ref = tr.log_model(rec, "outage-model", version_tags(rec, params["data.fingerprint"]))
        # training finished all its epochs; what the dead server could not take is in the journal
        assert len(rec.history) == 4 and events == [(1, "killed"), (2, "restarted"), (3, "killed")]
        assert ref is not None and ref.model_uri is None
        spool = tmp_path / "mlflow-spool" / tr.run_id
        assert tr.spool == spool and (spool / "journal.jsonl").exists()
        ops = [json.loads(line) for line in (spool / "journal.jsonl").read_text().splitlines()]
        steps = [op["step"] for op in ops if op["op"] == "metrics" and "train_loss" in op["metrics"]]
        assert steps == [4] and [op["op"] for op in ops][-2:] == ["model", "end"]
        assert (spool / "files").is_dir() and list((spool / "files").rglob("model.safetensors"))
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "tracking calls are kept and retried" in messages
        assert f"recsys tracking sync {spool}" in messages and "nothing is lost" in messages

        # the server comes back: `recsys tracking sync` sends the journal, in order
        server.start()
        proc = cli(capsys, "tracking", "sync")
        assert proc.returncode == 0, proc.stderr
        assert f"run {tr.run_id}" in proc.stdout and "complete" in proc.stdout
        assert not spool.exists()

        client = mlflow.MlflowClient(server.uri)
        run = client.get_run(tr.run_id)
        assert run.info.status == "FINISHED"
        for key in ("train_loss", "val_mae", "val_rmse", "val_ndcg_at_3", "seconds"):
            history = client.get_metric_history(tr.run_id, key)
            assert sorted(h.step for h in history) == [1, 2, 3, 4], key
        val = sorted(client.get_metric_history(tr.run_id, "val_mae"), key=lambda h: h.step)
        np.testing.assert_allclose([h.value for h in val], [r["val_mae"] for r in rec.history], rtol=1e-9)
        assert run.data.metrics["val_mae_adapted"] == pytest.approx(rec.summary.mae_adapted)
        assert run.data.params["data.fingerprint"] == params["data.fingerprint"]
        assert {f.path for f in client.list_artifacts(tr.run_id, "recsys")} >= {"recsys/config.json"}
        mv = client.get_model_version("outage-model", "1")
        assert mv.run_id == tr.run_id and "recsys.val_mae_adapted" in mv.tags
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        loaded = ColdStartRecommender.load("models:/outage-model/1")
        assert loaded.recommend({1: 5.0, 3: 2.0}, n=5) == rec.recommend({1: 5.0, 3: 2.0}, n=5)
    finally:
        server.stop()
