"""Atomic, durable file writes and checksums.

Every file the engine writes that a crash could leave half-written (checkpoints, models, reports,
encoders, downloaded datasets) goes through :func:`atomic_write`: the bytes go to a temporary file in
the same directory, are fsync'ed, then renamed over the target, and the directory is fsync'ed. A reader
therefore sees either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


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
                from recsys.errors import RecsysError

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
