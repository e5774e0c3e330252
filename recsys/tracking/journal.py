"""The journal of tracking calls a run could not send (its tracking server was lost), and replaying them.

See :mod:`recsys.tracking.mlflow_run` (resilience).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recsys.utils.io import atomic_write_text

log = logging.getLogger(__name__)

SPOOL_ENV = "RECSYS_MLFLOW_SPOOL"
DEFAULT_SPOOL = "mlflow-spool"
# While a run is open, MLflow's own HTTP retries are kept short (unless the user set them): a dead
# server must not stall training for minutes; our journal retries instead.
HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # downloads here are tiny (input-example check)
}


def spool_root(spool_dir: str | Path | None = None) -> Path:
    return Path(spool_dir or os.environ.get(SPOOL_ENV) or DEFAULT_SPOOL)


def probe_server(uri: str, timeout: float = 3.0) -> str | None:
    """None if ``uri``'s ``/health`` answers, else why not (one line)."""
    if not uri.startswith(("http://", "https://")):
        return None
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return None if resp.status < 400 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return None  # TLS set-up (custom CA, MLFLOW_TRACKING_INSECURE_TLS) is MLflow's client's business
        return f"{type(reason).__name__}: {reason}"


@contextlib.contextmanager
def short_http_retries() -> Iterator[None]:
    added = {k: v for k, v in HTTP_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, KeyError, IndexError, AssertionError, ImportError)


def is_rejection(exc: BaseException) -> bool:
    """The server answered and refused this call (4xx): retrying it would not help."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover
        return False
    if not isinstance(exc, MlflowException):
        return False
    try:
        status = exc.get_http_status_code()
    except Exception:
        return False
    text = str(exc)
    transport = "Max retries exceeded" in text or "Connection" in text or "timed out" in text
    return 400 <= status < 500 and not transport


# ---- applying one tracking operation -----------------------------------------------------------------
def apply_op(client: Any, run_id: str, op: dict[str, Any], tracking_uri: str) -> dict[str, Any]:
    """Send one journal operation to MLflow (used live and by ``recsys tracking sync``)."""
    from mlflow.entities import Metric, Param, RunTag

    kind = op["op"]
    if kind == "params":
        items = list(op["params"].items())
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=[Param(k, v) for k, v in items[i : i + 100]])
    elif kind == "metrics":
        metrics = [Metric(k, v, op["timestamp"], op["step"]) for k, v in op["metrics"].items()]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
    elif kind == "tags":
        items = list(op["tags"].items())
        for i in range(0, len(items), 100):
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in items[i : i + 100]])
    elif kind == "artifacts":
        path = Path(op["local"])
        if path.is_dir():
            client.log_artifacts(run_id, str(path), op.get("artifact_path"))
        else:
            client.log_artifact(run_id, str(path), op.get("artifact_path"))
    elif kind == "model":
        from recsys.tracking.pyfunc import log_pyfunc  # lazy: MLflow, only when a model is sent

        model_uri, version = log_pyfunc(
            op["local"],
            run_id=run_id,
            tracking_uri=tracking_uri,
            name=op.get("name", "model"),
            registered_name=op.get("registered_name"),
        )
        client.set_tag(run_id, "recsys.model_uri", model_uri)
        if version is not None:
            client.set_tag(run_id, "recsys.registered_model", f"{op['registered_name']}/{version}")
            for k, v in (op.get("version_tags") or {}).items():
                client.set_model_version_tag(op["registered_name"], version, k, v)
        return {"model_uri": model_uri, "version": version}
    elif kind == "end":
        client.set_terminated(run_id, op["status"], op["end_time"])
    else:  # pragma: no cover
        raise ValueError(f"unknown tracking operation {kind!r}")
    return {}


# ---- the tracker -------------------------------------------------------------------------------------


def sync_spool(path: str | Path | None = None, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Send journals kept by runs that lost their tracking server (``recsys tracking sync``).

    ``path``: one run's journal folder or the spool root holding several. Returns, per run, how many
    calls were sent and how many are left (a run whose server is still down keeps its journal).
    """
    from mlflow import MlflowClient

    root = spool_root(path)
    runs = [root] if (root / "journal.jsonl").exists() else sorted(p for p in root.glob("*") if p.is_dir())
    results = []
    for folder in runs:
        journal = folder / "journal.jsonl"
        if not journal.exists():
            continue
        meta = json.loads((folder / "run.json").read_text())
        uri = tracking_uri or meta["tracking_uri"]
        ops = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
        sent = 0
        error = None
        with short_http_retries():
            problem = probe_server(uri)
            if problem:
                error = f"server unreachable ({problem})"
            else:
                client = MlflowClient(tracking_uri=uri, registry_uri=uri)
                try:
                    while ops:
                        apply_op(client, meta["run_id"], ops[0], uri)
                        ops.pop(0)
                        sent += 1
                except Exception as exc:
                    error = f"{type(exc).__name__}: {str(exc)[:300]}"
        if ops:
            atomic_write_text(journal, "".join(json.dumps(o) + "\n" for o in ops))
        else:
            shutil.rmtree(folder, ignore_errors=True)
        results.append(
            {"run_id": meta["run_id"], "tracking_uri": uri, "sent": sent, "left": len(ops), "error": error}
        )
    return results
