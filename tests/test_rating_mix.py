"""The rating combiner (``model.hybrid.rating_mix``): each user's weights of the meta-learned fold-in and
the MF fold-in, read from the support. Its start reproduces the fold-in weight and MF fallback exactly;
the head predicts what the fit combined; the fit is least absolute deviations; it is kept only where the
cross-fit beats the start; files without it load with it off; the ablation switches it off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys import added_paths, post_training, training
from recsys.data.tasks import UserLog
from recsys.evaluation.ablations import ADDED_PATH_ABLATIONS, check_ablations
from recsys.meta.scoring import predict_tasks
from recsys.models import rating_knn, rating_mix
from recsys.persistence import load_weights
from tests.test_mf_fallback import _mf, _predict, _support
from tests.test_path_weights import _ds, _fit, _validation

BUFFERS = ("mf_", "rate_", "knn_", "fold_in_weight")


@pytest.fixture
def rec():
    """The shared tiny model with an 8-factor MF in the fallback's buffers, restored after each test."""
    rec = _fit()
    head = rec.learner.head
    saved = {k: v.clone() for k, v in head.state_dict().items() if k.startswith(BUFFERS)}
    post_training._set_mf(head, _mf(rec))
    yield rec
    head.set_rating_knn(None)
    head.load_state_dict(saved, strict=False)
    rec._cache = None


def _training_log(rec) -> UserLog:
    return UserLog.from_frame(_ds().interactions, rec.space.items)


