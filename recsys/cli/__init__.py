"""The ``recsys`` command line.

Every command has ``--help``. Errors the engine raises on purpose (bad data, unknown items, damaged
model files...) and usage errors print one clear line on stderr and exit with status 2
(:data:`EXIT_USAGE`); an unexpected failure prints one line and exits with status 1
(:data:`EXIT_FAILURE`; the traceback with ``-v``, accepted before or after the command); success is
status 0; an interrupted command exits with 130 (:data:`EXIT_INTERRUPTED`).

The package: this module (the command table, :func:`main`), :mod:`~recsys.cli.options` (every option
defined once, and the option groups), :mod:`~recsys.cli.runtime` (verbosity, clean-ups),
:mod:`~recsys.cli.common` (shared helpers) and one module per family of commands
(:mod:`~recsys.cli.data`, :mod:`~recsys.cli.train`, :mod:`~recsys.cli.score`,
:mod:`~recsys.cli.evaluate`, :mod:`~recsys.cli.catalogue`, :mod:`~recsys.cli.tracking`).

The commands import the rest of recsys inside their functions, on purpose: those imports are lazy so
that `recsys --help` and the light commands start without loading torch, polars, scipy or MLflow
(tests/test_architecture.py exempts the recsys.cli package from the per-import "lazy" comment).
"""

from __future__ import annotations

import sys

import typer

from recsys.cli.catalogue import catalogue_add, catalogue_hide, catalogue_show
from recsys.cli.common import NamesCommand
from recsys.cli.data import data_download, data_stats, data_synth
from recsys.cli.evaluate import evaluate, evaluate_onboarding_cmd
from recsys.cli.options import VerboseOpt
from recsys.cli.runtime import command, group_verbose, reset, setup_logging, state
from recsys.cli.score import onboard, recommend, recommend_batch
from recsys.cli.similar import similar
from recsys.cli.tracking import tracking_promote, tracking_sync
from recsys.cli.train import train
from recsys.errors import RecsysError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
"""Exit statuses: success; an unexpected failure or a command that reports failure; a usage or data
error (one line); interrupted (Ctrl-C)."""

app = typer.Typer(
    help="recsys: cold-start recommendations for new users from a handful of ratings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Download, inspect and generate datasets.", no_args_is_help=True)
catalogue_app = typer.Typer(
    help="Update a trained model's catalogue without retraining: add, hide or show items.",
    no_args_is_help=True,
)
tracking_app = typer.Typer(
    help="MLflow: send kept tracking calls, promote registered models.", no_args_is_help=True
)


@app.callback()
def _main(verbose: VerboseOpt = False) -> None:
    setup_logging(verbose)


app.add_typer(data_app, name="data")
data_app.callback()(group_verbose)
data_app.command("download")(command(data_download))
data_app.command("stats")(command(data_stats))
data_app.command("synth")(command(data_synth))
app.command("train")(command(train))
app.command("recommend")(command(recommend))
app.command("recommend-batch")(command(recommend_batch))
app.command("similar")(command(similar))
app.command("evaluate", cls=NamesCommand)(command(evaluate))
app.command("onboard", cls=NamesCommand)(command(onboard))
app.command("evaluate-onboarding", cls=NamesCommand)(command(evaluate_onboarding_cmd))
app.add_typer(catalogue_app, name="catalogue")
catalogue_app.callback()(group_verbose)
catalogue_app.command("add")(command(catalogue_add))
catalogue_app.command("hide")(command(catalogue_hide))
catalogue_app.command("show")(command(catalogue_show))
app.add_typer(tracking_app, name="tracking")
tracking_app.callback()(group_verbose)
tracking_app.command("sync")(command(tracking_sync))
tracking_app.command("promote")(command(tracking_promote))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Exit status: 0 on success; 2 for a usage or data error (the
    engine's :class:`RecsysError`, a bad option: one line); 1 for an unexpected failure (one line,
    the traceback with -v) or a command that reports failure (e.g. tracking calls left unsent);
    130 when interrupted."""
    reset()
    try:
        code = app(args=argv, standalone_mode=False)
    except RecsysError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if isinstance(exc, _usage_error_types()) and callable(getattr(exc, "show", None)):
            exc.show()  # usage errors: an unknown option, a missing or malformed value
            sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
        sys.exit(_unexpected(exc))
    if isinstance(code, int) and not isinstance(code, bool) and code != EXIT_OK:
        if code == EXIT_INTERRUPTED:
            typer.echo("interrupted", err=True)
        sys.exit(code)


def _unexpected(exc: BaseException) -> int:
    """A failure the engine did not foresee: one line (the traceback first with -v); status 1."""
    import traceback

    if state["verbose"]:
        traceback.print_exception(exc)
    lines = str(exc).strip().splitlines()
    msg = lines[0][:500] if lines else ""
    hint = "" if state["verbose"] else " (run with -v for the traceback)"
    typer.echo(f"error: unexpected {type(exc).__name__}: {msg}{hint}", err=True)
    return EXIT_FAILURE


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's usage-error base classes: typer >= 0.2x vendors its own click, whose errors derive from
    ``typer.TyperException`` rather than ``click.ClickException``."""
    import click

    vendored = getattr(typer, "TyperException", None)
    return (click.ClickException,) + ((vendored,) if vendored is not None else ())
