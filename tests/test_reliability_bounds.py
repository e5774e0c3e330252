"""Model, checkpoint and input files are read within bounds (issue 16, item 5): size caps before any
JSON is parsed, nesting checked before parsing, regular files only (no FIFO, no device, no symlink out
of the model folder), MLflow artifact paths kept inside the model folder, feature index arrays and
weight shapes checked against the encoders and the config before anything is allocated, input files
(``--interactions``, ``--ratings``) refused before reading when they are not regular files.
Every case is the project's one-line error, never a hang, a MemoryError or a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from recsys import ColdStartRecommender
from recsys.data.dataset import load_files
from recsys.data.streaming import scan_log
from recsys.errors import DataError, ModelFileError, ScoringInputError
from recsys.utils import io as io_utils
from recsys.utils.checkpoint import META_KEY, load_tensors, save_tensors
from recsys.utils.io import json_depth, read_json_bounded
from tests.mlflow_servers import cli
from tests.test_reliability_files import rehash
from tests.test_reliability_inputs import TINY, tiny_model_dir

DEV_ZERO = Path("/dev/zero")
needs_dev_zero = pytest.mark.skipif(not DEV_ZERO.is_char_device(), reason="no /dev/zero here")
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


@pytest.fixture
def model(tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir(), copy)
    return copy


@pytest.fixture
def no_hang():
    """A guard, not an assertion: a read that blocks (a FIFO without a writer) fails the test after
    a minute instead of hanging the suite."""

    def stop(signum, frame):
        raise RuntimeError("the read blocked: the file was opened as if it were a regular file")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _write_json(path: Path, text: str) -> None:
    path.write_text(text)


# ---- manifest.json and the other JSON files of a model folder -------------------------------------


def test_deeply_nested_manifest_is_a_model_file_error_not_a_recursion_error(model) -> None:
    (model / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFileError, match=r"manifest\.json: damaged .*nested 100000 levels"):
        ColdStartRecommender.load(model)


def test_a_manifest_nested_a_thousand_levels_inside_a_valid_object_is_refused_before_parsing(model) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    text = json.dumps(manifest)[:-1] + ', "x": ' + "[" * 1000 + "]" * 1000 + "}"
    (model / "manifest.json").write_text(text)
    with pytest.raises(ModelFileError, match="nested 1001 levels deep"):
        ColdStartRecommender.load(model)


def test_a_manifest_format_of_5001_digits_is_a_model_file_error(model) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    text = json.dumps(manifest).replace('"format": 1', '"format": ' + "9" * 5001)
    (model / "manifest.json").write_text(text)
    with pytest.raises(ModelFileError, match=r"manifest\.json: damaged .*4300 digits"):
        ColdStartRecommender.load(model)


def test_a_manifest_format_of_4000_digits_is_refused_with_a_short_message(model) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(
        json.dumps(manifest).replace('"format": 1', '"format": ' + "9" * 4000)
    )
    with pytest.raises(ModelFileError, match=r"model format 9+\.\.\. unsupported") as err:
        ColdStartRecommender.load(model)
    assert len(str(err.value)) < 300


@needs_dev_zero
def test_manifest_symlinked_to_dev_zero_is_refused_without_reading_it(model) -> None:
    (model / "manifest.json").unlink()
    (model / "manifest.json").symlink_to(DEV_ZERO)
    with pytest.raises(ModelFileError, match=r"manifest\.json: manifest is a link to /dev/zero, outside"):
        ColdStartRecommender.load(model)


@needs_dev_zero
def test_a_json_read_of_dev_zero_is_refused_as_a_character_device() -> None:
    with pytest.raises(ModelFileError, match="is a character device, expected a regular file"):
        read_json_bounded(DEV_ZERO, 1 << 20)


@needs_fifo
def test_a_fifo_as_manifest_is_refused_without_waiting_for_a_writer(model, no_hang) -> None:
    (model / "manifest.json").unlink()
    os.mkfifo(model / "manifest.json")
    with pytest.raises(ModelFileError, match=r"manifest\.json: manifest is a FIFO \(named pipe\)"):
        ColdStartRecommender.load(model)


@needs_fifo
@pytest.mark.parametrize("name", ["config.json", "features.json", "history.json", "model.safetensors"])
def test_a_fifo_as_a_model_file_is_refused_without_waiting_for_a_writer(model, no_hang, name) -> None:
    (model / name).unlink()
    os.mkfifo(model / name)
    with pytest.raises(ModelFileError, match=rf"{name}: model file is a FIFO"):
        ColdStartRecommender.load(model)


@pytest.mark.parametrize(
    "name", ["manifest.json", "config.json", "features.json", "history.json", "model.safetensors"]
)
def test_a_symlink_from_the_model_folder_to_a_file_outside_it_is_refused(model, tmp_path, name) -> None:
    """The link points at an identical copy outside the folder, so the checksums match: only the
    location check refuses it."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(model / name, outside / name)
    (model / name).unlink()
    (model / name).symlink_to(outside / name)
    with pytest.raises(ModelFileError, match=rf"{name}: .* is a link to .*elsewhere.*, outside .*refusing"):
        ColdStartRecommender.load(model)


