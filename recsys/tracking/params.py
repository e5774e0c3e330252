"""Run parameters and names for MLflow: flattened configs, metric keys, data fingerprints, versions."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from recsys.data.frames import to_polars

DEFAULT_EXPERIMENT = "recsys"
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_KEY_LENGTH = 250

# ---- names, params, fingerprints -------------------------------------------------------------------
_ILLEGAL = re.compile(r"[^A-Za-z0-9_\-./]+")


def metric_name(name: str) -> str:
    """A legal MLflow metric/param key: ``@`` -> ``_at_``; spaces and illegal characters -> ``_``."""
    text = str(name).replace("@", "_at_")
    text = _ILLEGAL.sub("_", text)
    text = re.sub(r"_+", "_", text).strip("_")
    return text[:MAX_KEY_LENGTH] or "_"


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts -> ``section.key`` string values (lists as JSON), truncated to MLflow's limit."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.update(flatten_params(v, key))
        return out
    if isinstance(obj, (list, tuple)):
        text = json.dumps(list(obj), default=str)
    elif obj is None:
        text = "None"
    else:
        text = str(obj)
    if len(text) > MAX_PARAM_LENGTH:
        text = text[: MAX_PARAM_LENGTH - 3] + "..."
    out[metric_name(prefix)] = text
    return out


def data_fingerprint(frame: Any) -> str:
    """Hash of a table's content, independent of row and column order (16 hex digits).

    Row hashes from polars (stable for a given polars version, which runs record), sorted, then
    SHA-256 together with the column names and types.
    """

    frame = to_polars(frame)
    cols = sorted(frame.columns)
    frame = frame.select(cols)
    digest = hashlib.sha256(json.dumps([[c, str(frame.schema[c])] for c in cols]).encode())
    digest.update(str(frame.height).encode())
    if frame.height:
        hashes = frame.hash_rows(seed=0).to_numpy().copy()
        hashes.sort()
        digest.update(hashes.tobytes())
    return digest.hexdigest()[:16]


def git_commit() -> str | None:
    """Commit of the repository holding the ``recsys`` package (else the working directory),
    with ``-dirty`` when tracked files have uncommitted changes; None outside a git checkout."""
    roots = [Path(__file__).resolve().parents[2], Path.cwd()]
    for root in roots:
        try:
            head = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
            )
            if head.returncode != 0:
                continue
            status = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        commit = head.stdout.strip()
        return commit + ("-dirty" if status.returncode == 0 and status.stdout.strip() else "")
    return None


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("recsys", "torch", "polars", "pandas", "numpy", "mlflow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def dataset_params(ds: Any) -> dict[str, Any]:
    """Dataset name, size and content fingerprint, for run params."""
    inter = ds.interactions
    out = {
        "dataset": ds.name,
        "data.rows": inter.height,
        "data.users": inter["user_id"].n_unique(),
        "data.items": inter["item_id"].n_unique(),
        "data.fingerprint": data_fingerprint(inter),
        "data.feedback": "implicit" if ds.implicit else "explicit",
    }
    if getattr(ds, "path", None):
        out["data.path"] = str(ds.path)
    return out


def run_params(ds: Any = None, config: Any = None, **extra: Any) -> dict[str, Any]:
    """The params every run logs: the full config (``model.embedding_dim``...), the dataset and its
    fingerprint, the git commit and package versions, plus ``extra``."""
    out: dict[str, Any] = {}
    if config is not None:
        out.update(config.to_dict())
    if ds is not None:
        out.update(dataset_params(ds))
    out["git_commit"] = git_commit() or "unknown"
    out.update({f"version.{k}": v for k, v in package_versions().items()})
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def eval_metric_key(row: dict[str, Any], metric: str) -> str:
    """``eval/<protocol>[/<scenario>]/k<K>/<method>/<metric>`` for one report row."""
    parts = ["eval", row["protocol"]]
    if row.get("scenario") not in (None, "new_users"):
        parts.append(row["scenario"])
    parts += [f"k{row['k']}", row["method"], metric]
    return "/".join(metric_name(p) for p in parts)
