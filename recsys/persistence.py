"""A trained recommender on disk: the model folder (:func:`save`, :func:`load`), its manifest and
checksums, training checkpoints (:func:`from_checkpoint`), and the consistency checks every loaded
model passes before the engine uses it.

A model folder holds ``config.json``, ``features.json``, ``model.safetensors`` (weights and feature
arrays), ``history.json`` (training history, summary, info), ``user_log.safetensors`` when the model
keeps a record of its training users (:mod:`recsys.known_users`; read only when the manifest lists
it) and ``manifest.json`` (format, versions, the feature signature and a SHA-256 of every file). Loading refuses, with a :class:`ModelFileError`,
a folder whose manifest is missing or damaged, whose files are missing, linked out of the folder or
modified since they were saved, and files whose contents disagree with each other (feature arrays
out of range, weights of another shape than the config describes): all checked before the network
the files describe is allocated.

The functions build and fill a :class:`~recsys.recommender.ColdStartRecommender` given as ``cls``
(they do not import the front, which imports them).
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from recsys.config import RecommenderConfig
from recsys.data.dataset import Dataset
from recsys.errors import FeatureMismatchError, ModelFileError, RecsysError
from recsys.features.space import ITEM_ID_FIELD, FeatureSpace, check_feature_arrays
from recsys.known_users import USER_LOG_FILE, KnownUsers
from recsys.meta.maml import MetaLearner
from recsys.models.network import ColdStartNet
from recsys.models.support_bands import SAVED_EDGES, widen
from recsys.training import FitSummary
from recsys.utils.checkpoint import load_tensors, save_tensors
from recsys.utils.io import (
    MAX_CONFIG_BYTES,
    MAX_FEATURES_BYTES,
    MAX_HISTORY_BYTES,
    MAX_MANIFEST_BYTES,
    atomic_write_json,
    check_input_file,
    read_json_bounded,
    sha256_file,
)
from recsys.utils.locations import resolve_model_location
from recsys.version import __version__

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

    R = TypeVar("R", bound=ColdStartRecommender)
else:
    R = TypeVar("R")

FORMAT_VERSION = 1
MODEL_FILES = ("config.json", "features.json", "model.safetensors", "history.json")

AVAILABLE = "catalogue.available"
"""The saved availability of the catalogue's items (uint8 [n_items], 1 = available), only when some
item is hidden (:func:`recsys.catalogue.set_available`)."""

OPTIONAL_WEIGHTS = (
    "net.head.trend",
    "net.head.trend_weight",
    "net.head.trend_decay",
    "net.head.rank_mix",
    "net.head.fold_in_weight",
    "net.head.mf_design",
    "net.head.mf_base",
    "net.head.mf_seen",
    "net.head.mf_reg",
    "net.head.mf_mu",
    "net.head.mf_weight",
    "net.head.rate_mix",
    "net.head.rate_knn",
    "net.head.knn_idx",
    "net.head.knn_val",
    "net.head.als_factors",
    "net.head.als_gram",
    "net.head.als_reg",
    "net.head.als_alpha",
    "net.head.als_threshold",
    "net.head.als_weight",
    "net.head.cf_matrix",
    "net.head.cf_threshold",
    "net.head.cf_weight",
)
"""Buffers that models saved before they existed lack; they load as their defaults (no prior)."""

SIZED_WHEN_CHOSEN = {
    "net.head.als_factors": "factors",
    "net.head.cf_matrix": "square",
    "net.head.knn_idx": "factors",
    "net.head.knn_val": "factors",
}
"""Buffers of the added classical paths (and the rating item-kNN's lists), empty unless validation
chose the path: saved either empty or
sized by the catalogue ([n_items, width] for ``factors``, [n_items, n_items] for ``square``)."""


BANDED = ("net.head.als_weight", "net.head.cf_weight")
"""Weights kept per support-size band (:mod:`recsys.models.support_bands`); files saved when they were
one number ([]), or with fewer bands, load each band from the saved one holding it (``widen``)."""


def _sized_shapes(key: str, empty: tuple[int, ...], n_items: int) -> set[tuple[int, ...]]:
    """The shapes a :data:`SIZED_WHEN_CHOSEN` buffer may be saved with."""
    full = (n_items, empty[1]) if SIZED_WHEN_CHOSEN[key] == "factors" else (n_items, n_items)
    return {empty, full}


# ---- saving ------------------------------------------------------------------------------------------
def save(rec: ColdStartRecommender, path: str | Path) -> Path:
    """Write the model folder of a fitted recommender: config, features, weights (safetensors),
    history, then the manifest with every file's checksum (each file written atomically)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / "config.json", rec.config.to_dict())
    atomic_write_json(path / "features.json", rec.space.to_json())
    tensors = {f"model.{k}": v for k, v in rec.learner.state_dict().items()}
    tensors.update(
        {f"features.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in rec.space.arrays().items()}
    )
    if getattr(rec, "_available", None) is not None:  # items hidden by set_available
        tensors[AVAILABLE] = torch.from_numpy(rec._available.astype(np.uint8))
    save_tensors(path / "model.safetensors", tensors, {"kind": "recsys-model", "format": FORMAT_VERSION})
    atomic_write_json(
        path / "history.json",
        {"history": rec.history, "summary": rec.summary.__dict__ if rec.summary else None, "info": rec.info},
    )
    names = MODEL_FILES
    if getattr(rec, "user_log", None) is not None:
        rec.user_log.save(path / USER_LOG_FILE)
        names += (USER_LOG_FILE,)
    else:  # a record left by an earlier save into this folder must not outlive it
        (path / USER_LOG_FILE).unlink(missing_ok=True)
    atomic_write_json(path / "manifest.json", manifest(path, rec.space, names))
    return path


def manifest(folder: Path, space: FeatureSpace, names: tuple[str, ...] = MODEL_FILES) -> dict[str, Any]:
    """The manifest of a model folder whose files are written: format, versions, the feature
    signature and the SHA-256 of each file of ``names`` (:data:`MODEL_FILES` and the optional
    :data:`~recsys.known_users.USER_LOG_FILE`)."""
    return {
        "format": FORMAT_VERSION,
        "recsys": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "signature": space.signature(),
        "files": {name: sha256_file(folder / name) for name in names},
    }


# ---- loading -----------------------------------------------------------------------------------------
def load(cls: type[R], path: str | Path) -> R:
    """A recommender of class ``cls`` from a model folder (or an MLflow ``runs:/`` / ``models:/`` URI),
    its manifest and checksums verified first (:func:`verify_folder`)."""
    folder = resolve_model_location(path)
    verify_folder(folder)
    try:
        return from_files(cls, folder)
    except ModelFileError:
        raise
    except Exception as exc:  # consistent checksums but contents the engine cannot use
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelFileError(
            f"{folder}: damaged or inconsistent model files ({type(exc).__name__}: {first})"
        ) from None


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, bounded in size, of the supported format, with a checksum for every one
    of :data:`MODEL_FILES`; anything else is a ModelFileError."""
    manifest_path = folder / "manifest.json"
    if not (manifest_path.exists() or manifest_path.is_symlink()):
        raise ModelFileError(f"{folder}: no manifest.json; not a recsys model folder")
    found = read_json_bounded(manifest_path, MAX_MANIFEST_BYTES, what="manifest", inside=folder)
    if not isinstance(found, dict):
        raise ModelFileError(f"{manifest_path}: damaged (not a JSON object)")
    if found.get("format") != FORMAT_VERSION:
        shown = repr(found.get("format"))
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        raise ModelFileError(f"{folder}: model format {shown} unsupported (expected {FORMAT_VERSION})")
    files = found.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise ModelFileError(f"{manifest_path}: damaged (no table of file checksums)")
    unlisted = [name for name in MODEL_FILES if name not in files]
    if unlisted:
        raise ModelFileError(f"{manifest_path}: no checksum for {unlisted}; the model cannot be verified")
    return found


def verify_folder(folder: Path) -> None:
    """Every file the manifest lists is a plain file inside the folder (no link out, no FIFO or device)
    whose SHA-256 is the one the manifest records."""
    manifest_path = folder / "manifest.json"
    for name, digest in read_manifest(folder)["files"].items():
        if Path(name).name != name or name in (".", ".."):
            raise ModelFileError(f"{manifest_path}: unexpected file name {name!r}")
        file = folder / name
        if not (file.exists() or file.is_symlink()):
            raise ModelFileError(f"{file}: missing")
        # a regular file whose real path is inside the folder: no link out, no FIFO or device
        check_input_file(file, "model file", None, error=ModelFileError, inside=folder)
        if sha256_file(file) != digest:
            raise ModelFileError(f"{file}: checksum mismatch (truncated or modified since it was saved)")


def from_files(cls: type[R], folder: Path) -> R:
    """A recommender from a verified model folder's files (each read with a size bound)."""

    def read(name: str, max_bytes: int) -> Any:
        return read_json_bounded(folder / name, max_bytes, what="model file", inside=folder)

    try:
        config = RecommenderConfig.from_saved(read("config.json", MAX_CONFIG_BYTES))
    except (RecsysError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{folder}: damaged model file ({exc})") from None
    features = read("features.json", MAX_FEATURES_BYTES)
    history = read("history.json", MAX_HISTORY_BYTES)
    tensors, _ = load_tensors(folder / "model.safetensors", inside=folder)
    rec = from_parts(
        cls, folder, config, features, tensors, float(history.get("info", {}).get("rating_mean", 0.0))
    )
    rec.history = list(history.get("history", []))
    rec.info = dict(history.get("info", {}))
    rec._available = read_available(tensors, rec.space.n_items, folder)
    if history.get("summary"):
        rec.summary = FitSummary(**history["summary"])
    if USER_LOG_FILE in read_manifest(folder)["files"]:  # only a verified record; older models have none
        rec.user_log = KnownUsers.load(folder / USER_LOG_FILE, rec.space.n_items, inside=folder)
    return rec


def from_checkpoint(cls: type[R], path: str | Path) -> R:
    """A recommender of class ``cls`` from a training checkpoint (its current weights)."""
    tensors, meta = load_tensors(path)
    if not isinstance(meta, dict) or meta.get("kind") != "recsys-checkpoint":
        raise ModelFileError(f"{path}: not a recsys checkpoint")
    try:
        config = RecommenderConfig.from_saved(meta["config"])
        rec = from_parts(cls, path, config, meta["features"], tensors, float(meta["info"]["rating_mean"]))
        rec.info = meta["info"]
        rec.history = meta["state"]["history"]
    except ModelFileError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelFileError(f"{path}: damaged checkpoint ({type(exc).__name__}: {first})") from None
    return rec


def from_parts(
    cls: type[R],
    where: Path | str,
    config: RecommenderConfig,
    features: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    rating_mean: float,
) -> R:
    """A recommender from a saved config, feature space and tensors, checked before any allocation
    the files alone decide: the feature arrays' types, sizes and index ranges against the encoders,
    then every weight's shape against the network the config describes (built on the ``meta``
    device, which allocates nothing); only then is the network built for real (``rec._build``)."""
    arrays = {k[len("features.") :]: v.numpy() for k, v in tensors.items() if k.startswith("features.")}
    problems = check_feature_arrays(arrays)
    if problems:
        raise ModelFileError(f"{where}: inconsistent feature files ({'; '.join(problems[:3])})")
    rec = cls(config)
    space = FeatureSpace.from_json(features, arrays)
    check_space(space, where)
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    check_shapes(config, space, where, state, rating_mean)
    rec._build(space, rating_mean)
    try:
        load_weights(rec.learner, state)
    except RuntimeError as exc:
        raise ModelFileError(f"{where}: weights do not match the config ({exc})") from None
    return rec


def read_available(tensors: dict[str, torch.Tensor], n_items: int, where: Path | str) -> np.ndarray | None:
    """The saved availability mask (bool [n_items]) or None (every item available)."""
    if AVAILABLE not in tensors:
        return None
    mask = tensors[AVAILABLE].numpy()
    if mask.dtype != np.uint8 or mask.shape != (n_items,) or mask.max(initial=0) > 1:
        raise ModelFileError(
            f"{where}: inconsistent feature files (availability {mask.dtype} {mask.shape}, "
            f"expected 0/1 for each of the {n_items} catalogue items)"
        )
    return mask.astype(bool)


# ---- the consistency checks ------------------------------------------------------------------------
def check_space(space: FeatureSpace, where: Path | str) -> None:
    """The loaded feature space is self-consistent (an edited features.json is caught here)."""
    n = space.n_items
    sizes = {
        "titles": len(space.titles),
        "popularity": len(space.popularity),
        "item_table": space.item_table.n_rows,
    }
    wrong = {k: v for k, v in sizes.items() if v != n}
    if space.user_table.n_rows != len(space.users) + 1:
        wrong["user_table"] = space.user_table.n_rows
    if wrong:
        raise ModelFileError(f"{where}: inconsistent feature files ({n} catalogue items, but {wrong})")
    problems = space.problems()  # index ranges of every array against the encoders' table sizes
    if problems:
        raise ModelFileError(f"{where}: inconsistent feature files ({'; '.join(problems[:3])})")
    scale = space.rating_scale
    if scale is not None and not (
        len(scale) == 2
        and all(isinstance(x, (int, float)) and math.isfinite(x) for x in scale)
        and scale[0] < scale[1]
    ):
        raise ModelFileError(f"{where}: invalid rating scale {scale!r}")


def check_shapes(
    config: RecommenderConfig,
    space: FeatureSpace,
    where: Path | str,
    state: dict[str, torch.Tensor],
    rating_mean: float,
) -> None:
    """Every saved weight has the shape the config and feature space call for (no weight missing
    or extra), checked on a network built on the ``meta`` device: no memory is allocated, so a
    config asking for huge layers costs nothing before it is refused."""
    with torch.device("meta"):
        net = ColdStartNet.for_space(config.model, space, rating_mean=rating_mean)
        expected = {k: tuple(v.shape) for k, v in MetaLearner(net, config.meta).state_dict().items()}
    # sorted: the message names the same weights whatever order the file holds them in
    missing = sorted(k for k in expected if k not in state and k not in OPTIONAL_WEIGHTS)
    extra = sorted(k for k in state if k not in expected)
    wrong = [
        f"{k}: saved {tuple(state[k].shape)}, config {expected[k]}"
        for k in sorted(state)
        if k in expected
        and tuple(state[k].shape) != expected[k]
        and not (
            k in SIZED_WHEN_CHOSEN and tuple(state[k].shape) in _sized_shapes(k, expected[k], space.n_items)
        )
        and not (k in BANDED and state[k].dim() <= 1 and state[k].numel() in SAVED_EDGES)
    ]
    if missing or extra or wrong:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else ""]
        detail = "; ".join([p for p in parts if p] + wrong[:3])
        raise ModelFileError(f"{where}: weights do not match the config ({detail})")


def load_weights(learner: MetaLearner, state: dict[str, torch.Tensor]) -> None:
    """Load saved weights; :data:`OPTIONAL_WEIGHTS` a file lacks keep their defaults; a
    :data:`SIZED_WHEN_CHOSEN` buffer takes the saved one's size; a :data:`BANDED` one saved as one
    number or with fewer bands is widened to the current bands."""
    for key in SIZED_WHEN_CHOSEN.keys() & state.keys():
        module_name, _, name = key.rpartition(".")
        module = learner.get_submodule(module_name)
        if module.get_buffer(name).shape != state[key].shape:
            setattr(module, name, torch.zeros_like(state[key], device=module.get_buffer(name).device))
    defaults = learner.state_dict()
    state = state | {k: widen(state[k]).to(defaults[k]) for k in BANDED if k in state}
    state = {k: defaults[k] for k in OPTIONAL_WEIGHTS if k in defaults and k not in state} | state
    learner.load_state_dict(state)


def check_dataset(space: FeatureSpace, dataset: Dataset) -> None:
    """Refuse data whose feature spec differs from the model's: a user or item field the model was
    trained on that the dataset lacks, or declares with another kind, is a FeatureMismatchError
    naming it (fields the model does not use are ignored)."""
    sides = (
        ("user", space.user_encoder, dataset.spec.user_fields, dataset.users),
        ("item", space.item_encoder, dataset.spec.item_fields, dataset.items),
    )
    for side, encoder, fields, table in sides:
        declared = {f.name: f.kind for f in fields}
        for fe in encoder.fields:
            if fe.name == ITEM_ID_FIELD:
                continue
            kind = fe.spec.kind.value
            if table is None or fe.name not in declared:
                has = "no table" if table is None else f"the fields {sorted(declared)}"
                raise FeatureMismatchError(
                    f"the model was trained with {side} field '{fe.name}' ({kind}); "
                    f"the data '{dataset.name}' has {side} {has}"
                )
            if declared[fe.name] is not fe.spec.kind:
                raise FeatureMismatchError(
                    f"{side} field '{fe.name}': the model was trained on {kind} values, "
                    f"the data '{dataset.name}' declares it {declared[fe.name].value}"
                )
