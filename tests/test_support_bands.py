"""Added paths weighted by support size (:mod:`recsys.models.support_bands`): a user's weight is that of
the band of their support's number of ratings: 1-2 (the weight chosen on validation users' one- and
two-rating supports, :func:`recsys.added_paths.short_tasks`, only where it beats the trained range's beyond
noise), 3-20 (the rest of the range the model trains on; fit and weight chosen on the validation tasks as
without bands) or above 20 (the weight chosen on validation users' long supports,
:func:`recsys.added_paths.long_tasks`), so a user with 50 ratings is not weighted as one with 5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys import added_paths, training
from recsys.data.tasks import TaskSet, UserLog, concat_tasks
from recsys.errors import ModelFileError
from recsys.meta.scoring import score_catalogue
from recsys.models.classical import ImplicitALS
from recsys.models.support_bands import BAND_EDGES, BAND_NAMES, N_BANDS, band_weight, bands_of, widen
from recsys.persistence import check_shapes, load_weights
from tests.test_als_path import choose_planted, restoring_added_paths
from tests.test_path_weights import _ds, _validation

rec = pytest.fixture(restoring_added_paths, name="rec")


def test_a_support_falls_in_the_band_of_its_number_of_ratings() -> None:
    sizes = np.array([0, 1, 2, 3, 6, 20, 21, 90])
    assert bands_of(sizes).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert BAND_EDGES == (2, 20) and N_BANDS == 3 == len(BAND_NAMES)


def test_the_weight_a_user_gets_under_vmap_is_their_bands() -> None:
    weights = torch.tensor([0.5, 3.0, 7.0])
    sizes = [1, 2, 3, 6, 20, 21, 40]
    masks = torch.stack([(torch.arange(40) < n).float() for n in sizes])
    got = torch.vmap(lambda m: band_weight(weights, m))(masks)
    assert got.tolist() == weights[torch.from_numpy(bands_of(np.array(sizes)))].tolist()


def test_joined_task_sets_keep_their_tasks_padded_to_the_widest() -> None:
    a = TaskSet(np.array([0]), np.array([[3, 4]]), np.array([[5]]))
    b = TaskSet(np.array([2, 1]), np.array([[7], [8]]), np.array([[9, 10, 11], [12, -1, -1]]))
    both = concat_tasks(a, b)
    assert both.users.tolist() == [0, 2, 1]
    assert both.support.tolist() == [[3, 4], [7, -1], [8, -1]]
    assert both.query.tolist() == [[5, -1, -1], [9, 10, 11], [12, -1, -1]]


def test_long_tasks_have_supports_above_twenty_and_a_full_query(rec) -> None:
    log = UserLog.from_frame(_ds().interactions, rec.space.items)
    tasks = added_paths.long_tasks(log, rec.config)
    query = rec.config.train.validation_query
    lo, hi = added_paths.LONG_SUPPORT
    assert len(tasks) == (log.counts >= lo + query).sum() > 0
    assert (tasks.support_sizes >= lo).all() and (tasks.support_sizes <= hi).all()
    assert (tasks.query_sizes == query).all()
    again = added_paths.long_tasks(log, rec.config)  # the training seed's own stream
    assert np.array_equal(again.support, tasks.support) and np.array_equal(again.query, tasks.query)


def _scores(rec, n_support: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranking scores of users with ``n_support`` random ratings (items, ratings, scores)."""
    rng = np.random.default_rng(seed)
    n = rec.space.n_items
    items = np.stack([rng.choice(n, n_support, replace=False) for _ in range(4)])
    ratings = rng.integers(1, 6, items.shape).astype(np.float32)
    rec._cache = None
    users = rec.space.user_table.gather(np.zeros(len(items), dtype=np.int64))
    return (
        items,
        ratings,
        score_catalogue(rec.learner, rec.space, items, ratings, users, ratings=False).ranking,
    )


def test_a_path_weighted_in_the_last_band_only_leaves_short_supports_as_they_were(rec) -> None:
    log = UserLog.from_frame(_ds().interactions, rec.space.items)
    als = ImplicitALS(seed=0, factors=16, alpha=1.0, regularization=20.0).fit(log, rec.space.n_items)
    head = rec.learner.head
    head.set_cf_weight(0.0)
    head.set_als(torch.from_numpy(als.item_factors), 20.0, 1.0, None)
    head.set_als_weight(0.0)
    short_off, long_off = _scores(rec, 4, 0)[2], _scores(rec, 30, 1)[2]
    head.set_als_weight([0.0, 0.0, 2.0])
    assert np.array_equal(_scores(rec, 4, 0)[2], short_off)
    items, ratings, long_on = _scores(rec, 30, 1)
    np.testing.assert_allclose(long_on, long_off + 2.0 * als._score(items, ratings), atol=5e-4)


def test_each_band_gets_the_weight_its_own_tasks_choose(rec, monkeypatch) -> None:
    """A path that ranks perfectly for supports above 20 ratings and is noise below, added to a model
    that is perfect below 20 and noise above: only the last band takes the path."""
    chosen = choose_planted(rec, monkeypatch, "perfect-short", "perfect-long")
    weights = chosen["weight"]
    assert weights["1-2"] == weights["3-20"] == 0.0 < weights["21+"]
    val_log = _validation(rec)[0]
    assert chosen["validation_tasks"]["21+"] == len(added_paths.long_tasks(val_log, rec.config)) > 0
    assert rec.learner.head.als_weight.tolist() == pytest.approx(list(weights.values()))


