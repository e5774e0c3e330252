"""Users as tasks: support/query sampling, padded batches, and cold-start user splits."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.config import TrainConfig
from recsys.data.ids import IdIndex
from recsys.data.splits import split_users
from recsys.data.tasks import UserLog, iterate_batches, sample_tasks
from recsys.features.space import FeatureSpace
from recsys.meta.batches import build_batch
from recsys.meta.validation import validation_tasks
from recsys.training import validation_tasks_of
from recsys.utils.seeds import Seeds


@pytest.fixture(scope="module")
def setup(synthetic_small):
    ds = synthetic_small
    space = FeatureSpace.fit_dataset(ds)
    return ds, space, UserLog.from_frame(ds.interactions, space.items)


def test_log_is_time_ordered_per_user(setup) -> None:
    _, _, log = setup
    for u in range(0, log.n_users, 37):
        t = log.times[log.indptr[u] : log.indptr[u + 1]]
        assert (np.diff(t) >= 0).all()


def test_support_and_query_are_disjoint_and_sized(setup) -> None:
    _, _, log = setup
    users = np.arange(log.n_users)
    ts = sample_tasks(log, users, np.random.default_rng(0), support_size=(1, 5), query_size=10)
    assert ts.support.shape[1] == 5 and ts.query.shape[1] == 10
    for t in range(0, len(ts), 17):
        s = set(ts.support[t][ts.support[t] >= 0].tolist())
        q = set(ts.query[t][ts.query[t] >= 0].tolist())
        u = ts.users[t]
        lo, hi = log.indptr[u], log.indptr[u + 1]
        assert not s & q and all(lo <= p < hi for p in s | q)
        assert 1 <= len(s) <= 5 and len(q) == min(10, hi - lo - len(s))


def test_temporal_support_is_first_k_and_query_later(setup) -> None:
    _, _, log = setup
    ts = sample_tasks(
        log,
        np.arange(log.n_users),
        np.random.default_rng(0),
        support_size=3,
        query_size=4,
        support_order="temporal",
        query_order="last",
    )
    for t in range(0, len(ts), 11):
        u = ts.users[t]
        lo, hi = log.indptr[u], log.indptr[u + 1]
        assert ts.support[t].tolist() == [lo, lo + 1, lo + 2]
        assert sorted(ts.query[t].tolist()) == list(range(hi - 4, hi))


def test_query_order_last_gives_only_temporal_support_tasks_the_latest_query(setup) -> None:
    _, _, log = setup
    users = np.nonzero(log.counts >= 20)[0]
    ts = sample_tasks(
        log,
        users,
        np.random.default_rng(3),
        support_size=4,
        query_size=5,
        support_order="mixed",
        query_order="last",
    )
    n_temporal = n_random = n_random_last = 0
    for t in range(len(ts)):
        u = ts.users[t]
        lo, hi = log.indptr[u], log.indptr[u + 1]
        support, query = ts.support[t].tolist(), sorted(ts.query[t].tolist())
        if support == list(range(lo, lo + 4)):  # first 4 by time (a random draw almost never is)
            n_temporal += 1
            assert query == list(range(hi - 5, hi))
        else:
            n_random += 1
            n_random_last += query == list(range(hi - 5, hi))
    assert n_temporal > 0.3 * len(ts) and n_random > 0.3 * len(ts)
    assert n_random_last < 0.1 * n_random  # random-support tasks keep a random query


def test_query_order_last_without_timestamps_is_a_random_query(setup) -> None:
    from dataclasses import replace

    _, _, log = setup
    untimed = replace(log, times=None)
    users = np.nonzero(log.counts >= 20)[0]
    kwargs = dict(support_size=4, query_size=5, support_order="temporal")
    last = sample_tasks(untimed, users, np.random.default_rng(3), query_order="last", **kwargs)
    rand = sample_tasks(untimed, users, np.random.default_rng(3), query_order="random", **kwargs)
    assert np.array_equal(last.query, rand.query)


def test_sampling_is_seeded_and_resampled(setup) -> None:
    _, _, log = setup
    users = np.arange(log.n_users)
    a = sample_tasks(log, users, np.random.default_rng(5), support_size=(1, 10), query_size=5)
    b = sample_tasks(log, users, np.random.default_rng(5), support_size=(1, 10), query_size=5)
    c = sample_tasks(log, users, np.random.default_rng(6), support_size=(1, 10), query_size=5)
    assert np.array_equal(a.support, b.support) and not np.array_equal(a.support, c.support)


def test_batch_shapes_and_positions(setup) -> None:
    _, space, log = setup
    ts = sample_tasks(
        log, np.arange(log.n_users), np.random.default_rng(0), support_size=(1, 8), query_size=6
    )
    batch = build_batch(log, space, next(iterate_batches(ts, 16)))
    T = 16
    assert batch.support_items.shape[0] == T and batch.query_items.shape == (T, 6)
    assert batch.support_mask.dtype.is_floating_point is False
    # positions point at the right distinct items
    assert (batch.batch_items[batch.support_pos] == batch.support_items).all()
    assert (batch.batch_items[batch.query_pos] == batch.query_items).all()
    U = batch.batch_items.shape[0]
    assert batch.item_offsets.shape[0] == U * space.item_encoder.n_token_fields + 1
    assert batch.user_offsets.shape[0] == T * space.user_encoder.n_token_fields + 1
    # padding holds zeros
    assert (batch.support_ratings[~batch.support_mask] == 0).all()


def test_splits_temporal_random_and_validation_from_train(synthetic_small) -> None:
    inter = synthetic_small.interactions
    sp = split_users(inter, "temporal", test_fraction=0.2, validation_fraction=0.1)
    first = inter.group_by("user_id").agg(pl.col("timestamp").min())
    join = dict(first.iter_rows())
    assert max(join[u] for u in sp.train) <= min(join[u] for u in sp.test)
    assert max(join[u] for u in sp.validation) <= min(join[u] for u in sp.test)
    assert len(sp.test) == 60 and len(sp.validation) == 30
    r1 = split_users(inter, "random", seed=3)
    r2 = split_users(inter, "random", seed=3)
    assert r1.test.to_list() == r2.test.to_list()
    parts = [set(r1.train), set(r1.validation), set(r1.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(map(len, parts)) == inter["user_id"].n_unique()


def _short_log(counts: list[int]) -> UserLog:
    """User ``u`` rates items 0 .. counts[u] - 1, in that order, all 4.0."""
    frame = pl.DataFrame(
        {
            "user_id": np.repeat(np.arange(len(counts)), counts),
            "item_id": np.concatenate([np.arange(c) for c in counts]),
            "rating": 4.0,
            "timestamp": np.concatenate([np.arange(c) for c in counts]),
        }
    )
    return UserLog.from_frame(frame, IdIndex(pl.Series(np.arange(max(counts)))))


@pytest.mark.parametrize("order", ["temporal", "random"])
def test_validation_tasks_never_have_an_empty_support(order) -> None:
    """Regression: a validation user with 2-5 ratings used to get a task with no support (the query's
    five came first), so model selection averaged in zero-shot tasks no K-shot user brings (14 of 604
    ML-1M temporal validation users). Users too short for the smallest support plus five query ratings
    are left out; the others keep at least ``support_min`` support and five query ratings."""

    log = _short_log([2, 3, 5, 6, 7, 12, 40])
    cfg = TrainConfig(support_min=1, support_max=20, validation_order=order)
    tasks = validation_tasks(log, cfg, np.random.default_rng(0))
    assert sorted(tasks.users.tolist()) == [3, 4, 5, 6]  # 6+ ratings: one support + five query
    n_support, n_query = (tasks.support >= 0).sum(1), (tasks.query >= 0).sum(1)
    assert (n_support >= 1).all() and (n_query >= 5).all()
    fixed = validation_tasks(log, TrainConfig(validation_support=3), np.random.default_rng(0))
    assert sorted(fixed.users.tolist()) == [5, 6]  # 3 support + 5 query needs 8 ratings
    assert ((fixed.support >= 0).sum(1) == 3).all()


def test_validation_users_with_short_histories_only_keep_a_support_and_a_shorter_query() -> None:
    """Where no validation user has the smallest support plus five ratings (a log of short histories),
    leaving them all out would leave training without validation: each user with two ratings or more
    gives a task of at least one support and at least one query rating instead."""

    tasks = validation_tasks(_short_log([1, 2, 3, 5]), TrainConfig(), np.random.default_rng(0))
    assert sorted(tasks.users.tolist()) == [1, 2, 3]
    assert ((tasks.support >= 0).sum(1) >= 1).all() and ((tasks.query >= 0).sum(1) >= 1).all()


def test_validation_users_with_a_single_rating_give_no_tasks_and_training_goes_on_without() -> None:

    assert validation_tasks_of(_short_log([1, 1, 1]), TrainConfig(), Seeds(0)) is None
