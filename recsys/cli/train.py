"""``recsys train``: meta-train a cold-start recommender and save it (tracked in MLflow)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import echo_run, epoch_line, prepare_out, show_progress_logs
from recsys.cli.options import ConfigOptions, DataSource, Tracking

if TYPE_CHECKING:
    from recsys.config import RecommenderConfig
    from recsys.data.dataset import Dataset
    from recsys.tracking.mlflow_run import Tracker

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the trained model (and its checkpoint).")]
HoldoutOpt = Annotated[
    str,
    typer.Option(
        "--holdout",
        help="Hold new users out of training for a quick honest figure: none (default: the model "
        "learns from every user; validation users are carved out for model selection only), "
        "temporal (the last-joined 20% of users, and every interaction after the first of them), "
        "random (a random 20% of users) or melu (MeLU's split, melu-ml1m only). "
        "Full comparisons are `recsys evaluate`'s job.",
    ),
]
ProtocolOpt = Annotated[
    str | None, typer.Option("--protocol", hidden=True, help="Deprecated name of --holdout.")
]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.safetensors.")]
NprocOpt = Annotated[
    int,
    typer.Option(
        help="Train with N processes (DistributedDataParallel via torchrun: gloo on CPU, NCCL on GPU). "
        "Multi-node: launch `torchrun ... -m recsys train` yourself (see recsys/distributed.py)."
    ),
]
RegisterOpt = Annotated[
    str | None,
    typer.Option(
        "--register",
        help="Register the logged model under this name in the MLflow model registry "
        "(promote with: recsys tracking promote NAME VERSION --alias champion).",
    ),
]


def train(
    *,
    source: DataSource,
    out: OutOpt = Path("models/latest"),
    settings: ConfigOptions,
    holdout: HoldoutOpt = "none",
    protocol: ProtocolOpt = None,
    resume: ResumeOpt = False,
    nproc: NprocOpt = 1,
    tracking: Tracking,
    register: RegisterOpt = None,
) -> None:
    """Meta-train a cold-start recommender (one task per user) and save it.

    Prints, for the validation users (held out from the training users), the MAE of the adapted model
    next to the model without adaptation and the item-mean predictor. The run is tracked in MLflow
    (params, per-epoch metrics, artifacts, the pyfunc model) unless --no-mlflow.
    """
    from recsys import distributed

    protocol = _checked_holdout(protocol or holdout)
    if nproc > 1 and distributed.world_size_from_env() == 1:
        raise typer.Exit(_relaunch(nproc, out))
    rank, world = distributed.init_from_env(settings.device or "cpu")
    device = distributed.local_device(settings.device) if settings.device else None
    if world > 1 and rank != 0:  # rank 0 tracks and saves for everyone
        tracking, register = dataclasses.replace(tracking, mlflow=False), None
    if register and not tracking.mlflow:
        raise typer.BadParameter(
            "--register needs MLflow tracking (drop --no-mlflow)", param_hint="--register"
        )
    cfg = settings.build(device=device)
    prepare_out(out, lock=rank == 0)
    show_progress_logs(rank == 0)
    ds = source.load()
    typer.echo(_training_line(ds, protocol))
    with tracking.tracker("train") as tr:
        _train_tracked(tr, ds, cfg, protocol, out=out, resume=resume, rank=rank, register=register)


def _checked_holdout(protocol: str) -> str:
    from recsys.workflows import HOLDOUTS

    if protocol not in HOLDOUTS:
        raise typer.BadParameter(
            f"{protocol!r}; expected one of {', '.join(HOLDOUTS)}", param_hint="--holdout"
        )
    return protocol


def _relaunch(nproc: int, out: Path) -> int:
    """Run this command again in ``nproc`` worker processes (torchrun); their exit status."""
    from recsys import distributed

    prepare_out(out, lock=False)  # rank 0 of the workers takes the lock
    argv = sys.argv[1:]
    keep = [a for i, a in enumerate(argv) if not a.startswith("--nproc") and argv[i - 1] != "--nproc"]
    return distributed.relaunch(nproc, keep)


def _training_line(ds: Dataset, protocol: str) -> str:
    held_out = (
        "none (every user; validation users carved out for model selection)"
        if protocol == "none"
        else protocol
    )
    return (
        f"training on {ds.name} ({ds.interactions.height:,} interactions, "
        f"{ds.interactions['user_id'].n_unique():,} users), new users held out: " + held_out
    )


def _train_tracked(
    tr: Tracker,
    ds: Dataset,
    cfg: RecommenderConfig,
    protocol: str,
    *,
    out: Path,
    resume: bool,
    rank: int,
    register: str | None,
) -> None:
    """Train in the open run ``tr``; rank 0 saves the model, logs it and registers it."""
    from recsys import distributed
    from recsys.tracking.params import run_params
    from recsys.tracking.registry import version_tags
    from recsys.workflows import saved_size_text, summary_text, train_model

    echo_run(tr)
    params = run_params(ds, cfg, protocol=protocol, resume=resume) if tr.active else {}
    tr.log_params(params)
    tr.set_tags({"recsys.dataset": ds.name, "recsys.protocol": protocol})
    rec, _ = train_model(
        ds,
        cfg,
        protocol=protocol,
        checkpoint=out / "checkpoint.safetensors",
        resume=resume,
        callbacks=([epoch_line(cfg.train.epochs)] if rank == 0 else [])
        + ([tr.epoch_callback] if tr.active else []),
    )
    distributed.shutdown()
    if rank != 0:
        return
    rec.save(out)
    typer.echo(summary_text(rec))
    typer.echo(f"model saved to {out} ({saved_size_text(out)})")
    tr.log_training(rec)
    ref = tr.log_model(rec, register, version_tags(rec, params.get("data.fingerprint")))
    if ref is not None and ref.model_uri:
        typer.echo(f"model logged: {ref.run_uri} ({ref.model_uri})")
        if ref.registry_uri:
            typer.echo(f"registered: {ref.registry_uri}")
