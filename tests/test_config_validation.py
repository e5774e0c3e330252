"""Configs are validated when they are built (directly, from a dict or a file, by ``override``, from a
saved model): a bad value is one SpecError line naming the dotted key; mistyped names of baselines,
protocols, ablations and strategies fail before any data is loaded, and ``--help`` lists the valid
names (issue 16, item 4)."""

from __future__ import annotations

import json
import os
import shutil
import typing
from dataclasses import fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys import ColdStartRecommender
from recsys.cli import app, main
from recsys.config import LIMITS, HybridConfig, MetaConfig, ModelConfig, RecommenderConfig, TrainConfig
from recsys.errors import ModelFileError, SpecError
from recsys.evaluation.ablations import RESCORED_ABLATIONS, RETRAINED_ABLATIONS
from recsys.models.classical import BASELINES
from recsys.models.network import ColdStartNet
from recsys.onboarding import STRATEGIES
from recsys.utils.io import sha256_file

SECTIONS = {"model": ModelConfig, "model.hybrid": HybridConfig, "meta": MetaConfig, "train": TrainConfig}


def nested(key: str, value) -> dict:
    """``{"model": {"hybrid": {"trend": value}}}`` for ``model.hybrid.trend``."""
    *path, name = key.split(".")
    raw = {name: value}
    for part in reversed(path):
        raw = {part: raw}
    return raw


def build(key: str, value) -> RecommenderConfig:
    return RecommenderConfig.from_dict(nested(key, value))


# ---- values ------------------------------------------------------------------------------------

