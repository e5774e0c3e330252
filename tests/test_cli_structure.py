"""The command line's shape (issue 17, "a slimmer CLI"): the shared option groups (data source,
tracking, config) are defined once and reach every command that takes them identically, the commands
receive them built, the pipeline builds its config with the CLI's helper, ``recsys --help`` stays
light, and the CLI and config packages stay small."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from recsys.cli import app
from recsys.cli.options import ConfigOptions, DataSource, Tracking, expand_option_groups
from recsys.cli.runtime import command
from recsys.config import RecommenderConfig

REPO = Path(__file__).resolve().parents[1]


def _options(*path: str) -> dict[str, tuple]:
    """Each option of a command by its parameter name: (flags, negative flags, help, default)."""
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {p.name: (tuple(p.opts), tuple(p.secondary_opts), p.help, p.default) for p in cmd.params}


def _group_names(group: type) -> list[str]:
    return [f.name for f in dataclasses.fields(group)]


@pytest.mark.parametrize("group", [DataSource, Tracking])
def test_the_data_source_and_tracking_options_are_the_same_in_train_and_evaluate(group: type) -> None:
    train, evaluate = _options("train"), _options("evaluate")
    for name in _group_names(group):
        assert train[name] == evaluate[name], name
    # the options appear in the group's order, one after the other
    listed = [n for n in train if n in _group_names(group)]
    assert listed == _group_names(group)


def test_the_column_options_of_data_stats_are_the_data_source_ones() -> None:
    stats, train = _options("data", "stats"), _options("train")
    for name in ("user_col", "item_col", "rating_col", "time_col", "implicit"):
        assert stats[name] == train[name], name


def test_train_takes_the_config_group_and_evaluate_only_its_config_file() -> None:
    train, evaluate = _options("train"), _options("evaluate")
    assert set(_group_names(ConfigOptions)) <= set(train)
    assert evaluate["config"] == train["config"]
    assert not {"epochs", "device"} & set(evaluate)


def test_a_command_receives_its_option_groups_built_from_the_flags() -> None:
    seen: dict = {}

    def probe(source: DataSource, tracking: Tracking, n: int = 1) -> None:
        seen.update(source=source, tracking=tracking, n=n)

    probe_app = typer.Typer()
    probe_app.command("probe")(command(probe))
    probe_app.command("other")(command(lambda: None))
    args = ["probe", "--dataset", "ml-100k", "--implicit", "--no-mlflow", "--run-name", "r1", "--n", "3"]
    result = CliRunner().invoke(probe_app, args)
    assert result.exit_code == 0, result.output
    assert seen["source"] == DataSource(dataset="ml-100k", implicit=True)
    assert seen["tracking"] == Tracking(mlflow=False, run_name="r1")
    assert seen["n"] == 3


def test_an_option_group_whose_flag_repeats_a_parameter_is_refused() -> None:
    def clash(dataset: str, source: DataSource) -> None:  # --dataset twice
        pass

    with pytest.raises(TypeError, match="repeats a parameter name"):
        expand_option_groups(clash)


def test_the_pipeline_builds_its_config_with_the_shared_helper(tmp_path: Path, monkeypatch) -> None:
    from pipelines.train_and_register import build_parser, run
    from recsys.data.synthetic import make_synthetic, write_synthetic

    write_synthetic(make_synthetic(n_users=30, n_items=20, n_interactions=300, seed=3), tmp_path / "data")
    calls: list = []

    def spy(config_file=None, **overrides):
        calls.append((config_file, overrides))
        raise RuntimeError("stop after the config")

    monkeypatch.setattr("recsys.workflows.build_config", spy)
    args = build_parser().parse_args(["--dataset", str(tmp_path / "data"), "--epochs", "2", "--seed", "5"])
    with pytest.raises(RuntimeError, match="stop after the config"):
        run(args, echo=lambda *_: None)
    assert calls == [(None, {"epochs": 2, "seed": 5})]


def test_build_config_overrides_only_the_training_keys_given(tmp_path: Path) -> None:
    from recsys.workflows import build_config

    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 7\nlr = 0.01\n")
    cfg = build_config(path, seed=4, device="cpu")
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.seed) == (7, 0.01, 4)
    # epochs given: exactly those are planned, so the task budget (train.max_tasks) is lifted with them
    expected = RecommenderConfig.from_file(path).replace(train={"epochs": 2, "max_tasks": None})
    assert build_config(path, epochs=2) == expected
    assert build_config() == RecommenderConfig()


def test_recsys_help_imports_neither_torch_polars_nor_mlflow() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "recsys", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0 and "train" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "typer" in imported  # the detector reads the import log
    assert not {"torch", "polars", "mlflow"} & imported


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("package", ["cli", "config"])
def test_the_cli_and_config_packages_have_small_files_and_short_functions(package: str) -> None:
    files = sorted((REPO / "recsys" / package).glob("*.py"))
    assert len(files) >= 4
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= 500, path
        for fn in _functions(ast.parse(text)):
            assert fn.end_lineno - fn.lineno < 80, f"{path}:{fn.lineno} {fn.name}"
