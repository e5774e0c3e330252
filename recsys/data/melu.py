"""MeLU's MovieLens-1M split (Lee et al., KDD 2019): ``*_state.json`` with ``*_state_y.json``.

Each state file maps a user id to the MovieIDs the user rated; the matching ``_y`` file holds the
ratings in the same order. The states are ``warm_state`` (training users, items released up to 1997),
``user_cold_state`` (new users, existing items), ``item_cold_state`` (existing users, new items) and
``user_and_item_cold_state``. Canonical source: github.com/hoyeoplee/MeLU, ``movielens/ml-1m/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.schema import ITEM, RATING, USER
from recsys.data.spec import TableSpec
from recsys.data.tables import resolve
from recsys.errors import DataError
from recsys.utils.io import MAX_INPUT_BYTES, read_bytes_bounded

MELU_STATES = ("warm_state", "user_cold_state", "item_cold_state", "user_and_item_cold_state")
STATE = "state"
MELU_SOURCE = "https://github.com/hoyeoplee/MeLU (folder movielens/ml-1m/)"


def _load_json(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"MeLU split file not found; get it from {MELU_SOURCE}", path=str(path))
    data = read_bytes_bounded(path, "MeLU split file", MAX_INPUT_BYTES, error=DataError)  # regular files only
    try:
        return json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=str(path), line=exc.lineno) from None
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:  # not text, nested, huge numbers
        raise DataError(f"not a readable JSON file ({type(exc).__name__})", path=str(path)) from None


def read_melu_state(directory: Path, state: str) -> pl.DataFrame:
    """One state as canonical interactions (user_id, item_id, rating) plus its ``state`` name."""
    items = _load_json(directory / f"{state}.json")
    ratings = _load_json(directory / f"{state}_y.json")
    users, movie_ids, values = [], [], []
    for user, movies in items.items():
        ys = ratings.get(user)
        if ys is None or len(ys) != len(movies):
            raise DataError(
                "ratings do not match the items",
                path=str(directory / f"{state}_y.json"),
                field=str(user),
                expected=f"{len(movies)} ratings as in {state}.json",
                got=None if ys is None else len(ys),
            )
        users.extend([int(user)] * len(movies))
        movie_ids.extend(int(m) for m in movies)
        values.extend(ys)
    return pl.DataFrame(
        {
            USER: np.asarray(users, dtype=np.int64),
            ITEM: np.asarray(movie_ids, dtype=np.int64),
            RATING: np.asarray(values, dtype=np.float32),
            STATE: [state] * len(users),
        }
    )


def read_melu_interactions(spec: TableSpec, base_dir: str | Path | None) -> pl.DataFrame:
    """All four states stacked; ``spec.path`` is the folder holding the JSON files."""
    directory = resolve(spec.path, base_dir)
    frames = [read_melu_state(directory, s) for s in MELU_STATES if (directory / f"{s}.json").exists()]
    if not frames or not (directory / "warm_state.json").exists():
        raise DataError(
            f"MeLU's warm_state.json is missing; get the split from {MELU_SOURCE}", path=str(directory)
        )
    return pl.concat(frames)
