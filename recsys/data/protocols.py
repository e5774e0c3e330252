"""Cold-start evaluation protocols: which users are new, what trains, and each new user's task.

Users are split into train / validation / new (test); validation always comes from the training
users and is the only thing model selection sees. New users are touched only for the final report.

* **temporal** — new users are the ``test_fraction`` who joined last (first rating). Training uses
  only interactions *before the earliest new user's first rating*, so nothing later than any
  support set reaches training. Each new user's support is its first K ratings by time, its query its
  last 10; users with fewer than K + 10 ratings are skipped for that K.
* **random** — new users are a seeded random ``test_fraction``; support is K random ratings and the
  query 10 other random ones (users with fewer than K + 10 ratings are skipped for that K).
* **melu** — MeLU's published MovieLens-1M split: ``warm_state`` users train (on their warm-state
  ratings only); each scenario's users with 13 to 100 ratings are tested with 10 random query ratings
  and the rest as support, averaged over several query draws. Scenarios: ``user_cold_state`` (new
  users, existing items — the headline), ``item_cold_state``, ``user_and_item_cold_state``. The
  validation users (the baselines' tuning and the meta-learner's choices) are warm users with 13 to 100
  warm ratings, as the new users are: 40 % of the warm users have more, and choices made on their
  long histories (their random query items rarer than a new user's) did not carry over to new users.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from recsys.data.dataset import Dataset
from recsys.data.melu import STATE
from recsys.data.schema import TIMESTAMP, USER
from recsys.data.splits import split_users
from recsys.data.tasks import TaskSet, UserLog, sample_tasks
from recsys.errors import DataError, SpecError

QUERY_SIZE = 10
MELU_MIN, MELU_MAX = 13, 100
MELU_SCENARIOS = ("user_cold_state", "item_cold_state", "user_and_item_cold_state")


@dataclass
class ProtocolSplit:
    """What one protocol (and seed) gives: training data, validation users, and the new users' data."""

    protocol: str
    seed: int
    train: pl.DataFrame
    """Interactions that may be used for training (validation users' included: the trainer holds them out)."""
    validation_users: pl.Series
    test: dict[str, pl.DataFrame]
    """Scenario name -> interactions of its new users (the only place test data lives)."""
    cutoff: int | None = None
    """Temporal protocol: training interactions are all earlier than this timestamp."""
    info: dict = field(default_factory=dict)

    @property
    def test_users(self) -> pl.Series:
        return pl.concat([f[USER].unique() for f in self.test.values()]).unique().sort()

    def fingerprint(self) -> str:
        """A digest of the new users, recorded with a trained model to detect leaks."""
        ids = ",".join(str(u) for u in self.test_users.to_list())
        return hashlib.sha256(f"{self.protocol}:{self.seed}:{ids}".encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "train_interactions": self.train.height,
            "train_users": self.train[USER].n_unique(),
            "validation_users": len(self.validation_users),
            "test_users": {k: v[USER].n_unique() for k, v in self.test.items()},
            "cutoff": self.cutoff,
            "fingerprint": self.fingerprint(),
        }


def split_protocol(
    ds: Dataset,
    protocol: Literal["temporal", "random", "melu"],
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
) -> ProtocolSplit:
    inter = ds.interactions
    if protocol == "melu":
        if STATE not in inter.columns:
            raise SpecError("the melu protocol needs MeLU's split files: use --dataset melu-ml1m")
        users = split_users(  # validation users stand in for new users: the same 13-100 ratings
            inter,
            "melu",
            validation_fraction=validation_fraction,
            seed=seed,
            validation_ratings=(MELU_MIN, MELU_MAX),
        )
        warm = inter.filter(pl.col(STATE) == "warm_state")
        tests = {s: inter.filter(pl.col(STATE) == s) for s in MELU_SCENARIOS}
        tests = {s: f for s, f in tests.items() if f.height}
        return ProtocolSplit("melu", seed, warm, users.validation, tests)
    if protocol not in ("temporal", "random"):
        raise SpecError(f"unknown protocol {protocol!r}; expected temporal, random or melu")
    users = split_users(
        inter, protocol, test_fraction=test_fraction, validation_fraction=validation_fraction, seed=seed
    )
    if len(users.test) == 0:
        raise DataError(
            f"the {protocol} protocol holds out {test_fraction:.0%} of the users as new users, and "
            f"{inter[USER].n_unique()} user(s) leave none to hold out; log more users"
        )
    is_test = pl.col(USER).is_in(users.test.implode())
    test = inter.filter(is_test)
    train = inter.filter(~is_test)
    cutoff = None
    if protocol == "temporal":
        cutoff = int(test[TIMESTAMP].min())
        train = train.filter(pl.col(TIMESTAMP) < cutoff)
    validation = users.validation.filter(users.validation.is_in(train[USER].unique().implode()))
    return ProtocolSplit(protocol, seed, train, validation, {"new_users": test}, cutoff)


def task_order(protocol: str | None) -> str | None:
    """The support order of ``protocol``'s new-user tasks (:func:`new_user_tasks`): ``temporal`` (the first
    ratings by time, the latest as query) or ``random`` (``random`` and ``melu``); None for no holdout
    (``none``). Validation tasks that stand in for a protocol's new users are drawn in this order: the
    baselines' tuning tasks and, under ``train.validation_order = "auto"``, the meta-learner's
    (:func:`recsys.workflows.protocol_validation`)."""
    if protocol in (None, "none"):
        return None
    return "temporal" if protocol == "temporal" else "random"


def new_user_tasks(protocol: str, log: UserLog, k: int | None, *, seed: int = 0, draw: int = 0) -> TaskSet:
    """The evaluation tasks of new users in ``log`` for support size ``k`` (melu: all but the query).

    ``draw`` selects one of several seeded random draws (melu averages over draws).
    """
    rng = np.random.default_rng([seed, 31, draw, k or 0])
    counts = log.counts
    if protocol == "melu":
        users = np.nonzero((counts >= MELU_MIN) & (counts <= MELU_MAX))[0]
        return sample_tasks(log, users, rng, support_size=counts[users] - QUERY_SIZE, query_size=QUERY_SIZE)
    if k is None:
        raise SpecError(f"protocol {protocol} needs a support size K")
    users = np.nonzero(counts >= k + QUERY_SIZE)[0]
    if protocol == "temporal":
        return sample_tasks(
            log,
            users,
            rng,
            support_size=k,
            query_size=QUERY_SIZE,
            support_order="temporal",
            query_order="last",
        )
    return sample_tasks(log, users, rng, support_size=k, query_size=QUERY_SIZE)
