"""Model locations: a local folder, or an MLflow ``runs:/...`` / ``models:/NAME@alias`` URI."""

from __future__ import annotations

from pathlib import Path

from recsys.errors import ModelFileError

MODEL_SUBDIR = "recsys_model"


def resolve_model_location(location: str | Path) -> Path:
    """A local folder holding a saved recommender (MLflow URIs are downloaded first)."""
    text = str(location)
    if text.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        try:
            import mlflow
        except ImportError as exc:  # pragma: no cover
            raise ModelFileError(f"{text}: MLflow is not installed ({exc})") from None
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
        except Exception as exc:
            raise ModelFileError(f"{text}: cannot fetch from MLflow ({type(exc).__name__}: {exc})") from None
        for candidate in (local, local / "artifacts" / MODEL_SUBDIR, local / MODEL_SUBDIR):
            if (candidate / "manifest.json").exists():
                return candidate
        raise ModelFileError(f"{text}: no recsys model inside the MLflow artifact")
    path = Path(text)
    if not path.exists():
        raise ModelFileError(f"{path}: model folder not found")
    if path.is_file():
        raise ModelFileError(f"{path}: expected a model folder, got a file")
    return path