def _planted(n: int, coef: np.ndarray, noise: str, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    features = np.column_stack(
        [
            np.ones(n),
            rng.uniform(0.2, 1.5, n),
            rng.uniform(0, 2, n),
            rng.uniform(0, 1.5, n),
            rng.uniform(0, 1, n),
        ]
    )
    fold, mf, knn = rng.normal(0, 0.5, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n)
    x = rating_mix.design(features, fold, mf, knn)
    error = rng.laplace(0, 0.05, n) if noise == "laplace" else np.zeros(n)
    if noise == "outliers":
        error[rng.random(n) < 0.1] = 5.0  # a tenth of the ratings far off, one side
    return x, x @ coef.reshape(-1) + error, features, fold, mf, knn


COEF = np.array([[0.9, -0.2, 0.05, 0.1, 0.0], [0.1, 0.3, -0.05, -0.2, 0.2], [0.4, 0.1, 0.0, -0.1, 0.05]])


def test_the_start_reproduces_the_fold_in_weight_and_fallback_exactly(rec) -> None:
    head = rec.learner.head
    items, ratings = _support(rec)
    head.set_fold_in_weight(0.75)
    before = _predict(rec, 0.5, items, ratings)  # the fallback at 0.5, combiner off
    assert not head.rate_mix_active
    head.set_rate_mix(torch.from_numpy(rating_mix.start_coef(0.75, 0.5)).float())
    np.testing.assert_allclose(_predict(rec, 0.5, items, ratings), before, atol=1e-5)
    head.set_rate_mix(torch.zeros(3, rating_mix.N_FEATURES))
    assert np.array_equal(_predict(rec, 0.5, items, ratings), before)  # all zero: off


def test_the_head_predicts_what_the_fit_combined(rec) -> None:
    """The flat parts the choice fits on, combined by coefficients C, are what the head predicts with C
    set: the fitted model and the served one are the same model."""
    head = rec.learner.head
    log, tasks = _validation(rec)
    head.set_rating_knn(rating_knn.fit_rating_knn(_training_log(rec), rec.space.n_items))
    parts = post_training.rating_parts(rec.learner, rec.space, log, tasks)
    assert parts["seen"].all() and np.abs(parts["mf"]).max() > 0 and np.abs(parts["fold"]).max() > 0
    assert np.abs(parts["knn"]).max() > 0.01
    head.set_rate_mix(torch.from_numpy(COEF).float())
    head.set_fold_in_weight(0.0)
    query = tasks.query[tasks.query >= 0]
    item_baseline = log.ratings[query] - parts["y"]
    predicted = predict_tasks(rec.learner, rec.space, log, tasks)[tasks.query >= 0]
    np.testing.assert_allclose(predicted - item_baseline, rating_mix.combine_parts(parts, COEF), atol=2e-4)


def test_support_features_under_vmap_match_one_user_and_ignore_padding() -> None:
    sy = torch.tensor([[5.0, 1.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    m = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    mu = torch.tensor(3.5, dtype=torch.float64)
    batched = torch.vmap(rating_mix.support_features, in_dims=(0, 0, None))(sy, m, mu)
    for row in range(3):
        np.testing.assert_allclose(batched[row], rating_mix.support_features(sy[row], m[row], mu))
    size = np.log1p(3) / np.log1p(20)
    np.testing.assert_allclose(batched[0], [1, size, size**2, np.std([5.0, 1.0, 3.0]), 0.5])
    np.testing.assert_allclose(batched[2], [1, 0, 0, 0, 0])  # no ratings: no evidence
    padded = rating_mix.support_features(
        torch.cat([sy[0], torch.full((3,), 9.0, dtype=sy.dtype)]),
        torch.cat([m[0], torch.zeros(3, dtype=torch.bool)]),
        mu,
    )
    np.testing.assert_allclose(padded, batched[0])


def test_supports_longer_than_the_longest_validation_support_read_as_that_long() -> None:
    """The combiner is fitted on supports of up to 100 ratings (the long validation tasks); a known
    user's 500 ratings get the size features of 100, not an extrapolation of the size's square."""
    assert added_paths.LONG_SUPPORT[1] == rating_mix.SIZE_CAP
    mu = torch.tensor(3.0)
    ratings = torch.arange(500) % 5 + 1.0
    long = rating_mix.support_features(ratings, torch.ones(500, dtype=torch.bool), mu)
    cap = rating_mix.support_features(ratings[:100], torch.ones(100, dtype=torch.bool), mu)
    np.testing.assert_allclose(long[:3], cap[:3])


def test_the_fit_recovers_planted_coefficients() -> None:
    x, y, *_ = _planted(4000, COEF, "laplace")
    got = rating_mix.fit_rating_mix(x, y, np.ones(len(y)), np.zeros((3, rating_mix.N_FEATURES)), ridge=1e-6)
    np.testing.assert_allclose(got, COEF, atol=0.03)


def test_the_fit_is_least_absolute_deviations_so_one_sided_outliers_do_not_move_it() -> None:
    """A tenth of the ratings 5 stars off, on one side: a least-squares fit's intercept terms would
    shift; the median fit keeps the planted coefficients."""
    x, y, *_ = _planted(4000, COEF, "outliers")
    got = rating_mix.fit_rating_mix(x, y, np.ones(len(y)), np.zeros((3, rating_mix.N_FEATURES)), ridge=1e-6)
    np.testing.assert_allclose(got, COEF, atol=0.02)
    squares = np.linalg.lstsq(x, y, rcond=None)[0].reshape(3, -1)
    assert np.abs(squares - COEF).max() > 0.1  # what the median fit is immune to


def _parts(
    n_users: int, coef: np.ndarray, noise: float, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    per_user = 10
    _, _, features, fold, mf, knn = _planted(n_users, coef, "none", seed)
    rng = np.random.default_rng(seed + 1)
    task = np.repeat(np.arange(n_users), per_user)
    fold, mf, knn = (t[task] + rng.normal(0, 0.3, len(task)) for t in (fold, mf, knn))
    features = features[task]
    y = rating_mix.design(features, fold, mf, knn) @ coef.reshape(-1) + rng.laplace(0, noise, len(task))
    start = rating_mix.start_coef(1.0, 0.0)
    parts = {"task": task, "y": y, "fold": fold, "mf": mf, "knn": knn, "seen": np.ones(len(task), dtype=bool)}
    parts |= {"features": features, "now": rating_mix.combine_parts(parts | {"features": features}, start)}
    return parts, start


def _difference(parts: dict[str, np.ndarray], start: np.ndarray) -> np.ndarray:
    own = rating_mix.per_user_mae(parts["now"], parts["y"], parts["task"], 300)
    return rating_mix.cross_fit_task_mae(parts, np.arange(300), start, seed=0) - own


def test_the_cross_fit_beats_the_start_where_support_features_matter() -> None:
    parts, start = _parts(300, COEF, 0.3, seed=1)
    difference = _difference(parts, start)
    assert difference.mean() < -0.02 and rating_mix.clears_noise(difference)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_a_combiner_fitting_the_noise_of_a_true_start_does_not_clear_it(seed) -> None:
    """Ratings made by the start itself plus noise: the fitted combiner only fits the noise; its
    cross-fit (each half predicted by the other's fit) may come out a hair lower, never by more than
    the noise."""
    parts, start = _parts(300, rating_mix.start_coef(1.0, 0.0), 0.5, seed=seed)
    difference = _difference(parts, start)
    assert abs(difference.mean()) < 0.005 and not rating_mix.clears_noise(difference)


def test_one_validation_user_keeps_the_start() -> None:
    """A log with a single validation user: one half of the cross-fit has no ratings to fit on, so that
    half keeps the start, and nothing clears the noise."""
    parts, start = _parts(1, COEF, 0.3, seed=5)
    own = rating_mix.per_user_mae(parts["now"], parts["y"], parts["task"], 1)
    crossed = rating_mix.cross_fit_task_mae(parts, np.arange(1), start, seed=0)
    np.testing.assert_allclose(crossed, own)
    assert not rating_mix.clears_noise(crossed - own)
    empty = np.zeros((0, 3 * rating_mix.N_FEATURES))
    np.testing.assert_array_equal(rating_mix.fit_rating_mix(empty, np.zeros(0), np.zeros(0), start), start)


def test_clearing_the_noise_needs_a_mean_below_zero_by_a_standard_error() -> None:
    assert rating_mix.clears_noise(np.array([-0.02, -0.01, -0.03, np.nan, -0.02]))
    assert not rating_mix.clears_noise(np.array([-0.05, 0.05, -0.04, 0.04, -0.01]))
    assert not rating_mix.clears_noise(np.array([-0.5, np.nan]))  # one task: no spread to judge


def test_a_wider_margin_asks_for_more_standard_errors() -> None:
    d = np.array([-0.05, 0.01, -0.04, 0.0, -0.02, -0.03])  # mean -0.0217, standard error 0.0095
    assert rating_mix.clears_noise(d) and rating_mix.clears_noise(d, 2.0)
    assert not rating_mix.clears_noise(d, 2.5)


def test_the_choice_keeps_the_combiner_only_where_the_cross_fit_is_lower(rec, monkeypatch) -> None:
    head = rec.learner.head
    val_log, tasks = _validation(rec)
    mfs = post_training.FittedMFs(val_log, head.mf_design.shape[0], 0)
    for gain, on in ((-0.05, True), (+0.05, False)):
        monkeypatch.setattr(
            rating_mix,
            "cross_fit_task_mae",
            lambda parts, users, start, seed, gain=gain: (
                rating_mix.per_user_mae(parts["now"], parts["y"], parts["task"], len(users)) + gain
            ),
        )
        train_log = _training_log(rec)
        chosen = post_training.choose_rating_mix(
            rec.learner, rec.space, rec.config, train_log, val_log, tasks, mfs
        )
        assert (chosen["chosen"] != "off") == on == head.rate_mix_active
        assert (chosen["coefficients"] is not None) == on
        # the kNN's lists are kept only where the combiner weighs them
        assert bool(head.knn_idx.numel()) == on == head.rate_knn_active
        if on:
            np.testing.assert_allclose(head.rate_coef.numpy(), chosen["coefficients"], atol=1e-5)


def test_a_model_file_without_the_combiner_loads_with_it_off(rec) -> None:
    rec.learner.head.set_rate_mix(torch.from_numpy(COEF).float())
    state = {k: v for k, v in rec.learner.state_dict().items() if k != "net.head.rate_mix"}
    fresh = training.build_learner(rec.config, rec.space, rec.info["rating_mean"])
    load_weights(fresh, state)  # what loading a model saved before the combiner existed does
    assert not fresh.head.rate_mix_active


def test_save_and_load_keep_the_combiner(rec, tmp_path) -> None:
    from recsys.recommender import ColdStartRecommender

    rec.learner.head.set_rate_mix(torch.from_numpy(COEF).float())
    rec._cache = None
    request = {56: 5.0, 18: 4.0, 45: 1.0}
    want = rec.predict(request, [1, 2, 3, 4])
    loaded = ColdStartRecommender.load(rec.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.learner.head.rate_coef.numpy(), COEF, atol=1e-6)
    np.testing.assert_allclose(loaded.predict(request, [1, 2, 3, 4]), want, atol=1e-5)


def test_the_ablation_switches_the_combiner_off() -> None:
    check_ablations(["no-rating-combiner"])
    assert ADDED_PATH_ABLATIONS["no-rating-combiner"][1] == "rate_mix"
