"""Hostile and damaged files: loading a model or a checkpoint never executes code from it (only
safetensors and JSON; a planted pickle is refused and its payload never runs), truncated or tampered
files are caught by the checksums recorded at save time, a damaged manifest or an edited feature
file is a clear ModelFileError, and a model applied to data with another feature spec is a
FeatureMismatchError naming the field.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from recsys import ColdStartRecommender
from recsys.config import RecommenderConfig
from recsys.data import load_dataset
from recsys.data.synthetic import make_synthetic, write_synthetic
from recsys.errors import FeatureMismatchError, ModelFileError
from recsys.evaluation.runner import MetaScorer
from recsys.utils.checkpoint import load_tensors, save_tensors
from recsys.utils.io import sha256_file
from recsys.workflows import train_model
from tests.mlflow_servers import cli
from tests.test_reliability_inputs import TINY, tiny_model_dir

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs ``os.system``: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def rehash(folder: Path) -> None:
    """Make the manifest agree with the files, so that only the format check can stop them."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def model(tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir(), copy)
    return copy


def pickles(marker: Path) -> dict[str, bytes]:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2), "evil": Payload(marker)}, buf)  # a zip holding a pickle
    return {
        "pickle-protocol-2": pickle.dumps(Payload(marker), protocol=2),
        "pickle-protocol-5": pickle.dumps(Payload(marker), protocol=5),
        "pickle-protocol-0": pickle.dumps(Payload(marker), protocol=0),  # text, no magic byte
        "torch.save": buf.getvalue(),
    }


def test_the_payload_would_run_if_unpickled(tmp_path) -> None:
    marker = tmp_path / "ran"
    pickle.loads(pickles(marker)["pickle-protocol-2"])  # the control: the payload is real
    assert marker.exists()


@pytest.mark.parametrize(
    "kind", ["pickle-protocol-2", "pickle-protocol-5", "pickle-protocol-0", "torch.save"]
)
def test_a_malicious_pickle_as_the_model_is_refused_and_never_runs(model, tmp_path, kind) -> None:
    marker = tmp_path / "PWNED"
    (model / "model.safetensors").write_bytes(pickles(marker)[kind])
    rehash(model)  # the checksum matches: only the refusal to unpickle protects us
    with pytest.raises(ModelFileError, match=r"model\.safetensors") as err:
        ColdStartRecommender.load(model)
    assert "pickle" in str(err.value) or "not a safetensors file" in str(err.value)
    assert not marker.exists()


def test_a_malicious_pickle_as_the_checkpoint_is_refused_by_train_resume(tmp_path, capsys) -> None:
    data = write_synthetic(make_synthetic(n_users=60, n_items=30, n_interactions=900, seed=2), tmp_path / "d")
    (tmp_path / "tiny.toml").write_text(
        "[model]\nembedding_dim = 4\nhidden = [8]\nfactor_dim = 8\n"
        "[model.hybrid]\nitem_item = false\n[train]\nepochs = 1\n"
    )
    marker = tmp_path / "PWNED"
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.safetensors").write_bytes(pickles(marker)["pickle-protocol-2"])
    proc = cli(capsys, "train", "--dataset", str(data), "--out", str(out), "--config", str(tmp_path / "tiny.toml"),
               "--protocol", "random", "--no-mlflow", "--resume")  # fmt: skip
    assert proc.returncode == 2 and "refusing to load it" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and not (out / "model.safetensors").exists()
    with pytest.raises(ModelFileError, match="refusing"):
        ColdStartRecommender.from_checkpoint(out / "checkpoint.safetensors")
    assert not marker.exists()


def test_no_unpickling_call_anywhere_in_the_package() -> None:
    """Static guard: the package never calls pickle/joblib/dill loaders, nor torch.load without
    ``weights_only=True`` (safetensors and JSON are the only formats read)."""
    offenders = []
    for path in (REPO / "recsys").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name.split(".")[-1] in ("load", "loads", "Unpickler") and name.split(".")[0] in (
                "pickle", "cPickle", "joblib", "dill", "cloudpickle", "_pickle", "shelve"
            ):  # fmt: skip
                offenders.append(f"{path.name}: {name}")
            if name == "torch.load" and not any(
                k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in node.keywords
            ):
                offenders.append(f"{path.name}: torch.load without weights_only=True")
    assert not offenders


# ---- truncated, tampered, missing ----------------------------------------------------------------


def _truncate(folder: Path, name: str, keep: float) -> None:
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: int(len(data) * keep)])


