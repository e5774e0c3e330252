"""`recsys train` and `recsys recommend` end to end on a small synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys.data.synthetic import make_synthetic, write_synthetic
from tests.test_download_and_cli import run_cli


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    data = write_synthetic(make_synthetic(n_users=200, n_items=80, n_interactions=5000, seed=2), tmp / "data")
    config = tmp / "fast.toml"
    config.write_text("[model]\nembedding_dim = 8\nhidden = [16]\n[train]\nmeta_batch_size = 16\n")
    out = tmp / "model"
    proc = run_cli(
        "train",
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--config",
        str(config),
        "--protocol",
        "random",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "MAE adapted" in proc.stdout and "MAE no adaptation" in proc.stdout and "MAE item mean" in proc.stdout
    )
    return out, tmp


def test_train_writes_a_loadable_model(trained_model) -> None:
    out, _ = trained_model
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"config.json", "features.json", "model.safetensors"}
    hist = json.loads((out / "history.json").read_text())
    assert (
        hist["info"]["holdout"]["protocol"] == "random"
        and hist["info"]["holdout"]["test_users"]["new_users"] == 40
    )


def test_recommend_prints_json_with_titles(trained_model) -> None:
    out, tmp = trained_model
    ratings = tmp / "r.json"
    ratings.write_text(json.dumps({"ratings": {"1": 5, "2": 4, "3": 1}, "user_features": {"gender": "F"}}))
    proc = run_cli("recommend", "--model", str(out), "--ratings", str(ratings), "-n", "4")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert (
        len(rows) == 4
        and rows[0]["title"].startswith("Item ")
        and {r["item_id"] for r in rows}.isdisjoint({1, 2, 3})
    )


def test_recommend_unknown_item_is_a_clear_error(trained_model) -> None:
    out, tmp = trained_model
    ratings = tmp / "bad.json"
    ratings.write_text(json.dumps({"424242": 5}))
    proc = run_cli("recommend", "--model", str(out), "--ratings", str(ratings))
    assert proc.returncode == 2 and "unknown item" in proc.stderr and "Traceback" not in proc.stderr
    ok = run_cli("recommend", "--model", str(out), "--ratings", str(ratings), "--ignore-unknown", "-n", "2")
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == 2


def test_resume_flag_continues_a_finished_run(trained_model) -> None:
    """Resuming a finished run trains no further: the same history, best epoch and weights."""
    from safetensors.numpy import load_file

    out, tmp = trained_model
    assert (out / "checkpoint.safetensors").exists()
    before = json.loads((out / "history.json").read_text())
    weights = load_file(out / "model.safetensors")
    proc = run_cli(
        "train",
        "--dataset",
        str(tmp / "data"),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--config",
        str(tmp / "fast.toml"),
        "--protocol",
        "random",
        "--resume",
    )
    assert proc.returncode == 0, proc.stderr
    after = json.loads((out / "history.json").read_text())
    assert len(after["history"]) == len(before["history"]) == 2
    # every entry unchanged, its recorded epoch duration included: no epoch ran again
    assert after["history"] == before["history"]
    assert after["summary"]["best_epoch"] == before["summary"]["best_epoch"]
    again = load_file(out / "model.safetensors")
    assert again.keys() == weights.keys()
    for name, value in weights.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)


@pytest.mark.parametrize("cmd", [["train"], ["recommend"]])
def test_help(cmd) -> None:
    proc = run_cli(*cmd, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout
