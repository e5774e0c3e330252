"""Tracked MLflow runs for ``recsys train``, ``recsys evaluate`` and the pipelines.

:class:`Tracker` is a context manager around one MLflow run::

    with Tracker(TrackingOptions(experiment="movies"), kind="train") as tr:
        tr.log_params({"config": cfg.to_dict(), **dataset_params(ds)})
        rec, _ = train_model(ds, cfg, callbacks=[tr.epoch_callback])
        tr.log_training(rec)
        tr.log_model(rec, registered_name="movies")

Where runs go: ``TrackingOptions.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the embedded store
``sqlite:///mlflow.db`` with artifacts in ``./mlartifacts`` (see :mod:`recsys.utils.locations`).

Resilience:

- **Server unreachable at start**: :class:`TrackingUnavailableError` with a clear message (the CLI
  prints it and exits with status 2 before any training), or, with ``fallback_local=True``
  (``--fallback-local``), a warning and the run goes to the local store instead.
- **Server lost during the run**: training goes on. Every tracking call that fails is kept, in order,
  in a journal on disk (``./mlflow-spool/<run_id>/``, or ``$RECSYS_MLFLOW_SPOOL``; artifacts and the
  model are copied there too) and retried before the next call and when the run ends (metrics keep
  their original step and timestamp). If the server is still down at the end, a warning says where the
  journal is; ``recsys tracking sync`` sends it when the server is back. Nothing is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.errors import RecsysError
from recsys.tracking.journal import (
    PROGRAMMING_ERRORS,
    apply_op,
    is_rejection,
    probe_server,
    short_http_retries,
    spool_root,
)
from recsys.tracking.params import (
    DEFAULT_EXPERIMENT,
    MAX_TAG_LENGTH,
    eval_metric_key,
    flatten_params,
    git_commit,
    metric_name,
)
from recsys.utils.io import atomic_write_json, atomic_write_text
from recsys.utils.locations import (
    MODEL_SUBDIR,
    default_tracking_uri,
    is_remote,
    local_artifact_root,
    resolve_tracking_uri,
)
from recsys.utils.machine import numeric_environment

log = logging.getLogger(__name__)


class TrackingUnavailableError(RecsysError):
    """The MLflow tracking server cannot be reached (or refuses the run) when a run starts."""


# ---- options ---------------------------------------------------------------------------------------
@dataclass
class TrackingOptions:
    """How (and whether) a command tracks its run."""

    enabled: bool = True
    """False: no MLflow at all (``--no-mlflow``)."""
    tracking_uri: str | None = None
    """Tracking URI (default: ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here)."""
    experiment: str | None = None
    """Experiment name (default ``recsys``)."""
    fallback_local: bool = False
    """Server unreachable at start: continue on the local store instead of failing."""
    run_name: str | None = None
    spool_dir: str | Path | None = None
    """Where failed tracking calls are kept (default ``$RECSYS_MLFLOW_SPOOL`` or ``./mlflow-spool``)."""


@dataclass
class LoggedModelRef:
    """Where a logged model is (``model_uri`` is None while it waits in the journal)."""

    model_uri: str | None
    run_uri: str | None
    registered_name: str | None = None
    version: str | None = None

    @property
    def registry_uri(self) -> str | None:
        if self.registered_name and self.version:
            return f"models:/{self.registered_name}/{self.version}"
        return None


class Tracker:
    """One MLflow run; every method is a no-op when tracking is disabled."""

    def __init__(self, options: TrackingOptions | None = None, *, kind: str = "train") -> None:
        self.options = options or TrackingOptions()
        self.kind = kind
        self.active = False
        self.uri: str | None = None
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.fell_back = False
        self.spool: Path | None = None
        self.pending: list[dict[str, Any]] = []
        self.flushed_later = 0
        self._spooled_files = 0
        self._stack = contextlib.ExitStack()
        self._last_probe = 0.0
        self._ended = False

    # ---- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Tracker:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")

    @property
    def run_uri(self) -> str | None:
        return f"runs:/{self.run_id}" if self.run_id else None

    def start(self) -> Tracker:
        opts = self.options
        if not opts.enabled:
            return self
        import mlflow  # noqa: F401  (fail early and clearly if MLflow is missing)

        uri = resolve_tracking_uri(opts.tracking_uri)
        if is_remote(uri):
            problem = probe_server(uri, timeout=5.0)
            if problem:
                uri = self._unreachable(uri, problem)
        self._stack.enter_context(short_http_retries())
        try:
            try:
                self._open(uri)
            except (TrackingUnavailableError, *PROGRAMMING_ERRORS):
                raise
            except Exception as exc:
                if not is_remote(uri):
                    raise TrackingUnavailableError(f"cannot open the MLflow store {uri}: {exc}") from None
                uri = self._unreachable(uri, f"{type(exc).__name__}: {str(exc)[:300]}")
                self._open(uri)
        except BaseException:
            self._stack.close()
            raise
        self.active = True
        log.info("MLflow run %s in experiment %s at %s", self.run_id, self.experiment_id, self.uri)
        return self

    def _unreachable(self, uri: str, problem: str) -> str:
        local = default_tracking_uri()
        if not self.options.fallback_local:
            raise TrackingUnavailableError(
                f"MLflow tracking server {uri} is unreachable ({problem}). Start it, pass --fallback-local "
                f"to track this run in the local store ({local}), or --no-mlflow to skip tracking"
            )
        log.warning(
            "MLflow tracking server %s is unreachable (%s); tracking this run in the local store %s "
            "instead (--fallback-local)",
            uri,
            problem,
            local,
        )
        self.fell_back = True
        return local

    def _open(self, uri: str) -> None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        name = self.options.experiment or DEFAULT_EXPERIMENT
        exp = client.get_experiment_by_name(name)
        if exp is None:
            root = local_artifact_root(uri)
            location = (root / metric_name(name).replace("/", "_")).as_uri() if root else None
            try:
                exp_id = client.create_experiment(name, artifact_location=location)
            except MlflowException:
                exp = client.get_experiment_by_name(name)  # created meanwhile by another process
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        elif exp.lifecycle_stage == "deleted":
            raise TrackingUnavailableError(
                f"MLflow experiment {name!r} is deleted at {uri}: restore it "
                f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or choose another --experiment"
            )
        else:
            exp_id = exp.experiment_id
        tags = {"recsys.kind": self.kind, "mlflow.source.name": f"recsys {self.kind}"}
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
            tags["recsys.git_commit"] = commit
        run = client.create_run(exp_id, run_name=self.options.run_name, tags=tags)
        self.client, self.uri = client, uri
        self.experiment_id, self.run_id = exp_id, run.info.run_id

    def end(self, status: str = "FINISHED") -> None:
        """Close the run (sending anything still buffered); warns where the journal is if it cannot."""
        if not self.active or self._ended:
            return
        self._ended = True
        try:
            self._submit({"op": "end", "status": status, "end_time": int(time.time() * 1000)}, force=True)
        finally:
            self._stack.close()
        if self.pending:
            log.warning(
                "MLflow tracking store %s is unreachable: %d tracking call(s) of run %s are kept in %s; "
                "nothing is lost. Send them when the server is back: recsys tracking sync %s",
                self.uri,
                len(self.pending),
                self.run_id,
                self.spool,
                self.spool,
            )
        elif self.flushed_later:
            log.warning(
                "MLflow tracking store %s was unreachable for part of run %s; the %d kept call(s) "
                "have been sent, nothing was lost",
                self.uri,
                self.run_id,
                self.flushed_later,
            )

    # ---- logging -----------------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        if self.active and params:
            self._submit({"op": "params", "params": flatten_params(params)})

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if not self.active:
            return
        clean: dict[str, float] = {}
        for k, v in metrics.items():
            if isinstance(v, (bool, str)) or v is None:
                continue
            try:
                value = float(v)
            except (TypeError, ValueError):
                continue
            clean[metric_name(k)] = value if math.isfinite(value) else float("nan")
        if clean:
            op = {"op": "metrics", "metrics": clean, "step": int(step or 0)}
            op["timestamp"] = int(time.time() * 1000)
            self._submit(op)

    def epoch_callback(self, epoch: int, record: dict[str, float]) -> None:
        """``fit(callbacks=[tracker.epoch_callback])``: the epoch's record as metrics at step=epoch."""
        self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=epoch)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.active and tags:
            clean = {metric_name(k): str(v)[:MAX_TAG_LENGTH] for k, v in tags.items() if v is not None}
            self._submit({"op": "tags", "tags": clean})

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a folder (its content) under ``artifact_path``."""
        if self.active:
            self._submit(
                {"op": "artifacts", "local": str(Path(path).resolve()), "artifact_path": artifact_path}
            )

    def log_dict(self, obj: Any, filename: str, artifact_path: str | None = None) -> None:
        if not self.active:
            return
        with tempfile.TemporaryDirectory(prefix="recsys-mlflow-") as tmp:
            path = Path(tmp) / filename
            atomic_write_json(path, obj)
            self.log_artifacts(path, artifact_path)

    def log_training(self, rec: Any, seconds: float | None = None) -> None:
        """Final validation-user figures, training info, the machine (``recsys/machine.json``,
        :func:`recsys.utils.machine.numeric_environment`) and the model's config/encoders as artifacts."""
        if not self.active:
            return
        s = rec.summary
        if s is not None:
            metrics = {
                "val_mae_adapted": s.mae_adapted,
                "val_mae_no_adaptation": s.mae_no_adaptation,
                "val_mae_item_mean": s.mae_item_mean,
                "val_rmse_adapted": s.rmse_adapted,
                "val_ndcg_at_3_adapted": s.ndcg3_adapted,
                "val_recall_at_20_adapted": s.recall20_adapted,
                "val_recall_at_20_no_adaptation": s.recall20_no_adaptation,
                "best_epoch": s.best_epoch,
                "epochs_run": s.epochs_run,
                "train_seconds": s.seconds if seconds is None else seconds,
            }
            # figures a log cannot have (MAE of implicit feedback, Recall of explicit) are left out
            self.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)}, step=s.epochs_run)
        info = {k: v for k, v in rec.info.items() if k != "holdout"}
        holdout = rec.info.get("holdout") or {}
        self.log_params(
            {f"info.{k}": v for k, v in info.items()} | {"holdout.protocol": holdout.get("protocol")}
        )
        if holdout.get("fingerprint"):
            self.set_tags({"recsys.holdout_fingerprint": holdout["fingerprint"]})
        # the machine: another CPU's kernels train the ranking side as another seed would
        machine = numeric_environment()
        self.set_tags({"recsys.torch_kernels": machine["torch_cpu_capability"]})
        self.log_dict(machine, "machine.json", "recsys")
        with tempfile.TemporaryDirectory(prefix="recsys-mlflow-") as tmp:
            folder = rec.save(Path(tmp) / MODEL_SUBDIR)
            files = Path(tmp) / "files"
            files.mkdir()
            for name in ("config.json", "features.json", "history.json", "manifest.json"):
                shutil.copy2(folder / name, files / name)
            self.log_artifacts(files, "recsys")

    def log_evaluation(self, report: dict[str, Any], report_dir: str | Path | None = None) -> None:
        """Every (protocol, K, method, metric) mean as ``eval/...`` metrics, and the report files."""
        if not self.active:
            return
        metrics: dict[str, float] = {}
        for row in report.get("results", []):
            for key, value in row.items():
                if isinstance(value, dict) and "mean" in value and value["mean"] is not None:
                    metrics[eval_metric_key(row, key)] = value["mean"]
                elif key == "coverage@10" and value is not None:
                    metrics[eval_metric_key(row, key)] = value
        self.log_metrics(metrics)
        settings = report.get("settings", {})
        self.set_tags(
            {
                "recsys.protocols": ",".join(settings.get("protocols", [])),
                "recsys.dataset": report.get("dataset"),
            }
        )
        if report_dir is not None:
            self.log_artifacts(report_dir, "report")

    def log_model(
        self,
        rec: Any,
        registered_name: str | None = None,
        version_tags: dict[str, str] | None = None,
    ) -> LoggedModelRef | None:
        """Log the recommender as a pyfunc model (``runs:/<run>/model``) and register it if asked."""
        if not self.active:
            return None
        tmp = Path(tempfile.mkdtemp(prefix="recsys-mlflow-model-"))
        try:
            rec.save(tmp / MODEL_SUBDIR)
            op = {
                "op": "model",
                "local": str(tmp / MODEL_SUBDIR),
                "name": "model",
                "registered_name": registered_name,
                "version_tags": version_tags or {},
            }
            result = self._submit(op)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if result is None:
            return LoggedModelRef(None, f"runs:/{self.run_id}/model", registered_name, None)
        return LoggedModelRef(
            result["model_uri"], f"runs:/{self.run_id}/model", registered_name, result.get("version")
        )

    # ---- the journal ------------------------------------------------------------------------------
    def _submit(self, op: dict[str, Any], force: bool = False) -> dict[str, Any] | None:
        """Apply ``op`` now, or keep it (after anything already kept) for a later retry."""
        if self.pending:
            self.flush(force=force)
        if self.pending:
            self._keep(op)
            return None
        try:
            return apply_op(self.client, self.run_id, op, self.uri)
        except PROGRAMMING_ERRORS:
            raise  # a bug, not an outage: surface it
        except Exception as exc:
            if is_rejection(exc):
                log.warning("MLflow refused a %s call of run %s: %s", op["op"], self.run_id, exc)
                return None
            log.warning(
                "MLflow tracking call failed (%s: %s); training goes on, tracking calls are kept and retried",
                type(exc).__name__,
                str(exc).splitlines()[0][:200],
            )
            self._keep(op)
            return None

    def _keep(self, op: dict[str, Any]) -> None:
        if self.spool is None:
            self.spool = spool_root(self.options.spool_dir).resolve() / str(self.run_id)
            self.spool.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                self.spool / "run.json",
                {"tracking_uri": self.uri, "run_id": self.run_id, "experiment_id": self.experiment_id},
            )
        if op["op"] in ("artifacts", "model"):  # the source may be temporary: keep a copy
            self._spooled_files += 1
            src = Path(op["local"])
            dst = self.spool / "files" / str(self._spooled_files) / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
            op = {**op, "local": str(dst)}
        self.pending.append(op)
        self._write_journal()

    def _write_journal(self) -> None:
        assert self.spool is not None
        atomic_write_text(self.spool / "journal.jsonl", "".join(json.dumps(o) + "\n" for o in self.pending))

    def flush(self, force: bool = False) -> bool:
        """Retry the kept calls in order; True when none is left."""
        if not self.pending:
            return True
        if not force and time.monotonic() - self._last_probe < 1.0:
            return False
        self._last_probe = time.monotonic()
        if probe_server(self.uri, timeout=2.0) is not None:
            return False
        sent = 0
        while self.pending:
            try:
                apply_op(self.client, self.run_id, self.pending[0], self.uri)
            except Exception as exc:
                if not is_rejection(exc):
                    log.debug("retry failed: %s", exc)
                    break
                log.warning("MLflow refused a kept %s call: %s", self.pending[0]["op"], exc)
            self.pending.pop(0)
            sent += 1
        self.flushed_later += sent
        if self.pending:
            self._write_journal()
            return False
        if self.spool is not None:
            shutil.rmtree(self.spool, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.spool.parent.rmdir()  # only if empty
            self.spool = None
        log.info("MLflow tracking server back: %d kept call(s) sent", sent)
        return True