def _flip(folder: Path, name: str, at: int) -> None:
    data = bytearray((folder / name).read_bytes())
    data[at] ^= 0x40
    (folder / name).write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda m: _truncate(m, "model.safetensors", 0.5), "checksum mismatch"),
        (lambda m: _truncate(m, "model.safetensors", 0.0), "checksum mismatch"),
        (lambda m: _flip(m, "model.safetensors", -3), "checksum mismatch"),  # a flipped bit in a weight
        (lambda m: _flip(m, "features.json", 10), "checksum mismatch"),
        (lambda m: _flip(m, "config.json", 5), "checksum mismatch"),
        (lambda m: (m / "history.json").write_text("{}"), "checksum mismatch"),
        (lambda m: (m / "model.safetensors").unlink(), "missing"),
        (lambda m: (m / "features.json").unlink(), "missing"),
        (lambda m: (m / "manifest.json").unlink(), "no manifest.json"),
        # truncated or damaged, with checksums recomputed to match: the format checks catch them
        (lambda m: (_truncate(m, "model.safetensors", 0.7), rehash(m)), "not a readable safetensors"),
        (lambda m: (_truncate(m, "model.safetensors", 0.001), rehash(m)), "not a safetensors file"),
        (lambda m: (_flip(m, "model.safetensors", 9), rehash(m)), "safetensors"),
    ],
)
def test_truncated_tampered_or_missing_model_files_are_refused(model, damage, words) -> None:
    damage(model)
    with pytest.raises(ModelFileError, match=words):
        ColdStartRecommender.load(model)


def _edit(name: str, change):
    def apply(folder: Path) -> None:
        (folder / name).write_text(json.dumps(change(json.loads((folder / name).read_text()))))

    return apply


def _set(key, value):
    def change(obj):
        obj[key] = value
        return obj

    return change


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda m: (m / "manifest.json").write_text("[1, 2]"), "not a JSON object"),
        (lambda m: (m / "manifest.json").write_bytes(b"\xff\xfe{}"), "damaged"),
        (lambda m: (m / "manifest.json").write_text("{"), "damaged"),
        (_edit("manifest.json", _set("format", 99)), "format 99 unsupported"),
        (_edit("manifest.json", _set("files", {})), "no checksum for"),  # would skip verification
        (_edit("manifest.json", lambda d: {k: v for k, v in d.items() if k != "files"}), "no table"),
        (_edit("manifest.json", _set("files", ["model.safetensors"])), "no table"),
        (
            _edit("manifest.json", lambda d: _set("files", d["files"] | {"../../etc/passwd": "0"})(d)),
            "unexpected file name",
        ),
    ],
)
def test_a_damaged_manifest_is_refused(model, edit, words) -> None:
    edit(model)
    with pytest.raises(ModelFileError, match=words):
        ColdStartRecommender.load(model)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_edit("features.json", _set("titles", [])), "inconsistent feature files"),
        (_edit("features.json", _set("rating_scale", [5, 1])), "invalid rating scale"),
        (_edit("features.json", _set("rating_scale", "abc")), "invalid rating scale"),
        (_edit("features.json", lambda f: {k: v for k, v in f.items() if k != "items"}), "KeyError"),
        (_edit("features.json", lambda f: [f]), "TypeError"),
        (
            _edit("features.json", lambda f: (f["items"]["ids"].pop(), f)[1]),
            "inconsistent feature files|do not match",
        ),
        (
            _edit("features.json", lambda f: (f["user_encoder"]["fields"][0]["tokens"].append("z"), f)[1]),
            "token id.* out of range|match",
        ),
        (_edit("features.json", lambda f: (f["items"].__setitem__("dtype", "String"), f)[1]), "damaged"),
        (_edit("config.json", lambda c: (c["model"].__setitem__("hidden", "abc"), c)[1]), "damaged"),
        (_edit("config.json", lambda c: (c["model"].__setitem__("embedding_dim", -1), c)[1]), "damaged"),
        (_edit("config.json", lambda c: (c["model"].__setitem__("head", "melu"), c)[1]), "do not match"),
        (_edit("config.json", _set("extra", {})), "unknown config section"),
        (_edit("history.json", lambda h: [h]), "damaged"),
        (_edit("history.json", _set("info", {"rating_mean": "high"})), "damaged"),
    ],
)
def test_edited_model_files_with_matching_checksums_are_clear_errors(model, edit, words) -> None:
    """Someone edits a JSON file and recomputes the manifest: the load still fails clearly."""
    edit(model)
    rehash(model)
    with pytest.raises(ModelFileError, match=words):
        ColdStartRecommender.load(model)


def test_a_model_missing_feature_arrays_is_refused(model) -> None:
    tensors, meta = load_tensors(model / "model.safetensors")
    save_tensors(
        model / "model.safetensors", {k: v for k, v in tensors.items() if "item_table" not in k}, meta
    )
    rehash(model)
    with pytest.raises(ModelFileError, match="item_table"):
        ColdStartRecommender.load(model)


def test_the_cli_reports_a_damaged_model_in_one_line(model, tmp_path, capsys) -> None:
    _truncate(model, "model.safetensors", 0.5)
    (tmp_path / "r.json").write_text('{"1": 5}')
    proc = cli(capsys, "recommend", "--model", str(model), "--ratings", str(tmp_path / "r.json"))
    assert proc.returncode == 2 and "checksum mismatch" in proc.stderr and "Traceback" not in proc.stderr


# ---- a model meets data with another feature spec ---------------------------------------------------


@pytest.fixture(scope="module")
def trained_on_spec(tmp_path_factory):
    """A model trained by the same code path as ``recsys train --protocol random`` on a dataset folder."""
    root = tmp_path_factory.mktemp("spec")
    data = write_synthetic(
        make_synthetic(n_users=100, n_items=40, n_interactions=1500, seed=9), root / "data"
    )
    ds = load_dataset(data)
    rec, _ = train_model(ds, RecommenderConfig.from_dict(TINY), protocol="random")
    rec.save(root / "model")
    return root, data, rec


def _variant(root: Path, data: Path, name: str, spec_edit, users_edit=None) -> Path:
    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(data, folder)
    spec = (folder / "spec.toml").read_text()
    (folder / "spec.toml").write_text(spec_edit(spec))
    if users_edit is not None:
        users_edit(pl.read_parquet(folder / "users.parquet")).write_parquet(folder / "users.parquet")
    return folder


def test_data_lacking_a_field_the_model_was_trained_on_is_a_feature_mismatch(trained_on_spec) -> None:
    root, data, rec = trained_on_spec
    renamed = _variant(
        root, data, "renamed",
        lambda s: s.replace('{ name = "age" }', '{ name = "age_group" }'),
        lambda u: u.rename({"age": "age_group"}),
    )  # fmt: skip
    ds = load_dataset(renamed)
    with pytest.raises(FeatureMismatchError, match="user field 'age'") as err:
        rec.check_dataset(ds)
    assert "age_group" in str(err.value)
    # the evaluation's scorer encodes the new users' features with the model's encoder
    scorer = MetaScorer(rec, ds)
    users = SimpleNamespace(ids=ds.users["user_id"].head(3))
    with pytest.raises(FeatureMismatchError, match="field 'age'"):
        scorer.score(np.full((3, 1), -1), np.zeros((3, 1), np.float32), users)
    # scoring a new user with the renamed feature: the name is unknown to the model
    with pytest.raises(FeatureMismatchError, match="age_group"):
        rec.recommend({}, user_features={"age_group": "age1"})


def test_data_declaring_a_field_with_another_kind_is_a_feature_mismatch(trained_on_spec) -> None:
    root, data, rec = trained_on_spec
    retyped = _variant(
        root, data, "retyped",
        lambda s: s.replace('{ name = "category" }', '{ name = "category", kind = "multi" }'),
    )  # fmt: skip
    with pytest.raises(FeatureMismatchError, match=r"item field 'category'.*categorical.*multi"):
        rec.check_dataset(load_dataset(retyped))
    no_users = _variant(
        root, data, "no-users", lambda s: s.split("[users]")[0] + "[items]" + s.split("[items]")[1]
    )
    with pytest.raises(FeatureMismatchError, match=r"user field 'occupation'.*no table"):
        rec.check_dataset(load_dataset(no_users))
    rec.check_dataset(load_dataset(data))  # the training data itself passes


def test_cli_evaluate_refuses_a_model_trained_on_another_feature_spec(trained_on_spec, capsys) -> None:
    root, data, _ = trained_on_spec
    renamed = _variant(
        root, data, "renamed-cli",
        lambda s: s.replace('{ name = "gender" }', '{ name = "sex" }'),
        lambda u: u.rename({"gender": "sex"}),
    )  # fmt: skip
    proc = cli(capsys, "evaluate", "--model", str(root / "model"), "--dataset", str(renamed), "--no-mlflow",
               "--baselines", "none", "--ablations", "none", "--seeds", "1", "--protocol", "random",
               "--out", str(root / "report"))  # fmt: skip
    assert proc.returncode == 2 and "user field 'gender'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "report").exists()


def test_a_checkpoint_is_never_torn_by_a_failing_write(tmp_path, monkeypatch) -> None:
    """The atomic write in-process: a write that fails half-way leaves the previous file intact and
    no temporary file behind (the SIGKILL version is in tests/test_reliability_crash.py)."""
    target = tmp_path / "checkpoint.safetensors"
    save_tensors(target, {"w": torch.ones(3)}, {"kind": "x"})
    before = target.read_bytes()

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        save_tensors(target, {"w": torch.zeros(1000)}, {"kind": "y"})
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]
