"""Helpers the commands share: the ``--out`` folder, progress output, loading a model, the names of
the evaluation options and their checks. They import the rest of recsys lazily (see
:mod:`recsys.cli`)."""

from __future__ import annotations

import logging
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand

from recsys.cli.runtime import on_close
from recsys.errors import RecsysError, SpecError

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender
    from recsys.tracking.mlflow_run import Tracker


def prepare_out(out: Path, *, lock: bool = True) -> None:
    """Check ``--out`` before any data is loaded: a folder (created if missing) that this process can
    write, then (``lock``) an exclusive lock on it for the whole command and no temporary files left
    by a killed run; the lock is released and temporary files are removed however the command ends."""
    from recsys.utils.io import FolderLock, remove_temps_in

    if out.exists() and not out.is_dir():
        raise RecsysError(f"--out {out}: is a file, not a folder (the model is a folder of files)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecsysError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RecsysError(f"--out {out}: the folder is not writable")
    if not lock:
        return
    try:
        held = FolderLock(out, "training run").acquire()
    except OSError as exc:
        raise RecsysError(f"--out {out}: cannot write in the folder ({exc.strerror or exc})") from None

    def cleanup() -> None:
        remove_temps_in(out)
        held.release()

    remove_temps_in(out)  # left by a run that was killed while writing
    on_close(cleanup)


PROGRESS_LOGGERS = (
    "recsys.models.item_init",
    "recsys.models.item_item",
    "recsys.recommender",
    "recsys.training",
)
"""Loggers whose INFO lines (ALS initialisation, item-item blend, trend choice: the long steps around
the epochs) ``recsys train`` shows on stderr without -v."""


def show_progress_logs(enabled: bool = True) -> None:
    if not enabled:
        return
    loggers = [logging.getLogger(name) for name in PROGRESS_LOGGERS]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(min(lg.getEffectiveLevel(), logging.INFO))

    def restore() -> None:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)

    on_close(restore)


def epoch_line(total: int) -> Callable[[int, dict[str, float]], None]:
    """An epoch callback that prints one line per epoch on stderr (flushed): a long training whose
    output goes to a file or a scheduler's log shows its progress."""

    def show(epoch: int, record: dict[str, float]) -> None:
        planned = int(record.get("epochs_planned", total))  # fewer than total under train.max_tasks
        parts = [f"epoch {epoch}/{planned}", f"train_loss {record.get('train_loss', float('nan')):.4f}"]
        if record.get("skipped_steps"):
            parts.append(f"skipped_steps {int(record['skipped_steps'])}")
        parts += [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_")]
        parts.append(f"{record.get('seconds', 0.0):.1f} s")
        print(", ".join(parts), file=sys.stderr, flush=True)

    return show


def echo_run(tr: Tracker) -> None:
    """Where the run is tracked, and how to browse a local store."""
    if not tr.active:
        return
    from recsys.tracking.params import DEFAULT_EXPERIMENT

    name = tr.options.experiment or DEFAULT_EXPERIMENT
    typer.echo(f"MLflow run {tr.run_id} (experiment {name!r}, id {tr.experiment_id}) at {tr.uri}")
    if tr.uri.startswith("sqlite:///"):
        typer.echo(f"browse it: mlflow ui --backend-store-uri {tr.uri}")


def load_model(model: str, tracking_uri: str | None) -> ColdStartRecommender:
    from recsys.recommender import ColdStartRecommender
    from recsys.utils.locations import resolve_model_location

    return ColdStartRecommender.load(resolve_model_location(model, tracking_uri))


def csv_list(text: str | None, cast: Callable[[str], Any] = str) -> list | None:
    if text is None:
        return None
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


def int_list(option: str, text: str) -> list[int]:
    """A comma-separated list of positive integers, or one SpecError line naming the option."""
    try:
        values = csv_list(text, int) or []
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise SpecError(f"{option}: expected comma-separated positive integers, got {text!r}")
    return values


def known_names() -> dict[str, tuple[str, ...]]:
    """Valid names of the evaluation options, read from the tables that define them (this imports
    torch, so it runs only when a command needs the names, never at ``recsys --help``)."""
    from recsys.data.protocols import split_protocol
    from recsys.evaluation.ablations import RESCORED_ABLATIONS, RETRAINED_ABLATIONS
    from recsys.models.classical import BASELINES
    from recsys.onboarding import STRATEGIES

    return {
        "baselines": tuple(BASELINES),
        "rescored": tuple(RESCORED_ABLATIONS),
        "retrained": tuple(RETRAINED_ABLATIONS),
        "protocols": typing.get_args(typing.get_type_hints(split_protocol)["protocol"]),
        "strategies": tuple(STRATEGIES),
    }


def check_names(
    option: str, kind: str, names: list[str] | None, known: tuple[str, ...], also: str = ""
) -> list[str]:
    """``names`` if each is in ``known``; else one SpecError listing the known names (before any data
    is loaded). ``also``: other accepted words, shown after the list."""
    names = names or []
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        given = f"unknown {kind} {', '.join(map(repr, unknown))}" if unknown else f"no {kind} given"
        raise SpecError(f"{option}: {given}; known: {', '.join(known)}{also}")
    return names


class NamesCommand(TyperCommand):
    """A command whose options' help lists valid names: ``{names:KIND}`` placeholders are filled from
    :func:`known_names` when the help is shown (so the lists come from the code's own tables)."""

    def format_help(self, ctx, formatter) -> None:
        names = known_names()
        for param in self.params:
            for kind, values in names.items():
                if param.help and f"{{names:{kind}}}" in param.help:
                    param.help = param.help.replace(f"{{names:{kind}}}", ", ".join(values))
        return super().format_help(ctx, formatter)