BAD_VALUES = [
    # the cases issue 16 names
    ("train.epochs", 0),
    ("train.epochs", -5),
    ("train.epochs", 1.5),
    ("train.lr", float("inf")),
    ("train.grad_clip", float("nan")),
    ("train.meta_batch_size", 0),
    ("train.lr", "fast"),
    ("train.device", "tpu"),
    ("model.embedding_dim", -3),
    ("model.head", "bogus"),
    ("model.head", "hybird"),
    ("train.weight_average", 2.0),
    ("meta.inner_steps", -1),
    ("model.hidden", [10**9]),
    # types
    ("train.epochs", "ten"),
    ("train.epochs", True),
    ("train.lr", True),
    ("train.seed", -1),
    ("train.seed", 2**64),
    ("model.use_item_id", "yes"),
    ("model.use_item_id", 1),
    ("model.pooling", "median"),
    ("model.hidden", "abc"),
    ("model.hidden", [8, "8"]),
    ("model.hidden", [8, 0]),
    ("model.hidden", [8] * 33),
    ("model.hidden", 8),
    ("train.device", 0),
    ("train.device", "cuda:x"),
    # every other range
    ("model.embedding_dim", 5000),
    ("model.factor_dim", 0),
    ("model.factor_dim", 10**6),
    ("model.item_id_min_count", 0),
    ("model.hybrid.item_item_max_items", -1),
    ("meta.inner_lr", -0.1),
    ("meta.inner_lr", float("nan")),
    ("meta.rating_weight", -1.0),
    ("meta.rank_weight", float("inf")),
    ("meta.rank_threshold", float("nan")),
    ("meta.eval_inner_steps", -1),
    ("meta.adapt", "everything"),
    ("meta.loss", "l1"),
    ("train.lr", 0.0),
    ("train.lr", -1e-3),
    ("train.lr", 10**400),
    ("train.weight_decay", -1.0),
    ("train.grad_clip", -1.0),
    ("train.weight_average", 1.0),
    ("train.weight_average", -0.1),
    ("train.support_min", 0),
    ("train.support_max", 0),
    ("train.query_size", 0),
    ("train.min_user_ratings", 0),
    ("train.validation_fraction", 1.0),
    ("train.validation_fraction", -0.1),
    ("train.validation_support", 0),
    ("train.validation_query", 0),
    ("train.patience", -1),
    ("train.max_tasks", 0),
    ("train.checkpoint_every", 0),
    ("train.max_nonfinite_steps", 0),
    ("train.num_threads", 0),
    ("train.select_metric", "recall@10"),
    ("train.grad_clip_scope", "local"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=[f"{k}={v!r}"[:40] for k, v in BAD_VALUES])
def test_a_bad_config_value_is_one_spec_error_line_naming_the_key(key, value) -> None:
    with pytest.raises(SpecError) as err:
        build(key, value)
    message = str(err.value)
    assert f"config key {key}" in message and "expected" in message
    assert "\n" not in message
    # the same through override (the CLI's path) and through a saved model's config
    with pytest.raises(SpecError, match=f"config key {key}"):
        RecommenderConfig().override(**{key: value})
    with pytest.raises(SpecError, match=f"config key {key}"):
        RecommenderConfig.from_saved(nested(key, value))


def test_epochs_ten_as_a_word_names_the_key_the_value_and_the_expectation() -> None:
    with pytest.raises(SpecError) as err:
        build("train.epochs", "ten")
    assert str(err.value) == "config key train.epochs: expected an integer >= 1, got 'ten'"


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(SpecError, match=r"train\.epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(SpecError, match=r"model\.head"):
        ModelConfig(head="bogus")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="config section meta"):
        RecommenderConfig(meta={"inner_steps": 2})  # type: ignore[arg-type]


def test_support_min_above_support_max_is_refused() -> None:
    with pytest.raises(SpecError, match=r"train\.support_min and train\.support_max.*7 > 3"):
        RecommenderConfig.from_dict({"train": {"support_min": 7, "support_max": 3}})


def test_rating_and_rank_weight_both_zero_is_refused() -> None:
    with pytest.raises(SpecError, match=r"meta\.rating_weight and meta\.rank_weight"):
        RecommenderConfig.from_dict({"meta": {"rating_weight": 0, "rank_weight": 0}})


def test_a_section_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(SpecError, match="config section train: expected an object"):
        RecommenderConfig.from_dict({"train": [1, 2]})
    with pytest.raises(SpecError, match="a config is an object"):
        RecommenderConfig.from_dict([{"train": {}}])  # type: ignore[arg-type]


def test_literal_choices_are_read_from_the_type_hints() -> None:
    hints = typing.get_type_hints(ModelConfig)
    with pytest.raises(SpecError) as err:
        build("model.pooling", "median")
    assert all(repr(choice) in str(err.value) for choice in typing.get_args(hints["pooling"]))


def test_every_numeric_field_has_a_declared_range() -> None:
    """A new int or float field must say its range in LIMITS (else it would only be type-checked)."""
    for name, klass in SECTIONS.items():
        hints = typing.get_type_hints(klass)
        for f in fields(klass):
            hint = hints[f.name]
            base = {a for a in typing.get_args(hint) if a is not type(None)} or {hint}
            if base & {int, float} or typing.get_origin(hint) is tuple:
                assert f.name in LIMITS[name], f"{name}.{f.name} has no range in LIMITS"


# ---- valid configs -----------------------------------------------------------------------------

VALID = [
    {},
    {"model": {"hidden": [8000, 8000], "embedding_dim": 4096, "factor_dim": 1}},
    {"model": {"hidden": [], "head": "melu", "pooling": "max"}, "meta": {"inner_steps": 5}},
    {"meta": {"rank_threshold": None, "rating_weight": 0.0, "eval_inner_steps": 0}},
    {"train": {"lr": 1, "weight_average": 0.999, "validation_fraction": 0.0, "device": "cuda:1"}},
    {"train": {"support_min": 5, "support_max": 5, "num_threads": 2, "validation_support": 3}},
    {"train": {"device": "mps", "grad_clip": 0, "patience": 0, "seed": 2**63 - 1}},
]


@pytest.mark.parametrize("raw", VALID, ids=range(len(VALID)))
def test_valid_configs_build_and_round_trip_through_json(raw) -> None:
    cfg = RecommenderConfig.from_dict(raw)
    assert isinstance(cfg.model.hidden, tuple)
    again = RecommenderConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.to_dict() == cfg.to_dict()


def test_the_default_config_round_trips_unchanged() -> None:
    cfg = RecommenderConfig()
    assert RecommenderConfig.from_dict(cfg.to_dict()).to_json() == cfg.to_json()
    assert cfg.to_dict()["model"]["hidden"] == [64, 64] and cfg.model.hidden == (64, 64)


def test_an_integer_in_a_number_field_is_kept_as_a_float() -> None:
    assert RecommenderConfig.from_dict({"train": {"lr": 1}}).train.lr == 1.0
    assert isinstance(RecommenderConfig.from_dict({"train": {"lr": 1}}).train.lr, float)


def test_implicit_feedback_override_with_no_rank_threshold_still_works() -> None:
    """``fit`` on a log without ratings overrides the config this way."""
    cfg = RecommenderConfig().override(
        **{"meta.rating_weight": 0.0, "meta.rank_threshold": None, "meta.rank_weight": 1.0}
    )
    assert cfg.meta.rank_threshold is None and cfg.meta.rating_weight == 0.0


def test_a_head_edited_after_the_config_was_built_is_refused_by_the_network() -> None:
    cfg = ModelConfig(embedding_dim=4, hidden=(8,))
    cfg.head = "hybird"  # type: ignore[assignment]
    with pytest.raises(SpecError, match=r"model\.head"):
        ColdStartNet(
            cfg,
            item_vocab=3,
            item_token_fields=1,
            item_dense=0,
            user_vocab=3,
            user_token_fields=1,
            user_dense=0,
        )


# ---- files ---------------------------------------------------------------------------------------


def test_infinity_and_nan_in_a_json_config_file_are_refused(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"train": {"lr": Infinity}}')
    with pytest.raises(
        SpecError, match=f"{path}: config key train.lr: expected a finite number > 0, got inf"
    ):
        RecommenderConfig.from_file(path)
    path.write_text('{"train": {"grad_clip": NaN}}')
    with pytest.raises(SpecError, match=r"config key train\.grad_clip"):
        RecommenderConfig.from_file(path)


def test_a_toml_config_file_with_a_bad_value_names_the_file_and_the_key(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[train]\nepochs = "ten"\n')
    with pytest.raises(SpecError, match=f"{path}: config key train.epochs"):
        RecommenderConfig.from_file(path)


def _file(name: str, content: str | bytes | None):
    """A maker of ``tmp/name`` holding ``content`` (None: a folder of that name)."""

    def make(tmp: Path) -> Path:
        path = tmp / name
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return make


FILE_CASES = {
    "a_json_list": (_file("c.json", "[1, 2]"), "got a JSON list"),
    "a_folder": (_file("c.json", None), "is a folder"),
    "not_utf8": (_file("c.json", b'{"train": {"device": "\xff"}}'), "not UTF-8"),
    "missing": (lambda tmp: tmp / "nope.json", "not found"),
    "over_1_mb": (_file("c.json", " " * 1_000_001 + "{}"), "byte limit"),
    "deeply_nested_json": (_file("c.json", "[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "deeply_nested_toml": (_file("c.toml", "a = " + "[" * 100_000), "cannot parse"),
    "unparsable": (_file("c.json", "{train: 1}"), "cannot parse"),
    "a_5001_digit_integer": (_file("c.json", '{"train": {"seed": ' + "9" * 5001 + "}}"), "cannot parse"),
    "a_section_that_is_a_string": (_file("c.json", '{"train": "fast"}'), "config section train"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_a_bad_config_file_is_one_spec_error_line_naming_the_file(tmp_path, case) -> None:
    make, words = FILE_CASES[case]
    path = make(tmp_path)
    with pytest.raises(SpecError, match=words) as err:
        RecommenderConfig.from_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_config_file_is_refused_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "c.json"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="not a regular file"):
        RecommenderConfig.from_file(fifo)


# ---- saved models -----------------------------------------------------------------------------


@pytest.fixture
def model(tmp_path) -> Path:
    from tests.test_reliability_inputs import tiny_model_dir

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir(), copy)
    return copy


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("model", "head", "bogus"),
        ("model", "hidden", [10**9]),
        ("train", "epochs", 0),
        ("train", "lr", "NaN"),
    ],
)
def test_a_saved_model_whose_config_is_invalid_is_a_model_file_error(model, section, key, value) -> None:
    config = json.loads((model / "config.json").read_text())
    config[section][key] = float(value) if value == "NaN" else value
    (model / "config.json").write_text(json.dumps(config))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"]["config.json"] = sha256_file(model / "config.json")  # checksums recomputed
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=f"config key {section}.{key}"):
        ColdStartRecommender.load(model)


# ---- the command line -------------------------------------------------------------------------


def run_main(*args: str, capsys) -> tuple[int, str]:
    """``recsys ARGS`` in this process: (exit status, stderr + stdout)."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return (code or 0) if not isinstance(code, str) else 1, captured.err + captured.out


@pytest.mark.parametrize("epochs", ["0", "-5"])
def test_train_with_epochs_0_or_negative_exits_2_before_loading_data(tmp_path, capsys, epochs) -> None:
    log = tmp_path / "no-such-log.csv"  # loading it would be another error
    code, out = run_main(
        "train",
        "--interactions",
        str(log),
        "--out",
        str(tmp_path / "m"),
        "--epochs",
        epochs,
        "--no-mlflow",
        capsys=capsys,
    )
    assert code == 2
    assert out.strip() == f"error: config key train.epochs: expected an integer >= 1, got {epochs}"
    assert not (tmp_path / "m").exists()


def test_train_with_a_config_that_is_a_list_exits_2_before_loading_data(tmp_path, capsys) -> None:
    config = tmp_path / "c.json"
    config.write_text("[]")
    code, out = run_main(
        "train",
        "--interactions",
        str(tmp_path / "no-such-log.csv"),
        "--config",
        str(config),
        "--no-mlflow",
        "--out",
        str(tmp_path / "m"),
        capsys=capsys,
    )
    assert code == 2 and out.count("\n") == 1 and str(config) in out and "no-such-log" not in out


def test_evaluate_with_an_unknown_baseline_fails_before_loading_the_dataset(tmp_path, capsys) -> None:
    missing = str(tmp_path / "no-such-dataset")
    code, out = run_main(
        "evaluate", "--dataset", missing, "--baselines", "ease,foo", "--no-mlflow", capsys=capsys
    )
    assert code == 2 and out.count("\n") == 1
    assert "--baselines: unknown baseline(s) 'foo'" in out
    assert all(name in out for name in BASELINES)
    assert "no-such-dataset" not in out  # the dataset was never looked at


def test_evaluate_with_an_unknown_protocol_fails_before_loading_the_dataset(tmp_path, capsys) -> None:
    missing = str(tmp_path / "no-such-dataset")
    code, out = run_main(
        "evaluate", "--dataset", missing, "--protocol", "temporal,none", "--no-mlflow", capsys=capsys
    )
    assert code == 2 and "--protocol: unknown protocol(s) 'none'" in out and "melu" in out
    assert "no-such-dataset" not in out


def test_evaluate_with_an_unknown_ablation_still_fails_before_loading_the_dataset(tmp_path, capsys) -> None:
    code, out = run_main(
        "evaluate", "--dataset", str(tmp_path / "nope"), "--ablations", "5-step", "--no-mlflow", capsys=capsys
    )
    assert code == 2 and "unknown ablation(s) '5-step'" in out and "nope" not in out


@pytest.mark.parametrize("shots", ["3,a", "0", ""])
def test_evaluate_with_bad_shots_fails_before_loading_the_dataset(tmp_path, capsys, shots) -> None:
    code, out = run_main(
        "evaluate", "--dataset", str(tmp_path / "nope"), "--shots", shots, "--no-mlflow", capsys=capsys
    )
    assert code == 2 and "--shots: expected comma-separated positive integers" in out and "nope" not in out


def test_evaluate_with_an_invalid_config_fails_before_loading_the_dataset(tmp_path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[train]\nmeta_batch_size = 0\n")
    code, out = run_main(
        "evaluate", "--dataset", str(tmp_path / "nope"), "--config", str(config), "--no-mlflow", capsys=capsys
    )
    assert code == 2 and "config key train.meta_batch_size" in out and "nope" not in out


def test_onboard_with_an_unknown_strategy_fails_before_loading_the_model(tmp_path, capsys) -> None:
    code, out = run_main(
        "onboard", "--model", str(tmp_path / "no-model"), "--strategy", "greedy", capsys=capsys
    )
    assert code == 2 and "--strategy: unknown strategy 'greedy'" in out and "no-model" not in out
    assert all(name in out for name in STRATEGIES)


def test_evaluate_onboarding_with_unknown_names_fails_before_loading_the_dataset(tmp_path, capsys) -> None:
    missing = str(tmp_path / "no-such-dataset")
    code, out = run_main(
        "evaluate-onboarding", "--dataset", missing, "--strategies", "evidence,greedy", capsys=capsys
    )
    assert (
        code == 2 and "--strategies: unknown strategy(ies) 'greedy'" in out and "no-such-dataset" not in out
    )
    code, out = run_main("evaluate-onboarding", "--dataset", missing, "--protocol", "none", capsys=capsys)
    assert code == 2 and "--protocol: unknown protocol 'none'" in out and "no-such-dataset" not in out


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("evaluate", [*BASELINES, *RESCORED_ABLATIONS, *RETRAINED_ABLATIONS, "temporal", "random", "melu"]),
        ("onboard", list(STRATEGIES)),
        ("evaluate-onboarding", [*STRATEGIES, "temporal", "random", "melu"]),
    ],
)
def test_help_lists_the_valid_names_from_the_code_tables(command, names) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert result.exit_code == 0
    assert "{names:" not in result.output
    missing = [n for n in names if n not in result.output]
    assert not missing, f"--help of {command} does not list {missing}"
