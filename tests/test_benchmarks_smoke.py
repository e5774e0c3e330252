"""Smoke runs of the scale and start-up benchmarks at a tiny size: they run end to end and write every
figure they promise (the figures' values are the benchmarks' business, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import large_logs, scale_scoring, scale_training, startup


@pytest.mark.slow
def test_scale_training_at_a_tiny_scale_writes_every_figure_of_each_run_with_one_and_two_processes(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(large_logs, "CACHE", tmp_path / "cache")
    out = tmp_path / "scale.json"
    argv = ["--log", "synthetic-25m", "--scale", "0.0005", "--epochs", "1", "--nproc", "1,2"]
    scale_training.main([*argv, "--out", str(out), "--work", str(tmp_path / "work")])
    figures = json.loads(out.read_text())
    assert {"epochs", "scale", "budget_min", "load_average", "cpus", "runs"} <= figures.keys()
    assert [r["nproc"] for r in figures["runs"]] == [1, 2]
    for run in figures["runs"]:
        assert set(scale_training.RUN_KEYS) <= run.keys()
        assert set(run["phases_s"]) == set(scale_training.PHASES)
        assert run["completed"], run.get("error")
        assert all(run["phases_s"][k] is not None for k in ("ingest", "als_start", "meta_training", "save"))
        assert run["epochs_run"] == 1 and run["validation_curve"][0]["epoch"] == 1


def test_scale_training_skips_gowalla_with_a_message_when_it_is_absent(monkeypatch, capsys) -> None:
    monkeypatch.setattr(scale_training, "find_data_root", lambda name: None)
    assert scale_training.gowalla_log(1.0) is None
    assert "gowalla: not found" in capsys.readouterr().out


@pytest.mark.slow
def test_startup_with_one_repeat_writes_every_figure(tmp_path) -> None:
    out = tmp_path / "startup.json"
    startup.main(["--data", "synthetic", "--repeats", "1", "--out", str(out)])
    figures = json.loads(out.read_text())
    (rev,) = figures["revisions"]
    assert set(startup.KEYS) <= rev.keys()
    for key in ("importtime_folder", "importtime_uri"):
        assert 0 < len(rev[key]) <= 10
        assert all({"module", "cumulative_s", "self_s"} <= row.keys() for row in rev[key])


def test_importtime_report_is_ranked_by_cumulative_time() -> None:
    report = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |   small\n"
        "import time:      2000 |       9000 | big\n"
        "import time:      2000 |       3000 |     middle\n"
        "some other line\n"
    )
    rows = startup.parse_importtime(report, top=2)
    assert [r["module"] for r in rows] == ["big", "middle"]
    assert rows[0] == {"module": "big", "cumulative_s": 0.009, "self_s": 0.002}


@pytest.mark.slow
def test_scale_scoring_on_a_small_catalogue_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "scoring.json"
    scale_scoring.main(["--items", "300", "--requests", "5", "--validation-users", "20", "--out", str(out)])
    (cat,) = json.loads(out.read_text())["catalogues"]
    assert set(scale_scoring.KEYS) <= cat.keys()
    assert cat["n_items"] == 300