def test_a_symlink_to_a_file_inside_the_model_folder_still_loads(model) -> None:
    (model / "sub").mkdir()
    (model / "config.json").rename(model / "sub" / "config.json")
    (model / "config.json").symlink_to(Path("sub") / "config.json")
    assert ColdStartRecommender.load(model).item_ids


def test_a_folder_as_config_json_is_refused(model) -> None:
    (model / "config.json").unlink()
    (model / "config.json").mkdir()
    with pytest.raises(ModelFileError, match=r"config\.json: model file is a directory"):
        ColdStartRecommender.load(model)


def test_an_oversized_config_json_is_refused_before_parsing(model) -> None:
    text = (model / "config.json").read_text()
    (model / "config.json").write_text(text + " " * (io_utils.MAX_CONFIG_BYTES + 1))
    rehash(model)
    with pytest.raises(ModelFileError, match=r"config\.json: model file is too large .*at most 1 MB"):
        ColdStartRecommender.load(model)


def test_a_nested_json_bomb_in_features_json_is_a_model_file_error(model) -> None:
    (model / "features.json").write_text('{"items": ' + "[" * 50_000 + "]" * 50_000 + "}")
    rehash(model)
    with pytest.raises(ModelFileError, match=r"features\.json: damaged .*nested"):
        ColdStartRecommender.load(model)


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[\\"[[", "b": [1, {"c": "}}}"}]}') == 3
    assert json_depth(b"1") == 0


# ---- feature index arrays and weight shapes, checked at load -------------------------------------


def _tamper_tensors(folder: Path, change) -> None:
    tensors, meta = load_tensors(folder / "model.safetensors")
    change(tensors)
    save_tensors(folder / "model.safetensors", tensors, meta)
    rehash(folder)


def _set_first(name: str, value) -> object:
    def change(t: dict[str, torch.Tensor]) -> None:
        t[name] = t[name].clone()
        t[name][0] = value

    return change


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            _set_first("features.item_table.indices", 10_000),
            r"item_table\.indices: 1 token id\(s\) out of range",
        ),
        (_set_first("features.item_table.indices", 0), r"item_table\.indices: 1 token id\(s\) out of range"),
        (_set_first("features.user_table.indices", -5), r"user_table\.indices: 1 token id\(s\) out of range"),
        (_set_first("features.item_table.offsets", 3), r"item_table\.offsets: not increasing from 0"),
        (
            lambda t: t.__setitem__("features.item_table.offsets", t["features.item_table.offsets"].flip(0)),
            r"item_table\.offsets: not increasing",
        ),
        (
            lambda t: t.__setitem__("features.user_table.offsets", t["features.user_table.offsets"] * 2),
            r"user_table\.offsets: not increasing from 0 to \d+ \(the number of indices\)",
        ),
        (
            lambda t: t.__setitem__("features.item_table.indices", t["features.item_table.indices"].double()),
            r"item_table\.indices: float64",
        ),
        (_set_first("features.popularity", -1), "popularity: negative counts"),
        (
            lambda t: t.__setitem__("features.item_table.dense", torch.zeros(3, 2)),
            r"item_table\.dense: shape \(3, 2\)",
        ),
    ],
)
def test_out_of_range_feature_indices_written_into_a_model_are_refused_at_load(model, change, words) -> None:
    """Checksums recomputed: without the range checks these loaded and crashed at scoring with a
    RuntimeError or an IndexError."""
    _tamper_tensors(model, change)
    with pytest.raises(ModelFileError, match=words):
        ColdStartRecommender.load(model)


