"""The hybrid head's item-item matrices: each out-of-fold copy never saw its own fold's users."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.tasks import UserLog
from recsys.models.item_item import fit_item_item


def _log(users: list[list[int]]) -> UserLog:
    indptr = np.concatenate([[0], np.cumsum([len(u) for u in users])]).astype(np.int64)
    items = np.array([i for u in users for i in u], dtype=np.int64)
    ratings = np.full(len(items), 4.0, dtype=np.float32)
    return UserLog(pl.Series("user_id", [f"u{i}" for i in range(len(users))]), indptr, items, ratings, None)


def test_an_out_of_fold_item_item_matrix_never_contains_its_own_folds_users() -> None:
    """Fold f's matrix is fitted on the training users whose row parity is not f. Two planted users
    each create a co-occurrence no other user has: items 10 and 11 (row 5, fold 1) and items 12 and
    13 (row 4, fold 0). Each pair shows up in the other fold's matrix and in the full one, never in
    the planted user's own fold's matrix."""
    rng = np.random.default_rng(0)
    users = [sorted(rng.choice(10, size=4, replace=False).tolist()) for _ in range(10)]
    users[5] = [1, 2, 10, 11]  # fold 1 (odd row)
    users[4] = [3, 4, 12, 13]  # fold 0 (even row)
    train = _log(users)
    full, folds, chosen = fit_item_item(train, None, 14, threshold=4.0, implicit=False)
    assert chosen.startswith("ease:") and folds.shape == (2, 14, 14)
    assert full[10, 11] > 0 and full[12, 13] > 0
    # row 5's pair: in fold 0's matrix (fitted on odd rows), absent from its own fold 1's
    assert folds[0][10, 11] > 0 and folds[0][11, 10] > 0
    assert folds[1][10, 11] == 0 and folds[1][11, 10] == 0
    assert not folds[1][[10, 11]].any() and not folds[1][:, [10, 11]].any()
    # row 4's pair: the other way round
    assert folds[1][12, 13] > 0 and folds[1][13, 12] > 0
    assert folds[0][12, 13] == 0 and folds[0][13, 12] == 0
    assert not folds[0][[12, 13]].any() and not folds[0][:, [12, 13]].any()


def test_the_blend_chooses_liked_only_ease_where_only_the_liked_items_predict_what_users_like() -> None:
    """The planted log of tests/test_fair_baselines.py: users like a cluster and rate another one low,
    and the low-rated cluster co-occurs more. On validation users the liked-only EASE candidate ranks the
    liked cluster, the every-rating one the disliked cluster, so the blend chooses ``ease-liked``."""
    from tests.test_fair_baselines import N_ITEMS, as_log, planted_log

    train, validation = as_log(planted_log(120, seed=0)), as_log(planted_log(40, seed=1))
    _, _, chosen = fit_item_item(train, validation, N_ITEMS, threshold=4.0, implicit=False)
    assert chosen.startswith("ease-liked:")
    _, _, plain = fit_item_item(train, validation, N_ITEMS, threshold=None, implicit=False)
    assert plain.startswith("ease:")  # no relevance threshold: no liked-only candidates
    _, _, implicit = fit_item_item(train, validation, N_ITEMS, threshold=4.0, implicit=True)
    assert implicit.startswith("ease:")


def test_the_blends_validation_tasks_follow_the_training_order_when_asked() -> None:
    """``model.hybrid.item_item_tasks = "as-training"``: with a temporal support order each validation
    user's support is their first 5 ratings by time and the query their latest; the default (random
    order) draws both at random."""
    from recsys.models.item_item import _validation_tasks

    n = 40
    users = [list(range(u % 7, u % 7 + 20)) for u in range(n)]  # in time order within a user
    log = _log(users)
    log = UserLog(log.user_ids, log.indptr, log.items, log.ratings, np.arange(len(log.items), dtype=np.int64))
    tasks, support, _ = _validation_tasks(log, np.random.default_rng(0), 4.0, ("temporal", "last"))
    first = np.array([u[:5] for u in users])[tasks.users]
    np.testing.assert_array_equal(np.sort(support, axis=1), np.sort(first, axis=1))
    tasks, support, _ = _validation_tasks(log, np.random.default_rng(0), 4.0)
    assert not np.array_equal(
        np.sort(support, axis=1), np.sort(np.array([u[:5] for u in users])[tasks.users], axis=1)
    )


def test_item_item_tasks_as_training_reaches_the_blends_choice(monkeypatch) -> None:
    """The config option travels from ``fit_item_item_blend`` to the validation tasks' order."""
    from types import SimpleNamespace

    from recsys import training
    from recsys.config import RecommenderConfig

    seen = []
    dense = (np.zeros((8, 8), np.float32), np.zeros((2, 8, 8), np.float32), "ease:8000")
    monkeypatch.setattr(training, "fit_item_item", lambda *a, **kw: seen.append(kw["task_order"]) or dense)
    head = SimpleNamespace(set_item_item=lambda *a: None)
    space = SimpleNamespace(n_items=8, implicit=False)
    for option, order in (("random", ("random", "random")), ("as-training", ("mixed", "last"))):
        cfg = RecommenderConfig().override(**{"model.hybrid.item_item_tasks": option})
        training.fit_item_item_blend(head, None, None, space, cfg, np.random.default_rng(0))
        assert seen.pop() == order
