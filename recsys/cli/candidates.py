"""The candidate options of ``recommend`` and ``recommend-batch``: ``--items FILE`` (allow-list),
``--exclude FILE`` (deny-list) and ``--where FIELD=VALUE[,VALUE...]`` (repeatable), turned into the
``items``, ``exclude`` and ``where`` arguments of the Python API (:mod:`recsys.candidates`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ItemsOpt = Annotated[
    Path | None,
    typer.Option(
        "--items",
        help="Recommend only these items: a file with one item id per line, or a JSON list of ids.",
    ),
]
ExcludeOpt = Annotated[
    Path | None,
    typer.Option(
        "--exclude", help="Never recommend these items: a file with one item id per line, or a JSON list."
    ),
]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="Only items with one of these values of an item field, e.g. --where genre=Comedy or "
        "--where genre=Comedy,Drama (any of them); repeat for several fields (all must match).",
    ),
]

MAX_ID_FILE_BYTES = 64 << 20
"""Cap on an ``--items`` / ``--exclude`` file."""


def candidate_args(items: Path | None, exclude: Path | None, where: list[str] | None) -> dict[str, Any]:
    """The ``items``, ``exclude`` and ``where`` keyword arguments of the options (None when not given)."""
    from recsys.candidates import parse_where_terms
    from recsys.errors import ScoringInputError

    allowed = read_id_file(items, "--items") if items is not None else None
    if allowed is not None and not allowed:
        raise ScoringInputError(f"--items {items}: the file lists no item ids")
    try:
        conditions = parse_where_terms(where) if where else None
    except ScoringInputError as exc:
        raise ScoringInputError(f"--{exc}") from None
    return {
        "items": allowed,
        "exclude": read_id_file(exclude, "--exclude") if exclude is not None else None,
        "where": conditions,
    }


def read_id_file(path: Path, flag: str) -> list[Any]:
    """Item ids from a file: a JSON list (ids kept as written: numbers or strings), else one id per line
    (surrounding spaces and empty lines ignored). A regular file of at most 64 MB."""
    from recsys.errors import ScoringInputError, shown
    from recsys.utils import io as io_utils

    what = f"{flag} file"
    data = io_utils.read_bytes_bounded(path, what, MAX_ID_FILE_BYTES, error=ScoringInputError)
    if data.lstrip()[:1] == b"[":
        ids = io_utils.loads_bounded(data, path, max_depth=2, error=ScoringInputError)
        bad = [i for i in ids if isinstance(i, (bool, list, dict)) or i is None or isinstance(i, float)]
        if bad:
            raise ScoringInputError(
                f"{path}: {what} must list item ids (integers or strings), got {shown(bad[0])}"
            )
        return ids
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScoringInputError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