def test_duplicate_catalogue_ids_written_into_features_json_are_refused(model) -> None:
    features = json.loads((model / "features.json").read_text())
    features["items"]["ids"][1] = features["items"]["ids"][0]
    (model / "features.json").write_text(json.dumps(features))
    rehash(model)
    with pytest.raises(ModelFileError, match="items: duplicate ids"):
        ColdStartRecommender.load(model)


def test_a_tiny_config_asking_for_huge_layers_is_refused_before_any_allocation(model, monkeypatch) -> None:
    config = json.loads((model / "config.json").read_text())
    config["model"]["hidden"] = [8000, 8000]
    (model / "config.json").write_text(json.dumps(config))
    rehash(model)
    built = []
    real_build = ColdStartRecommender._build
    monkeypatch.setattr(
        ColdStartRecommender, "_build", lambda self, *a: (built.append(a), real_build(self, *a))[1]
    )
    with pytest.raises(
        ModelFileError, match=r"weights do not match the config .*saved \(8, \d+\), config \(8000, "
    ):
        ColdStartRecommender.load(model)
    assert built == []  # the network of the config was never built for real
    ColdStartRecommender.load(tiny_model_dir())  # the control: a good model is built once
    assert len(built) == 1


def test_a_weight_missing_or_extra_is_refused_before_the_network_is_built(model) -> None:
    _tamper_tensors(model, lambda t: t.__setitem__("model.surplus", torch.zeros(2)))
    with pytest.raises(ModelFileError, match=r"weights do not match the config \(unexpected \['surplus'\]"):
        ColdStartRecommender.load(model)


# ---- checkpoints -------------------------------------------------------------------------------


def _bomb_checkpoint(path: Path) -> Path:
    blob = st_save({"w": torch.zeros(2)}, metadata={META_KEY: "[" * 100_000 + "]" * 100_000})
    path.write_bytes(blob)
    return path


def test_a_nested_json_bomb_in_checkpoint_metadata_is_a_model_file_error(tmp_path) -> None:
    ckpt = _bomb_checkpoint(tmp_path / "checkpoint.safetensors")
    with pytest.raises(ModelFileError, match=r"checkpoint\.safetensors \(metadata\): damaged .*nested"):
        load_tensors(ckpt)
    with pytest.raises(ModelFileError, match="nested"):
        ColdStartRecommender.from_checkpoint(ckpt)


def test_a_nested_json_bomb_in_the_checkpoint_under_resume_is_a_model_file_error(tmp_path) -> None:
    from recsys.data.synthetic import make_synthetic

    ds = make_synthetic(n_users=40, n_items=20, n_interactions=500, seed=5)
    ckpt = _bomb_checkpoint(tmp_path / "checkpoint.safetensors")
    rec = ColdStartRecommender(TINY | {"model": TINY["model"] | {"hybrid": {"item_item": False}}})
    with pytest.raises(ModelFileError, match="nested"):
        rec.fit_dataset(ds, checkpoint=ckpt, resume=True)


@needs_dev_zero
def test_dev_zero_as_a_checkpoint_is_refused_without_reading_it() -> None:
    with pytest.raises(ModelFileError, match="is a character device"):
        ColdStartRecommender.from_checkpoint(DEV_ZERO)


# ---- MLflow model folders and the pyfunc ---------------------------------------------------------


def _mlflow_folder(tmp_path: Path, model: Path, rel: str) -> Path:
    """A folder shaped like a downloaded MLflow model whose MLmodel points its artifact at ``rel``."""
    folder = tmp_path / "mlflow-model"
    folder.mkdir()
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    artifacts:\n      recsys_model:\n"
        f"        path: {rel}\n        uri: x\n"
    )
    return folder


@pytest.mark.parametrize("rel", ["../model", "ABS"])
def test_an_mlmodel_artifact_path_outside_the_folder_is_refused(model, tmp_path, rel) -> None:
    rel = str(model) if rel == "ABS" else rel
    folder = _mlflow_folder(tmp_path, model, rel)
    with pytest.raises(ModelFileError, match="leads outside the model folder"):
        ColdStartRecommender.load(folder)


def test_an_artifact_folder_symlinked_out_of_the_mlflow_model_is_refused(model, tmp_path) -> None:
    folder = _mlflow_folder(tmp_path, model, "artifacts/recsys_model")
    (folder / "artifacts").mkdir()
    (folder / "artifacts" / "recsys_model").symlink_to(model)
    with pytest.raises(ModelFileError, match="leads outside the model folder"):
        ColdStartRecommender.load(folder)


def test_an_mlmodel_artifact_path_inside_the_folder_loads(model, tmp_path) -> None:
    folder = _mlflow_folder(tmp_path, model, "artifacts/recsys_model")
    shutil.copytree(model, folder / "artifacts" / "recsys_model")
    assert ColdStartRecommender.load(folder).item_ids


@pytest.fixture(scope="module")
def pyfunc_folder(tmp_path_factory) -> Path:
    """A pyfunc model saved by MLflow exactly as ``log_pyfunc`` logs it (models-from-code)."""
    import mlflow

    from recsys.tracking.pyfunc import CODE_FILE

    root = tmp_path_factory.mktemp("pyfunc")
    shutil.copytree(tiny_model_dir(), root / "recsys_model")
    mlflow.pyfunc.save_model(
        root / "saved", python_model=str(CODE_FILE), artifacts={"recsys_model": str(root / "recsys_model")}
    )
    return root / "saved"


def test_the_pyfunc_loads_its_own_artifact(pyfunc_folder) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model(str(pyfunc_folder))
    assert model.unwrap_python_model().rec.item_ids


@pytest.mark.parametrize("rel", ["../outside/recsys_model", "ABS"])
def test_the_pyfunc_refuses_an_artifact_path_outside_its_folder(pyfunc_folder, tmp_path, rel) -> None:
    import mlflow

    folder = tmp_path / "edited"
    shutil.copytree(pyfunc_folder, folder)
    shutil.copytree(tiny_model_dir(), tmp_path / "outside" / "recsys_model")
    target = str(tmp_path / "outside" / "recsys_model") if rel == "ABS" else rel
    text = (folder / "MLmodel").read_text()
    assert "path: artifacts/recsys_model" in text
    (folder / "MLmodel").write_text(text.replace("path: artifacts/recsys_model", f"path: {target}"))
    with pytest.raises(Exception, match="leads outside the model folder") as err:
        mlflow.pyfunc.load_model(str(folder))
    assert "refusing" in str(err.value)


def test_a_pyfunc_without_a_known_folder_accepts_only_artifacts_recsys_model(tmp_path) -> None:
    """Models logged before ``pyfunc_code.py`` passed its folder: the structural check applies."""
    from recsys.tracking.pyfunc import RecsysPyfunc

    shutil.copytree(tiny_model_dir(), tmp_path / "m" / "artifacts" / "recsys_model")
    for bad in (tmp_path / "m" / "artifacts" / ".." / ".." / "x", tmp_path / "m" / "other"):
        with pytest.raises(ModelFileError, match="refusing to load it"):
            RecsysPyfunc().load_context(SimpleNamespace(artifacts={"recsys_model": str(bad)}))
    py = RecsysPyfunc()
    py.load_context(
        SimpleNamespace(artifacts={"recsys_model": str(tmp_path / "m" / "artifacts" / "recsys_model")})
    )
    assert py.rec.item_ids


# ---- input files -----------------------------------------------------------------------------------


@needs_dev_zero
def test_dev_zero_as_interactions_is_a_data_error_naming_the_file() -> None:
    with pytest.raises(DataError, match=r"/dev/zero: input table is a character device, expected a regular"):
        load_files(DEV_ZERO)
    with pytest.raises(DataError, match="character device"):
        scan_log(DEV_ZERO)


@needs_dev_zero
def test_cli_train_with_dev_zero_as_interactions_is_one_line(tmp_path, capsys) -> None:
    proc = cli(capsys, "train", "--interactions", str(DEV_ZERO), "--out", str(tmp_path / "m"), "--no-mlflow")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: /dev/zero: input table is a character device")


@needs_fifo
def test_a_fifo_as_interactions_is_refused_without_waiting(tmp_path, no_hang) -> None:
    os.mkfifo(tmp_path / "log.csv")
    with pytest.raises(DataError, match=r"log\.csv: input table is a FIFO \(named pipe\)"):
        load_files(tmp_path / "log.csv")


def test_a_folder_as_interactions_is_a_data_error(tmp_path) -> None:
    (tmp_path / "log.csv").mkdir()
    with pytest.raises(DataError, match=r"log\.csv: is a directory"):
        load_files(tmp_path / "log.csv")


def test_an_input_table_over_the_size_cap_is_refused_before_reading(tiny_log, monkeypatch) -> None:
    monkeypatch.setattr(io_utils, "MAX_INPUT_BYTES", 100)
    with pytest.raises(
        DataError, match=r"log\.csv: input table is too large \(\d+ bytes; at most 100 bytes\)"
    ):
        load_files(tiny_log)


def test_a_symlink_to_a_regular_input_file_is_read(tiny_log, tmp_path) -> None:
    (tmp_path / "link.csv").symlink_to(tiny_log)
    assert load_files(tmp_path / "link.csv").interactions.height == 48


@needs_dev_zero
def test_cli_recommend_with_dev_zero_as_ratings_is_one_line(capsys) -> None:
    proc = cli(capsys, "recommend", "--model", str(tiny_model_dir()), "--ratings", str(DEV_ZERO))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: /dev/zero: ratings file is a character device")


@needs_fifo
def test_cli_recommend_with_a_fifo_as_ratings_is_one_line(tmp_path, capsys, no_hang) -> None:
    os.mkfifo(tmp_path / "r.json")
    proc = cli(capsys, "recommend", "--model", str(tiny_model_dir()), "--ratings", str(tmp_path / "r.json"))
    assert proc.returncode == 2 and "ratings file is a FIFO" in proc.stderr


def test_a_ratings_file_over_the_size_cap_is_refused(tmp_path, monkeypatch) -> None:
    from recsys.cli.score import _read_ratings_file

    (tmp_path / "r.json").write_text('{"1": 5}' + " " * 200)
    monkeypatch.setattr(io_utils, "MAX_REQUEST_JSON_BYTES", 64)
    with pytest.raises(ScoringInputError, match=r"r\.json: ratings file is too large"):
        _read_ratings_file(tmp_path / "r.json")
    monkeypatch.setattr(io_utils, "MAX_REQUEST_JSON_BYTES", 1 << 20)
    assert _read_ratings_file(tmp_path / "r.json")[0] == {"1": 5}


def test_scoring_after_a_clean_load_is_unchanged(model) -> None:
    """The checks refuse nothing a saved model holds: the loaded copy scores like the original."""
    original = ColdStartRecommender.load(tiny_model_dir())
    loaded = ColdStartRecommender.load(model)
    want, got = original.recommend({1: 5.0}, n=5), loaded.recommend({1: 5.0}, n=5)
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want])
