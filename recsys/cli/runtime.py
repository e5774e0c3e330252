"""How the command line runs one command: verbosity (``-v`` before or after the command), the
clean-ups a command registers (locks, temporary files) and its option groups (see
:mod:`recsys.cli.options`)."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

from recsys.cli.options import VerboseOpt, expand_option_groups

state: dict[str, Any] = {"verbose": False, "depth": 0}
"""``verbose``: whether -v/--verbose was given (before or after the command): main() shows tracebacks
then. ``depth``: how many commands are running (0: a command function called as plain Python)."""

_cleanups: list[Callable[[], None]] = []
"""Callbacks to run when the running command ends (see :func:`on_close`)."""


def reset() -> None:
    """A fresh state for a new command line (:func:`recsys.cli.main`)."""
    state["verbose"], state["depth"] = False, 0


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose:
        state["verbose"] = True
    logging.getLogger().setLevel(logging.INFO if state["verbose"] else logging.WARNING)


def on_close(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the current command ends, however it ends (success, error, Ctrl-C): the
    command wrapper (:func:`command`) runs them in a ``finally``."""
    if state.get("depth", 0) > 0:
        _cleanups.append(callback)
    else:  # called as a plain function, outside the command line
        import atexit

        atexit.register(callback)


def _run_cleanups(mark: int) -> None:
    while len(_cleanups) > mark:
        cleanup = _cleanups.pop()
        try:
            cleanup()
        except Exception as exc:  # a clean-up must not hide the command's own outcome
            logging.getLogger("recsys.cli").warning("clean-up failed: %s: %s", type(exc).__name__, exc)


def command(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as the command line runs it: its option groups spread into options, a ``-v/--verbose``
    option of its own (so that ``recsys train -v`` works like ``recsys -v train``; click parses it, so
    an option value that happens to be "-v" stays a value), and with the clean-ups it registers
    (:func:`on_close`: locks, temporary files) run however it ends."""
    func = expand_option_groups(func)
    sig = inspect.signature(func, eval_str=True)

    @functools.wraps(func)
    def wrapper(*args: Any, verbose: bool = False, **kwargs: Any) -> Any:
        if verbose:
            setup_logging(True)
        state["depth"] = state.get("depth", 0) + 1
        mark = len(_cleanups)
        try:
            return func(*args, **kwargs)
        finally:
            state["depth"] -= 1
            _run_cleanups(mark)

    extra = inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=VerboseOpt)
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}  # type: ignore[attr-defined]
    return wrapper


# the -v of a command group (`recsys data -v stats`); no docstring: typer would show it as the group's help
def group_verbose(verbose: VerboseOpt = False) -> None:
    if verbose:
        setup_logging(True)
