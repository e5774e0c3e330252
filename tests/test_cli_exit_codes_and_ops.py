"""Issue 16, items 3, 6 and 9: exit codes a scheduler can trust, operations on --out, feedback.

Exit status: 0 on success, 2 for a usage or data error (one line), 1 for an unexpected failure (one
line, the traceback only with -v) or a command that reports failure (tracking calls left unsent).
Most commands run in this process (``tests.mlflow_servers.cli``: no interpreter start-up); the
``--nproc`` and lock cases run real processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from recsys.data.synthetic import make_synthetic, write_synthetic
from recsys.recommender import ColdStartRecommender
from recsys.utils.io import LOCK_NAME, FolderLock
from tests.conftest import write
from tests.mlflow_servers import cli
from tests.test_download_and_cli import REPO, run_cli

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8]},
    "train": {"epochs": 1, "meta_batch_size": 16, "num_threads": 1},
}
TINY_TOML = "[model]\nembedding_dim = 4\nhidden = [8]\n[train]\nmeta_batch_size = 16\nnum_threads = 1\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3)
    return ColdStartRecommender(TINY).fit_dataset(ds).save(tmp_path_factory.mktemp("ops") / "model")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> tuple[Path, Path]:
    """A small synthetic dataset folder and a tiny config, for `recsys train --epochs 1`."""
    tmp = tmp_path_factory.mktemp("ops-data")
    data = write_synthetic(make_synthetic(n_users=80, n_items=40, n_interactions=1600, seed=4), tmp / "data")
    return data, write(tmp / "tiny.toml", TINY_TOML)


@pytest.fixture
def bad_log(tmp_path: Path) -> Path:
    return write(tmp_path / "bad.csv", "user_id,item_id,rating\n1,2,x\n")


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# ---- exit codes, command by command ----------------------------------------------------------------


def test_train_on_bad_data_exits_2_with_one_line(capsys, tmp_path: Path, bad_log: Path) -> None:
    proc = cli(capsys, "train", "--interactions", str(bad_log), "--out", str(tmp_path / "m"), "--no-mlflow")
    assert proc.returncode == 2
    assert "line 2" in one_error_line(proc.stderr)


def test_train_with_nproc_2_exits_non_zero_when_the_workers_fail(tmp_path: Path, bad_log: Path) -> None:
    """Regression: the parent's `typer.Exit(torchrun's status)` was dropped by main(): exit 0."""
    proc = run_cli(
        "train",
        "--nproc",
        "2",
        "--interactions",
        str(bad_log),
        "--out",
        str(tmp_path / "m"),
        "--no-mlflow",
        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "line 2" in proc.stderr  # the workers' own one-line error
    assert not (tmp_path / "m" / LOCK_NAME).exists()


def test_recommend_unknown_item_names_the_cli_flag_not_the_python_argument(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    ratings = write(tmp_path / "r.json", json.dumps({"424242": 5}))
    proc = cli(capsys, "recommend", "--model", str(model_dir), "--ratings", str(ratings))
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "--ignore-unknown" in line and "424242" in line
    assert "on_unknown" not in line and "user 0" not in line


def test_recommend_bad_ratings_file_exits_2(capsys, model_dir: Path, tmp_path: Path) -> None:
    ratings = write(tmp_path / "r.json", "{not json")
    proc = cli(capsys, "recommend", "--model", str(model_dir), "--ratings", str(ratings))
    assert proc.returncode == 2 and "invalid JSON" in one_error_line(proc.stderr)


def test_recommend_batch_unknown_items_exit_2_naming_the_cli_flag(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    table = tmp_path / "in.csv"
    pl.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "424242"], "rating": [5.0, 4.0]}).write_csv(table)
    out = tmp_path / "recs.parquet"
    proc = cli(
        capsys, "recommend-batch", "--model", str(model_dir), "--ratings", str(table), "--out", str(out)
    )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "--ignore-unknown" in line and "on_unknown" not in line and not out.exists()


def test_recommend_batch_missing_ratings_exits_2(capsys, model_dir: Path, tmp_path: Path) -> None:
    proc = cli(
        capsys,
        "recommend-batch",
        "--model",
        str(model_dir),
        "--ratings",
        str(tmp_path / "nope.csv"),
        "--out",
        str(tmp_path / "o.csv"),
    )
    assert proc.returncode == 2 and "file not found" in one_error_line(proc.stderr)


def test_evaluate_on_bad_data_exits_2(capsys, tmp_path: Path, bad_log: Path) -> None:
    proc = cli(
        capsys, "evaluate", "--interactions", str(bad_log), "--out", str(tmp_path / "r"), "--no-mlflow"
    )
    assert proc.returncode == 2 and "line 2" in one_error_line(proc.stderr)


def test_onboard_with_a_missing_model_exits_2(capsys, tmp_path: Path) -> None:
    proc = cli(capsys, "onboard", "--model", str(tmp_path / "no-model"))
    assert proc.returncode == 2 and "not found" in one_error_line(proc.stderr)


def test_data_stats_on_bad_data_exits_2(capsys, bad_log: Path) -> None:
    proc = cli(capsys, "data", "stats", str(bad_log))
    assert proc.returncode == 2 and "line 2" in one_error_line(proc.stderr)


def test_data_download_of_an_unknown_dataset_exits_2(capsys, tmp_path: Path) -> None:
    proc = cli(capsys, "data", "download", "ml-7b", "--dir", str(tmp_path))
    assert proc.returncode == 2 and "ml-7b" in one_error_line(proc.stderr)


def test_tracking_sync_with_calls_left_exits_1(capsys, tmp_path: Path) -> None:
    """Regression: `raise typer.Exit(1)` with calls left unsent ended with status 0."""
    run = tmp_path / "spool" / "run-1"
    write(run / "run.json", json.dumps({"tracking_uri": "http://127.0.0.1:9", "run_id": "run-1"}))
    write(run / "journal.jsonl", json.dumps({"op": "tags", "tags": {"a": "b"}}) + "\n")
    proc = cli(capsys, "tracking", "sync", str(tmp_path / "spool"))
    assert proc.returncode == 1
    assert "1 left" in proc.stdout and "server unreachable" in proc.stdout
    assert (run / "journal.jsonl").exists()  # kept for the next try


def test_tracking_sync_with_nothing_to_send_exits_0(capsys, tmp_path: Path) -> None:
    proc = cli(capsys, "tracking", "sync", str(tmp_path / "empty"))
    assert proc.returncode == 0 and "nothing to send" in proc.stdout


def test_tracking_promote_of_an_unknown_model_exits_2(capsys, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'reg.db'}"
    proc = cli(capsys, "tracking", "promote", "no-such-model", "1", "--tracking-uri", uri)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # (MLflow logs its own INFO lines when it creates the store; ours is the last line)
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: cannot set alias champion of no-such-model")
    )


def test_usage_error_after_the_subcommand_exits_2(capsys) -> None:
    proc = cli(capsys, "train", "--epochs", "many")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_unexpected_failure_exits_1_with_one_line_and_how_to_get_the_traceback(
    capsys, monkeypatch, tiny_log: Path
) -> None:
    def boom(stats):
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr("recsys.cli.data.format_stats", boom)
    proc = cli(capsys, "data", "stats", str(tiny_log))
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert line.startswith("error: unexpected ZeroDivisionError: planted bug") and "-v" in line


@pytest.mark.parametrize("where", ["before", "after"])
def test_unexpected_failure_shows_the_traceback_with_v_before_or_after_the_command(
    capsys, monkeypatch, tiny_log: Path, where: str
) -> None:
    def boom(stats):
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr("recsys.cli.data.format_stats", boom)
    args = ["data", "stats", str(tiny_log)]
    proc = cli(capsys, *(["-v", *args] if where == "before" else [*args, "-v"]))
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "boom" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: unexpected ZeroDivisionError: planted bug"


def test_verbose_is_accepted_after_the_subcommand(capsys, tiny_log: Path) -> None:
    """Regression: `recsys train -v` was "No such option: -v"."""
    for args in (["data", "stats", str(tiny_log), "-v"], ["data", "--verbose", "stats", str(tiny_log)]):
        proc = cli(capsys, *args)
        assert proc.returncode == 0 and "interactions   48" in proc.stdout, args
    assert cli(capsys, "train", "--help").stdout.count("--verbose") == 1


def test_an_option_value_equal_to_v_stays_a_value(capsys, model_dir: Path) -> None:
    proc = cli(capsys, "recommend", "--model", str(model_dir), "--ratings", "-v")
    assert proc.returncode == 2 and "-v: ratings file not found" in one_error_line(proc.stderr)


# ---- feedback: one line per epoch on stderr -------------------------------------------------------------


def test_train_prints_one_progress_line_per_epoch_on_stderr(capsys, small_data, tmp_path: Path) -> None:
    data, config = small_data
    out = tmp_path / "m"
    proc = cli(
        capsys,
        "train",
        "--dataset",
        str(data),
        "--config",
        str(config),
        "--epochs",
        "1",
        "--protocol",
        "random",
        "--out",
        str(out),
        "--no-mlflow",
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 1
    assert (
        lines[0].startswith("epoch 1/1, train_loss ") and "val_mae " in lines[0] and lines[0].endswith(" s")
    )
    # success: the lock is released and no temporary file is left
    assert (out / "model.safetensors").exists() and not (out / LOCK_NAME).exists()
    assert not list(out.glob(".*.tmp"))


# ---- operations: --out -----------------------------------------------------------------------------


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from recsys.utils.io import FolderLock; "
        "FolderLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_train_into_the_same_out_fails_at_once_naming_the_other_pid(capsys, tmp_path: Path) -> None:
    """Regression: the second run deleted the first one's temporary checkpoint and crashed it."""
    out = tmp_path / "m"
    out.mkdir()
    planted = write(out / ".checkpoint.safetensors.abc123.tmp", "the first run's half-written checkpoint")
    holder = _hold_lock(out)
    try:
        proc = cli(
            capsys,
            "train",
            "--interactions",
            str(tmp_path / "not-read.csv"),
            "--out",
            str(out),
            "--no-mlflow",
        )
        line = one_error_line(proc.stderr)
        assert proc.returncode == 2
        assert f"is in use by another training run (pid {holder.pid})" in line
        assert "not-read.csv" not in line  # refused before touching the data
        assert planted.exists()  # the first run's files are left alone
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed: its lock went with it, the next run takes the folder over
    lock = FolderLock(out).acquire()
    lock.release()


def test_train_cleans_stale_temp_files_in_out_on_start_and_on_a_failing_exit(
    capsys, tmp_path: Path, bad_log: Path
) -> None:
    out = tmp_path / "m"
    planted = write(out / ".model.safetensors.dead01.tmp", "left by a killed run")
    proc = cli(capsys, "train", "--interactions", str(bad_log), "--out", str(out), "--no-mlflow")
    assert proc.returncode == 2
    assert not planted.exists() and not (out / LOCK_NAME).exists()


def test_train_interrupted_leaves_no_temp_files_and_no_lock(
    capsys, monkeypatch, small_data, tmp_path
) -> None:
    data, config = small_data
    out = tmp_path / "m"

    def interrupted(*args, **kwargs):
        write(out / ".checkpoint.safetensors.xyz.tmp", "half")  # a write in progress when Ctrl-C lands
        raise KeyboardInterrupt

    monkeypatch.setattr("recsys.workflows.train_model", interrupted)
    proc = cli(
        capsys, "train", "--dataset", str(data), "--config", str(config), "--out", str(out), "--no-mlflow"
    )
    assert proc.returncode == 130
    assert not list(out.glob(".*.tmp")) and not (out / LOCK_NAME).exists()


def test_train_out_that_is_a_file_is_one_line_before_loading_data(capsys, tmp_path: Path) -> None:
    out = write(tmp_path / "model", "a file")
    proc = cli(
        capsys, "train", "--interactions", str(tmp_path / "not-read.csv"), "--out", str(out), "--no-mlflow"
    )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "--out" in line and "is a file" in line and "not-read.csv" not in line


def test_train_out_that_cannot_be_created_is_one_line_before_loading_data(capsys, tmp_path: Path) -> None:
    blocker = write(tmp_path / "file", "x")
    out = blocker / "model"  # under a file: cannot be created (works as root too, unlike chmod)
    proc = cli(
        capsys, "train", "--interactions", str(tmp_path / "not-read.csv"), "--out", str(out), "--no-mlflow"
    )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "--out" in line and "cannot create" in line and "not-read.csv" not in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_train_out_not_writable_is_one_line(capsys, tmp_path: Path) -> None:  # pragma: no cover - root CI
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        proc = cli(
            capsys, "train", "--interactions", str(tmp_path / "x.csv"), "--out", str(out), "--no-mlflow"
        )
    finally:
        out.chmod(0o700)
    assert proc.returncode == 2 and "not writable" in one_error_line(proc.stderr)


# ---- operations: recommend-batch output ------------------------------------------------------------


def _batch_input(tmp_path: Path) -> Path:
    table = tmp_path / "in.csv"
    pl.DataFrame(
        {"user_id": ["a", "a", "b"], "item_id": ["1", "2", "3"], "rating": [5.0, 3.0, 4.0]}
    ).write_csv(table)
    return table


def test_recommend_batch_removes_a_stale_temp_of_the_same_output_on_start(
    capsys, model_dir: Path, tmp_path: Path
) -> None:
    """A SIGKILLed run cannot clean up: the next run writing the same output does."""
    out = tmp_path / "recs.parquet"
    stale = write(tmp_path / ".recs.parquet.k1ll3d.tmp", "half-written")
    other = write(tmp_path / ".other.parquet.k1ll3d.tmp", "another output's")
    proc = cli(
        capsys,
        "recommend-batch",
        "--model",
        str(model_dir),
        "--ratings",
        str(_batch_input(tmp_path)),
        "--out",
        str(out),
        "-n",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    assert pl.read_parquet(out).height == 6
    assert not stale.exists() and other.exists()


def test_recommend_batch_interrupted_while_writing_leaves_no_temp(
    capsys, monkeypatch, model_dir: Path, tmp_path: Path
) -> None:
    def interrupted(self, fh, *args, **kwargs):
        fh.write(b"PAR1 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.DataFrame, "write_parquet", interrupted)
    out = tmp_path / "recs.parquet"
    proc = cli(
        capsys,
        "recommend-batch",
        "--model",
        str(model_dir),
        "--ratings",
        str(_batch_input(tmp_path)),
        "--out",
        str(out),
    )
    assert proc.returncode == 130
    assert not out.exists() and not list(tmp_path.glob(".recs.parquet.*.tmp"))


def test_recommend_batch_out_that_is_a_folder_is_one_line_before_scoring(capsys, model_dir, tmp_path) -> None:
    proc = cli(
        capsys,
        "recommend-batch",
        "--model",
        str(model_dir),
        "--ratings",
        str(tmp_path / "nope.csv"),
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "is a folder" in line and "nope.csv" not in line


# ---- the promotion gate -----------------------------------------------------------------------------


class _Version:
    def __init__(self, version: str, value: float | None) -> None:
        self.version, self.run_id = version, None
        self.tags = (
            {} if value is None else {"recsys.val_mae_adapted": repr(value), "recsys.validation_set": "v"}
        )


class _Registry:
    """Just enough of MlflowClient for the gate."""

    def __init__(self, champion: _Version, challenger: _Version) -> None:
        self.versions = {champion.version: champion, challenger.version: challenger}
        self.aliases = {"champion": champion.version}

    def get_model_version_by_alias(self, name, alias):
        return self.versions[self.aliases[alias]]

    def get_model_version(self, name, version):
        return self.versions[str(version)]

    def set_registered_model_alias(self, name, alias, version):
        self.aliases[alias] = str(version)

    def set_model_version_tag(self, name, version, key, value):
        self.versions[str(version)].tags[key] = value


def test_gate_does_not_promote_on_a_difference_within_the_stated_tolerance() -> None:
    """Regression: printed `0.8203 < champion v1 0.8203` and promoted on a 1e-9 difference."""
    from recsys.tracking.registry import GATE_RELATIVE_TOLERANCE, champion_challenger_gate

    assert 0 < GATE_RELATIVE_TOLERANCE <= 1e-3
    reg = _Registry(_Version("1", 0.8203), _Version("2", 0.8203 - 1e-9))
    decision = champion_challenger_gate(reg, "m", "2", 0.8203 - 1e-9)
    assert not decision.promoted and reg.aliases == {"champion": "1", "challenger": "2"}
    assert "does not beat champion v1" in decision.reason
    mine, champ = re.match(
        r"val_mae_adapted (\S+) does not beat champion v1 (\S+) ", decision.reason
    ).groups()
    assert mine != champ and float(mine) < float(champ), decision.reason  # enough digits to tell them apart
    assert f"{GATE_RELATIVE_TOLERANCE * 0.8203:.3g}" in decision.reason  # the margin it needed


def test_gate_promotes_beyond_the_tolerance_and_prints_both_values_apart() -> None:
    from recsys.tracking.registry import champion_challenger_gate

    reg = _Registry(_Version("1", 0.82031), _Version("2", 0.82020))
    decision = champion_challenger_gate(reg, "m", "2", 0.82020)
    assert decision.promoted and reg.aliases["champion"] == "2"
    assert decision.reason.startswith("val_mae_adapted 0.8202 < champion v1 0.8203 (better by 0.00011 > ")


# ---- the README's registry examples match what `make demo` registers ----------------------------------------


def test_readme_registry_examples_use_what_make_demo_registers() -> None:
    from pipelines.demo import REGISTERED_NAME

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Registry", 1)[1].split("\n### ", 1)[0]
    section = "".join(re.findall(r"```\w*\n(.*?)```", section, flags=re.S))  # the examples
    names = set(re.findall(r"models:/([\w.-]+)[@/]", section))
    names |= set(re.findall(r"tracking promote ([\w.-]+) ", section))
    names |= set(re.findall(r"--register ([\w.-]+)", section))
    assert names == {REGISTERED_NAME}
    # a first `make demo` creates version 1 and aliases it champion: the examples use only those
    assert set(re.findall(rf"models:/{REGISTERED_NAME}/(\d+)", section)) <= {"1"}
    assert set(re.findall(rf"tracking promote {REGISTERED_NAME} (\d+)", section)) <= {"1"}
    assert set(re.findall(rf"models:/{REGISTERED_NAME}@(\w+)", section)) <= {"champion"}
    assert "> me.json" in section  # the ratings file the examples read is created there


def test_a_stale_lock_file_left_by_a_killed_holder_does_not_block(tmp_path: Path) -> None:
    write(tmp_path / LOCK_NAME, "999999\n")  # no process holds it
    lock = FolderLock(tmp_path).acquire()
    try:
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_is_exclusive_within_and_across_processes(tmp_path: Path) -> None:
    from recsys.errors import RecsysError

    first = FolderLock(tmp_path).acquire()
    try:
        with pytest.raises(RecsysError, match=rf"in use by another training run \(pid {os.getpid()}\)"):
            FolderLock(tmp_path).acquire()
    finally:
        first.release()
    FolderLock(tmp_path).acquire().release()  # released: free again
