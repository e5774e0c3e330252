"""Reading a config file (TOML or JSON) safely: bounded, regular files only, one clear error."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from recsys.errors import SpecError


def read_config_file(path: Path, max_bytes: int) -> dict[str, Any]:
    """The raw object of a TOML (``.toml``) or JSON config file. Every problem (missing, not a regular
    file, over ``max_bytes``, not UTF-8, unparsable or nested too deeply, not an object) is one
    SpecError line naming the file; the values are checked by the caller."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SpecError(f"config file not found: {path}") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError(f"{path}: is a folder, expected a config file (TOML or JSON)")
    if not stat.S_ISREG(info.st_mode):
        raise SpecError(f"{path}: not a regular file, expected a config file (TOML or JSON)")
    if info.st_size > max_bytes:
        raise SpecError(f"{path}: config file of {info.st_size:,} bytes, over the {max_bytes:,}-byte limit")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO swapped in never blocks
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise SpecError(f"{path}: not a regular file, expected a config file (TOML or JSON)")
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise SpecError(f"{path}: config file over the {max_bytes:,}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except RecursionError:
        raise SpecError(f"{path}: cannot parse config (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, TOMLDecodeError, an integer of too many digits
        first = (str(exc).splitlines() or [""])[0][:200]
        raise SpecError(f"{path}: cannot parse config ({first})") from None
    if not isinstance(raw, dict):
        raise SpecError(
            f"{path}: a config is an object with model, meta and train sections, "
            f"got a JSON {type(raw).__name__}"
        )
    return raw
