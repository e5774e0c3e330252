"""Atomic, durable file writes and checksums.

Every file the engine writes that a crash could leave half-written (checkpoints, models, reports,
encoders, downloaded datasets) goes through :func:`atomic_write`: the bytes go to a temporary file in
the same directory, are fsync'ed, then renamed over the target, and the directory is fsync'ed. A reader
therefore sees either the old file or the new one, never a torn one.

Reading goes the other way through bounded helpers: :func:`check_input_file` and
:func:`read_bytes_bounded` accept only regular files under a size cap (a FIFO, ``/dev/zero``, a folder or,
for a model folder, a symlink leading out of it is refused before a byte is read), and
:func:`read_json_bounded` / :func:`loads_bounded` parse JSON with its nesting checked first, so that every
failure is the project's own error naming the file.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from recsys.errors import DataError, ModelFileError, RecsysError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry to disk (no-op where the OS does not support it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    pause = _test_write_pause(Path(path))
    with atomic_write(path, "wb") as fh:
        if pause:  # test hook only: hold a half-written temporary file so a test can kill us here
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(pause)
            data = data[len(data) // 2 :]
        fh.write(data)


def _test_write_pause(path: Path) -> float:
    """Test hook: ``RECSYS_TEST_WRITE_PAUSE="NAME=SECONDS"`` makes every write of a file named NAME
    stop for SECONDS half-way through its temporary file (the crash tests kill the process there).
    Unset, as in normal use, it does nothing."""
    spec = os.environ.get("RECSYS_TEST_WRITE_PAUSE")
    if not spec:
        return 0.0
    name, _, seconds = spec.rpartition("=")
    try:
        return float(seconds) if name == path.name else 0.0
    except ValueError:
        return 0.0


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """Temporary siblings :func:`atomic_write` left for ``path`` when a process died mid-write."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def remove_stale_temps(path: str | os.PathLike) -> int:
    """Delete the temporary files a killed writer of ``path`` left behind; returns how many."""
    removed = 0
    for tmp in stale_temps(path):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- bounded reading of files the engine is handed (models, checkpoints, input files) -----------------

MAX_MANIFEST_BYTES = 1 << 20
"""Cap on a model's ``manifest.json`` (a few hundred bytes when written by :meth:`save`)."""
MAX_CONFIG_BYTES = 1 << 20
"""Cap on a model's ``config.json`` (a few kilobytes when written by the engine)."""
MAX_FEATURES_BYTES = 256 << 20
"""Cap on a model's ``features.json``: catalogue ids, titles and vocabularies (about 60 bytes per item
for a catalogue with titles, so a few million items fit)."""
MAX_HISTORY_BYTES = 64 << 20
"""Cap on a model's ``history.json`` (per-epoch metrics and the training summary)."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in any JSON file the engine reads back (its own files
nest 6 levels at most); deeper files are refused before they are parsed."""
MAX_INPUT_BYTES = 8 << 30
"""Cap on one input table (``--interactions``, ``--users``, ``--items``, dataset files): the readers hold
a file in memory a few times over while parsing it."""
MAX_REQUEST_JSON_BYTES = 64 << 20
"""Cap on a JSON request file (``recsys recommend --ratings``): one new user's ratings and features."""

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _file_kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _fail(error: type[Exception], path: str | os.PathLike, message: str) -> Exception:
    """``error`` for ``path``: DataError takes the path as a field, the others as a message prefix."""

    if isinstance(error, type) and issubclass(error, DataError):
        return error(message, path=str(path))
    return error(f"{path}: {message}")


def _inside(path: Path, folder: str | os.PathLike | None, what: str, error: type[Exception]) -> Path:
    """``path`` with links resolved; with ``folder``, a path that resolves outside it is refused."""
    if folder is None:
        return path
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise _fail(error, path, f"{what} not found") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise _fail(error, path, f"cannot resolve {what} ({exc})") from None
    root = Path(folder).resolve()
    if not resolved.is_relative_to(root):
        raise _fail(error, path, f"{what} is a link to {resolved}, outside {root}; refusing to read it")
    return resolved


