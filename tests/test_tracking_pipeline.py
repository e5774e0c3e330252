"""The champion/challenger gate, and ``pipelines.train_and_register`` end to end on the local store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.train_and_register import build_parser, run
from recsys.data.synthetic import make_synthetic, write_synthetic
from recsys.tracking.registry import CHALLENGER, CHAMPION, champion_challenger_gate

mlflow = pytest.importorskip("mlflow")

TINY = (
    "[model]\nembedding_dim = 4\nhidden = [8]\n[train]\nepochs = 2\nmeta_batch_size = 16\nnum_threads = 1\n"
)
# the same model with a runaway local learning rate: adaptation overshoots, validation MAE gets worse;
# the choices after training that could fall back to the item baseline or a classical MF (and so rescue
# it, as they did once validation tasks followed the holdout protocol) are off
BROKEN = (
    TINY
    + "[meta]\ninner_steps = 3\ninner_lr = 25.0\n"
    + "[model.hybrid]\nfold_in_weight = false\nmf_fallback = false\nrating_mix = false\n"
)


def test_gate_promotes_only_a_better_version(tmp_path) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'gate.db'}")
    client.create_registered_model("m")

    def version(mae: float, validation: str = "v1") -> str:
        tags = {"recsys.val_mae_adapted": repr(mae), "recsys.validation_set": validation}
        return str(client.create_model_version("m", source=(tmp_path / "x").as_uri(), tags=tags).version)

    def alias(name: str) -> str:
        return str(client.get_model_version_by_alias("m", name).version)

    first = champion_challenger_gate(client, "m", version(0.90), 0.90)
    assert first.promoted and first.reason == "no champion yet" and alias(CHAMPION) == "1"
    worse = champion_challenger_gate(client, "m", version(0.95), 0.95)
    assert not worse.promoted and worse.champion_version == "1" and worse.champion_value == 0.90
    assert alias(CHAMPION) == "1" and alias(CHALLENGER) == "2" and worse.same_holdout is True
    tie = champion_challenger_gate(client, "m", version(0.90), 0.90)
    assert not tie.promoted and alias(CHAMPION) == "1"  # equal is not better
    small = champion_challenger_gate(client, "m", version(0.899), 0.899, min_improvement=0.01)
    assert not small.promoted and alias(CHAMPION) == "1"
    better = champion_challenger_gate(client, "m", version(0.80, "v2"), 0.80)
    assert better.promoted and alias(CHAMPION) == "5" and better.same_holdout is False
    assert "different users" in better.reason
    tags = client.get_model_version("m", "5").tags
    assert tags["recsys.gate.promoted"] == "True" and tags["recsys.gate.champion_version"] == "1"
    forced = champion_challenger_gate(client, "m", version(0.99), 0.99, force=True)
    assert forced.promoted and alias(CHAMPION) == "6"


def test_pipeline_registers_and_gates_on_validation_mae(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_synthetic(make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=7), tmp_path / "data")
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "broken.toml").write_text(BROKEN)
    common = ["--dataset", "data", "--protocol", "random", "--registered-name", "synth", "--no-tune"]
    first = run(
        build_parser().parse_args(
            [
                *common,
                "--config",
                "tiny.toml",
                "--baselines",
                "item-mean,popularity",
                "--shots",
                "3",
                "--out",
                "run1",
            ]
        )
    )
    assert first.version == "1" and first.decision.promoted and first.decision.alias == CHAMPION
    assert (tmp_path / "run1" / "report" / "report.md").exists()
    second = run(
        build_parser().parse_args([*common, "--config", "broken.toml", "--skip-eval", "--out", "run2"])
    )
    assert second.model.summary.mae_adapted > first.model.summary.mae_adapted
    assert second.version == "2" and not second.decision.promoted and second.decision.alias == CHALLENGER
    assert second.decision.same_holdout is True  # same data, split and validation users
    out = capsys.readouterr().out
    assert "[gate] version 2 -> @challenger" in out and "does not beat champion v1" in out

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("synth", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("synth", CHALLENGER).version) == "2"
    run1, run2 = client.get_run(first.run_id), client.get_run(second.run_id)
    assert (
        run1.data.tags["recsys.gate.alias"] == CHAMPION and run2.data.tags["recsys.gate.promoted"] == "False"
    )
    assert float(run2.data.tags["recsys.gate.champion_value"]) == pytest.approx(
        first.model.summary.mae_adapted
    )
    assert (
        "eval/random/k3/meta-learner/mae" in run1.data.metrics
        and "eval/random/k3/popularity/recall_at_20" in run1.data.metrics
    )
    assert run1.data.params["features.item_fields"] and run1.data.tags["recsys.kind"] == "pipeline"
    files = {f.path for f in client.list_artifacts(first.run_id)} | {
        f.path for f in client.list_artifacts(first.run_id, "report")
    }
    assert {"gate.json", "report/report.json", "report/report.md"} <= files
    gate = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                f"runs:/{second.run_id}/gate.json", tracking_uri=client.tracking_uri
            )
        ).read_text()
    )
    assert gate["alias"] == CHALLENGER and gate["champion_version"] == "1"


def test_pipeline_help_explains_itself() -> None:
    text = build_parser().format_help()
    for flag in (
        "--dataset",
        "--config",
        "--protocol",
        "--registered-name",
        "--tracking-uri",
        "--min-improvement",
    ):
        assert flag in text
    assert "champion" in text
