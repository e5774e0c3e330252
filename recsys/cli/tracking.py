"""``recsys tracking``: send tracking calls kept on disk, promote registered models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.options import TrackingUriOpt
from recsys.errors import RecsysError


def tracking_sync(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A run's journal folder or the spool folder (default: $RECSYS_MLFLOW_SPOOL or ./mlflow-spool)."
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="Send to this server instead of the run's own.")
    ] = None,
) -> None:
    """Send the tracking calls kept on disk while the tracking server was unreachable."""
    from recsys.tracking.journal import sync_spool

    results = sync_spool(path, tracking_uri)
    if not results:
        typer.echo("nothing to send")
    left = 0
    for r in results:
        left += r["left"]
        state = "complete" if not r["left"] else f"{r['left']} left ({r['error']})"
        typer.echo(f"run {r['run_id']} -> {r['tracking_uri']}: {r['sent']} call(s) sent, {state}")
    if left:
        raise typer.Exit(1)


def tracking_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Model version to point the alias at.")],
    alias: Annotated[str, typer.Option(help="Alias: champion, challenger...")] = "champion",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Point models:/NAME@ALIAS at a version (promotion by alias)."""
    from recsys.tracking.registry import set_alias

    try:
        set_alias(name, version, alias, tracking_uri)
    except Exception as exc:
        raise RecsysError(
            f"cannot set alias {alias} of {name} v{version}: {str(exc).splitlines()[0]}"
        ) from None
    typer.echo(f"models:/{name}@{alias} -> version {version}")