def _mb(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MB" if n >= 1 << 20 else f"{n:,} bytes"


def check_input_file(
    path: str | os.PathLike,
    what: str = "input file",
    max_bytes: int | None = MAX_INPUT_BYTES,
    *,
    error: type[Exception] | None = None,
    inside: str | os.PathLike | None = None,
) -> os.stat_result:
    """Refuse, before reading a byte, anything but a regular file of at most ``max_bytes``: a missing
    file, a directory, a FIFO (reading it would wait forever), a device such as ``/dev/zero`` (endless),
    a socket; with ``inside``, a path that resolves (through symlinks) outside that folder.

    Raises ``error`` (default :class:`~recsys.errors.DataError`) naming the file and what it is;
    returns the file's ``stat``."""

    error = error or DataError
    path = Path(path)
    resolved = _inside(path, inside, what, error)
    try:
        st = os.stat(resolved)
    except FileNotFoundError:
        raise _fail(error, path, f"{what} not found") from None
    except OSError as exc:
        raise _fail(error, path, f"cannot read {what} ({exc.strerror or exc})") from None
    _check_stat(st, path, what, max_bytes, error)
    return st


def _check_stat(
    st: os.stat_result, path: Path, what: str, max_bytes: int | None, error: type[Exception]
) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _fail(error, path, f"{what} is {_file_kind(st.st_mode)}, expected a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise _fail(error, path, f"{what} is too large ({_mb(st.st_size)}; at most {_mb(max_bytes)})")


def read_bytes_bounded(
    path: str | os.PathLike,
    what: str = "file",
    max_bytes: int | None = None,
    *,
    error: type[Exception] | None = None,
    inside: str | os.PathLike | None = None,
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (checks as :func:`check_input_file`).

    The file is opened without blocking and checked through its descriptor, so a FIFO or a device
    swapped in after a check is still refused, and never more than ``max_bytes`` are read."""

    error = error or ModelFileError
    path = Path(path)
    resolved = _inside(path, inside, what, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if inside is not None:
        flags |= getattr(os, "O_NOFOLLOW", 0)  # resolved: a link appearing now is a race, refused
    try:
        fd = os.open(resolved, flags)
    except FileNotFoundError:
        raise _fail(error, path, f"{what} not found") from None
    except IsADirectoryError:
        raise _fail(error, path, f"{what} is a directory, expected a regular file") from None
    except OSError as exc:
        raise _fail(error, path, f"cannot read {what} ({exc.strerror or exc})") from None
    try:
        _check_stat(os.fstat(fd), path, what, max_bytes, error)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        limit = -1 if max_bytes is None else max_bytes + 1
        try:
            data = fh.read(limit)
        except OSError as exc:
            raise _fail(error, path, f"cannot read {what} ({exc.strerror or exc})") from None
    if max_bytes is not None and len(data) > max_bytes:  # the file grew after the check
        raise _fail(error, path, f"{what} is too large (more than {_mb(max_bytes)})")
    return data


_JSON_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_JSON_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """Deepest nesting of arrays and objects in JSON text (brackets inside strings ignored), computed
    without parsing: no recursion, time and memory linear in the text (C-speed scans)."""
    import numpy as np

    brackets = _JSON_STRING.sub(b"", _JSON_ESCAPE.sub(b"", data)).translate(None, _NOT_BRACKETS)
    depth, deepest, chunk = 0, 0, 1 << 22
    for start in range(0, len(brackets), chunk):
        arr = np.frombuffer(brackets, dtype=np.uint8, count=min(chunk, len(brackets) - start), offset=start)
        steps = np.where((arr == ord("[")) | (arr == ord("{")), 1, -1).astype(np.int32)
        levels = np.cumsum(steps, dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
    return deepest


def loads_bounded(
    data: bytes | str,
    where: str | os.PathLike,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    error: type[Exception] | None = None,
) -> Any:
    """``json.loads`` that never raises anything but ``error`` (default ModelFileError) naming
    ``where``: nesting deeper than ``max_depth`` is refused before parsing (no RecursionError), and text
    that is not UTF-8, not JSON, or holds integers past Python's digit limit is "damaged"."""

    error = error or ModelFileError

    def fail(detail: str) -> Exception:  # the engine's own files are "damaged"; inputs are "invalid"
        return _fail(error, where, f"damaged ({detail})" if error is ModelFileError else detail)

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    depth = json_depth(raw)
    if depth > max_depth:
        raise fail(f"cannot read: JSON nested {depth} levels deep, at most {max_depth}")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text at byte {exc.start}; expected a JSON file") from None
    except json.JSONDecodeError as exc:
        raise fail(f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4,300 digits
        raise fail(f"cannot read the JSON ({type(exc).__name__}: {str(exc)[:100]})") from None


def read_json_bounded(
    path: str | os.PathLike,
    max_bytes: int,
    max_depth: int = MAX_JSON_DEPTH,
    *,
    what: str = "JSON file",
    error: type[Exception] | None = None,
    inside: str | os.PathLike | None = None,
) -> Any:
    """A JSON file read with bounds: a regular file (inside ``inside`` when given) of at most
    ``max_bytes``, nested at most ``max_depth`` levels; every failure is ``error`` (default
    ModelFileError) naming the file."""
    data = read_bytes_bounded(path, what, max_bytes, error=error, inside=inside)
    return loads_bounded(data, path, max_depth=max_depth, error=error)


# ---- temporary files and folder locks (operations) ----------------------------------------------

LOCK_NAME = ".lock"
"""The lock file a training run holds in its ``--out`` folder (removed when the run ends)."""


def remove_temps_in(folder: str | os.PathLike) -> int:
    """Delete the temporary files :func:`atomic_write` leaves (``.NAME.XXXX.tmp``) directly in
    ``folder`` (not in sub-folders, which may be other runs' folders); returns how many. Only for a
    folder this process owns (see :class:`FolderLock`): a writer still running there would lose its
    temporary file."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


class FolderLock:
    """An exclusive, non-blocking lock on a folder: ``flock`` on ``FOLDER/.lock``, which holds the
    owner's pid. A second process fails at once (:class:`~recsys.errors.RecsysError` naming the folder
    and the pid). The lock goes with the process: a killed holder leaves a file nobody holds, which
    the next run takes over. :meth:`release` removes the file. Without ``fcntl`` (Windows) it does
    nothing."""

    def __init__(self, folder: str | os.PathLike, what: str = "training run") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)

                raise RecsysError(
                    f"{self.folder} is in use by another {self.what} (pid {owner}); wait for it to end "
                    "or choose another --out"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the previous holder may have removed the file between our open and our flock
                st, now = os.fstat(fd), os.stat(self.path)
                same = (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)
        raise OSError(f"{self.path}: could not take the lock (the file keeps changing)")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
