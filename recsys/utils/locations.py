"""Where runs are tracked and where models are read from.

Tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded local store
``sqlite:///mlflow.db`` in the working directory, whose experiments keep their artifacts in
``./mlartifacts/<experiment>`` (no server needed; ``mlflow ui --backend-store-uri sqlite:///mlflow.db``
browses it).

Model locations: a local folder saved by ``ColdStartRecommender.save`` (or a local MLflow model folder
that holds one), or an MLflow URI: ``runs:/<run_id>/model``, ``models:/<name>@<alias>``,
``models:/<name>/<version>``, ``models:/<model_id>`` or ``mlflow-artifacts:/...``. MLflow URIs are
downloaded first (from the tracking URI above); the recommender folder is the pyfunc artifact
``recsys_model`` inside the MLflow model.

This module sits low (under the front, whose ``load`` resolves model locations, and under tracking) and
imports MLflow (a heavy optional dependency) and PyYAML only inside the functions that need them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys.errors import ModelFileError
from recsys.utils.io import read_bytes_bounded

MODEL_SUBDIR = "recsys_model"
"""Name of the pyfunc artifact (and folder) that holds the saved recommender inside an MLflow model."""
DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def default_tracking_uri(root: str | Path | None = None) -> str:
    """The embedded local store: ``sqlite:///<root>/mlflow.db`` (root: the working directory)."""
    path = (Path(root) if root is not None else Path.cwd()).resolve() / DEFAULT_DB
    return f"sqlite:///{path}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else the local store in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def is_remote(uri: str) -> bool:
    """A tracking server reached over HTTP (``mlflow server``, Databricks...)."""
    return uri.startswith(("http://", "https://", "databricks"))


def local_artifact_root(uri: str) -> Path | None:
    """For a local SQLite store: the ``mlartifacts`` folder next to the database file."""
    if not uri.startswith("sqlite:///"):
        return None
    db = uri[len("sqlite:///") :]
    if db in ("", ":memory:"):
        return Path.cwd().resolve() / DEFAULT_ARTIFACTS
    return Path(db).expanduser().resolve().parent / DEFAULT_ARTIFACTS


def artifact_inside(root: str | Path, candidate: str | Path, what: str = "model artifact") -> Path:
    """``candidate`` when it resolves (through ``..`` and symlinks) inside ``root``; an artifact path
    that leads out of the model folder (absolute, ``../..``, or a link out) is a ModelFileError."""
    root, candidate = Path(root), Path(candidate)
    real_root = root.resolve()
    real = candidate.resolve()
    if not real.is_relative_to(real_root):
        raise ModelFileError(
            f"{root}: the {what} path {str(candidate)!r} leads outside the model folder ({real}); "
            "refusing to load it"
        )
    return candidate


MAX_MLMODEL_BYTES = 1 << 20
"""Cap on an ``MLmodel`` file read to find the recommender inside an MLflow model folder."""


def find_model_folder(local: Path) -> Path | None:
    """The recommender folder (with ``manifest.json``) in a model folder or an MLflow model folder.

    Every candidate must resolve inside ``local``: an ``MLmodel`` whose artifact path (or an artifact
    folder that is a symlink) leads outside it is refused with a ModelFileError."""
    if (local / "manifest.json").exists():
        return local
    mlmodel = local / "MLmodel"
    if mlmodel.exists():
        rel = None
        text = read_bytes_bounded(mlmodel, "MLmodel", MAX_MLMODEL_BYTES, inside=local)
        try:
            import yaml

            meta = yaml.safe_load(text) or {}
            rel = meta["flavors"]["python_function"]["artifacts"][MODEL_SUBDIR]["path"]
        except Exception:  # ImportError, a damaged or foreign MLmodel (YAMLError, deep nesting...)
            pass
        if isinstance(rel, str):
            candidate = artifact_inside(local, local / rel)
            if (candidate / "manifest.json").exists():
                return candidate
    for candidate in (local / "artifacts" / MODEL_SUBDIR, local / MODEL_SUBDIR):
        if (candidate / "manifest.json").exists():
            return artifact_inside(local, candidate)
    artifacts = local / "artifacts"
    if artifacts.is_dir():
        for candidate in sorted(artifacts.iterdir()):
            if (candidate / "manifest.json").exists():
                return artifact_inside(local, candidate)
    return None


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[str]:
    """Point MLflow's process-wide tracking and registry URIs at ``uri`` inside a ``with`` block.

    ``mlflow.set_tracking_uri`` also writes (and, reset to None, deletes) ``MLFLOW_TRACKING_URI`` in the
    environment; both the module state and the environment are restored exactly on exit. Needed where
    MLflow reads the process-wide setting whatever it is given: ``download_artifacts`` resolves
    ``models:/`` URIs through the process-wide registry URI and ignores its ``registry_uri`` argument
    (MLflow 3.x), so ``--tracking-uri`` lost to ``MLFLOW_TRACKING_URI``.
    """
    import mlflow  # lazy: MLflow is a heavy optional dependency
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = (getattr(tracking, "_tracking_uri", None), getattr(registry, "_registry_uri", None))
    env = {name: os.environ.get(name) for name in names}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        yield uri
    finally:
        tracking._tracking_uri, registry._registry_uri = saved
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def resolve_model_location(location: str | Path, tracking_uri: str | None = None) -> Path:
    """A local folder holding a saved recommender (MLflow URIs are downloaded first)."""
    text = str(location)
    if text.startswith(MLFLOW_SCHEMES):
        if text.startswith("runs:/") and text.rstrip("/").count("/") == 1:
            text = text.rstrip("/") + "/model"  # runs:/<id> -> the model logged by `recsys train`
        try:
            import mlflow  # lazy: MLflow is a heavy optional dependency
        except ImportError as exc:  # pragma: no cover
            raise ModelFileError(f"{text}: MLflow is not installed ({exc})") from None
        uri = resolve_tracking_uri(tracking_uri)
        try:
            with using_tracking_uri(uri):
                local = Path(
                    mlflow.artifacts.download_artifacts(artifact_uri=text, tracking_uri=uri, registry_uri=uri)
                )
        except Exception as exc:
            raise ModelFileError(
                f"{text}: cannot fetch from MLflow at {uri} ({type(exc).__name__}: {str(exc)[:300]})"
            ) from None
        found = find_model_folder(local)
        if found is None:
            raise ModelFileError(f"{text}: no recsys model inside the MLflow artifact ({local})")
        return found
    path = Path(text)
    if not path.exists():
        raise ModelFileError(f"{path}: model folder not found")
    if path.is_file():
        raise ModelFileError(f"{path}: expected a model folder, got a file")
    return find_model_folder(path) or path