def test_the_trained_range_keeps_its_fit_and_the_long_band_weighs_that_fit(rec, monkeypatch) -> None:
    """A path perfect everywhere added to a noise model: every band takes it, with the same fit."""
    chosen = choose_planted(rec, monkeypatch, "noise", "perfect")
    long = chosen["validation_recall20_plus_ndcg10_long_supports"]
    fit = max(chosen["validation_recall20_plus_ndcg10"], key=chosen["validation_recall20_plus_ndcg10"].get)
    assert all(key == "off" or key.startswith(fit[:3]) for key in long)  # "(k," of the short band's fit
    short = chosen["validation_recall20_plus_ndcg10_short_supports"]
    assert all(key == "off" or key.startswith(fit[:3]) for key in short)
    assert all(w > 0 for w in chosen["weight"].values())


def test_without_long_validation_users_the_long_band_takes_the_trained_ranges_weight(
    rec, monkeypatch
) -> None:
    monkeypatch.setattr(added_paths, "LONG_SUPPORT", (400, 500))  # nobody has 410 ratings
    chosen = choose_planted(rec, monkeypatch, "noise", "perfect")
    assert chosen["validation_tasks"]["21+"] == 0
    assert chosen["weight"]["21+"] == chosen["weight"]["3-20"] > 0


def test_short_tasks_have_one_or_two_rating_supports_and_a_full_query(rec) -> None:
    log = UserLog.from_frame(_ds().interactions, rec.space.items)
    tasks = added_paths.short_tasks(log, rec.config)
    query = rec.config.train.validation_query
    assert len(tasks) == min((log.counts >= 2 + query).sum(), added_paths.BAND_TASKS) > 0
    assert set(tasks.support_sizes.tolist()) == {1, 2} and (tasks.query_sizes == query).all()
    assert len(np.unique(tasks.users)) == len(tasks)  # one task per user: intervals over distinct users
    again = added_paths.short_tasks(log, rec.config)  # the training seed's own stream
    assert np.array_equal(again.support, tasks.support) and np.array_equal(again.query, tasks.query)


def test_a_path_that_only_helps_one_and_two_rating_supports_is_weighted_there(rec, monkeypatch) -> None:
    """A path perfect for supports of 1-2 ratings and noise above, added to a model that is the
    reverse: the short band takes the path, beyond noise on its own tasks; long supports leave it off."""
    chosen = choose_planted(rec, monkeypatch, "perfect-3+", "perfect-1-2")
    short = chosen["validation_recall20_plus_ndcg10_short_supports"]
    assert chosen["weight"]["1-2"] > 0 and max(short.values()) > short["off"]
    assert chosen["weight"]["21+"] == 0.0
    assert chosen["validation_tasks"]["1-2"] == len(added_paths.short_tasks(_validation(rec)[0], rec.config))


def test_the_short_band_keeps_the_trained_ranges_weight_unless_it_clears_the_noise(rec, monkeypatch) -> None:
    monkeypatch.setattr(added_paths, "clears_noise", lambda difference, margin_se: False)
    chosen = choose_planted(rec, monkeypatch, "perfect-3+", "perfect-1-2")
    assert chosen["weight"]["1-2"] == chosen["weight"]["3-20"]
    short = chosen["validation_recall20_plus_ndcg10_short_supports"]
    assert max(short.values()) > short["off"]  # the band's tasks preferred the path, short of the margin


def test_a_model_file_with_the_two_earlier_bands_loads_each_into_the_bands_it_covers(rec) -> None:
    """Models saved with bands 1-20 and 21+: the 1-2 and 3-20 bands take the first weight."""
    state = rec.learner.state_dict() | {
        "net.head.als_weight": torch.tensor([0.5, 2.0]),
        "net.head.cf_weight": torch.tensor([0.0, 3.0]),
    }
    check_shapes(rec.config, rec.space, "model.safetensors", state, rec.info["rating_mean"])
    fresh = training.build_learner(rec.config, rec.space, rec.info["rating_mean"])
    load_weights(fresh, state)
    assert fresh.head.als_weight.tolist() == [0.5, 0.5, 2.0]
    assert fresh.head.cf_weight.tolist() == [0.0, 0.0, 3.0]
    assert widen(torch.tensor([1.0, 2.0, 4.0])).tolist() == [1.0, 2.0, 4.0]


def test_a_model_file_with_four_weights_per_path_is_refused(rec) -> None:
    state = rec.learner.state_dict() | {"net.head.als_weight": torch.zeros(4)}
    with pytest.raises(ModelFileError, match="als_weight"):
        check_shapes(rec.config, rec.space, "model.safetensors", state, rec.info["rating_mean"])


def test_a_model_file_with_one_weight_per_path_loads_it_into_every_band(rec) -> None:
    """Models saved before the bands hold one number per added path."""
    head = rec.learner.head
    head.set_cf_weight(0.0)
    state = rec.learner.state_dict() | {
        "net.head.als_weight": torch.tensor(0.5),
        "net.head.cf_weight": torch.tensor(0.0),
    }
    check_shapes(rec.config, rec.space, "model.safetensors", state, rec.info["rating_mean"])
    fresh = training.build_learner(rec.config, rec.space, rec.info["rating_mean"])
    load_weights(fresh, state)
    assert fresh.head.als_weight.tolist() == [0.5] * N_BANDS and not fresh.head.cf_weight.any()
