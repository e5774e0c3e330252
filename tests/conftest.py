"""Shared fixtures: tiny datasets written by the tests themselves (nothing needs ../shared)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RECSYS_PROGRESS", "0")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# tracked CLI runs in tests write to a throw-away store, never into the working tree; removed at exit
_SCRATCH = tempfile.mkdtemp(prefix="recsys-tests-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{_SCRATCH}/mlflow.db")
os.environ.setdefault("RECSYS_MLFLOW_SPOOL", os.path.join(_SCRATCH, "spool"))


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def tiny_log(tmp_path: Path) -> Path:
    """A small CSV log in the canonical schema."""
    rows = ["user_id,item_id,rating,timestamp"]
    for u in range(1, 7):
        for j in range(1, 9):
            item = (u * 3 + j) % 12 + 1
            rows.append(f"u{u},i{item},{(u + j) % 5 + 1},{1000 + u * 100 + j}")
    return write(tmp_path / "log.csv", "\n".join(rows) + "\n")


@pytest.fixture(scope="session")
def synthetic_small():
    from recsys.data.synthetic import make_synthetic

    return make_synthetic(n_users=300, n_items=120, n_interactions=9000, seed=1)
