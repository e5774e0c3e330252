"""Cold-start splits of users into train / validation / test (new users).

Validation users are always carved out of the training users; test users are touched only for the
final report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from recsys.data.schema import TIMESTAMP, USER
from recsys.errors import SpecError


@dataclass
class UserSplit:
    """Raw user ids of each part."""

    train: pl.Series
    validation: pl.Series
    test: pl.Series
    method: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def split_users(
    interactions: pl.DataFrame,
    method: Literal["temporal", "random", "melu"] = "random",
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    seed: int = 0,
    validation_ratings: tuple[int, int] | None = None,
) -> UserSplit:
    """Split users for cold-start evaluation.

    ``temporal``: the ``test_fraction`` of users who joined last (by first rating) are new users; the
    validation users are the latest joiners among the rest. ``random``: seeded random parts. ``melu``:
    MeLU's published states (``warm_state`` trains, ``user_cold_state`` tests), validation drawn from
    the warm users; with ``validation_ratings = (lo, hi)`` only from those with ``lo`` to ``hi`` warm
    ratings (the protocol's new users' range), as many as the fraction asks of all warm users where
    enough have that many. ``validation_fraction`` is a fraction of all users taken from the training
    part.
    """
    if not 0 <= test_fraction < 1 or not 0 <= validation_fraction < 1 - test_fraction:
        raise SpecError(f"bad split fractions test={test_fraction}, validation={validation_fraction}")
    rng = np.random.default_rng(seed)
    if method == "melu":
        if "state" not in interactions.columns:
            raise SpecError("the melu split needs MeLU's data (a 'state' column); load the melu-ml1m dataset")
        per_user = interactions.filter(pl.col("state") == "warm_state").group_by(USER).len().sort(USER)
        warm, counts = per_user[USER], per_user["len"].to_numpy()  # each warm user's warm ratings
        test = interactions.filter(pl.col("state") == "user_cold_state")[USER].unique().sort()
        pool = np.arange(len(warm))
        if validation_ratings is not None:
            pool = np.nonzero((counts >= validation_ratings[0]) & (counts <= validation_ratings[1]))[0]
        n_val = min(round(validation_fraction * len(warm)), len(pool))
        is_val = np.zeros(len(warm), dtype=bool)
        is_val[pool[rng.permutation(len(pool))[:n_val]]] = True
        return UserSplit(warm.filter(~is_val), warm.filter(is_val), test, method)
    if method == "temporal":
        if TIMESTAMP not in interactions.columns:
            raise SpecError("the temporal split needs timestamps; use method='random'")
        first = interactions.group_by(USER).agg(pl.col(TIMESTAMP).min().alias("t")).sort(["t", USER])
        users = first[USER]
    elif method == "random":
        users = interactions[USER].unique().sort()
        users = users.gather(rng.permutation(len(users)))
    else:
        raise SpecError(f"unknown split method {method!r}; expected temporal, random or melu")
    n = len(users)
    n_test = round(test_fraction * n)
    n_val = round(validation_fraction * n)
    n_train = n - n_test - n_val
    return UserSplit(users[:n_train], users[n_train : n_train + n_val], users[n_train + n_val :], method)
