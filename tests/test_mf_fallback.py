"""The classical rating fallback (``model.hybrid.mf_fallback``): after training, a biased MF fitted on the
training users, whose ridge fold-in the rating prediction may move towards by a weight chosen on
validation users. At weight 1 the model predicts exactly the MF's fold-in, at 0 exactly as trained; the
choice never makes validation MAE worse; files without its buffers load with it off; items added later
get what the MF gives an item without ratings."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recsys import post_training, training
from recsys.data.tasks import UserLog
from recsys.meta.scoring import score_catalogue
from recsys.models.catalogue import grow_catalogue
from recsys.models.classical.mf import BiasedMF
from recsys.persistence import load_weights
from tests.test_path_weights import _ds, _fit, _validation


@pytest.fixture
def rec():
    """The shared tiny model, its fallback weight restored after each test."""
    rec = _fit()
    head = rec.learner.head
    saved = {k: v.clone() for k, v in head.state_dict().items() if k.startswith("mf_")}
    yield rec
    head.load_state_dict(saved, strict=False)
    rec._cache = None


def _mf(rec, factors: int = 8, users: int | None = None) -> BiasedMF:
    log = UserLog.from_frame(_ds().interactions, rec.space.items)
    if users is not None:  # fitted on a few users: some items have no training ratings
        log = log.subset(np.arange(users))
    return BiasedMF(seed=0, factors=factors).fit(log, rec.space.n_items)


def _support(rec) -> tuple[np.ndarray, np.ndarray]:
    log, tasks = _validation(rec)
    s = tasks.support[:6]
    items = np.where(s >= 0, log.items[np.maximum(s, 0)], -1)
    ratings = np.where(s >= 0, log.ratings[np.maximum(s, 0)], 0.0).astype(np.float32)
    return items, ratings


def _predict(rec, weight: float, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    rec.learner.head.set_mf_weight(weight)
    users = rec.space.user_table.gather(np.zeros(len(items), dtype=np.int64))
    return score_catalogue(rec.learner, rec.space, items, ratings, users).ratings


@pytest.mark.parametrize("factors", [8, 32])
def test_weight_one_predicts_exactly_the_biased_mf_fold_in(rec, factors) -> None:
    mf = _mf(rec, factors)
    post_training._set_mf(rec.learner.head, mf)
    items, ratings = _support(rec)
    got = _predict(rec, 1.0, items, ratings)
    np.testing.assert_allclose(got, mf._score(items, ratings), atol=2e-4)


def test_an_item_the_mf_never_saw_rated_keeps_the_head_prediction(rec) -> None:
    """The MF knows nothing of an item without training ratings (its fold-in gives it the user's bias
    alone); such items keep the head's content-based prediction, the others move to the MF."""
    items, ratings = _support(rec)
    trained = _predict(rec, 0.0, items, ratings)
    mf = _mf(rec, users=4)
    seen = mf.item_counts > 0
    assert seen.any() and not seen.all()
    post_training._set_mf(rec.learner.head, mf)
    got = _predict(rec, 1.0, items, ratings)
    np.testing.assert_allclose(got[:, seen], mf._score(items, ratings)[:, seen], atol=2e-4)
    np.testing.assert_allclose(got[:, ~seen], trained[:, ~seen], atol=1e-6)


def test_weight_zero_is_the_model_as_trained_and_a_half_is_the_midpoint(rec) -> None:
    items, ratings = _support(rec)
    trained = _predict(rec, 0.0, items, ratings)
    mf = _mf(rec)
    post_training._set_mf(rec.learner.head, mf)
    assert np.array_equal(_predict(rec, 0.0, items, ratings), trained)  # filled buffers, weight 0: unchanged
    half = _predict(rec, 0.5, items, ratings)
    np.testing.assert_allclose(half, 0.5 * trained + 0.5 * mf._score(items, ratings), atol=2e-4)


def test_fit_records_a_choice_no_worse_than_the_model_as_trained_on_validation() -> None:
    rec = _fit()
    chosen = rec.info["mf_fallback"]
    assert float(rec.learner.head.mf_weight) == chosen["weight"]
    own = chosen["validation_mae"]["0"]
    assert min(chosen["validation_mae"].values()) == pytest.approx(
        own
        if chosen["weight"] == 0
        else chosen["validation_mae"][f"{chosen['factors']} factors x {chosen['weight']:g}"]
    )
    assert all(v >= min(chosen["validation_mae"].values()) for v in chosen["validation_mae"].values())


@pytest.mark.parametrize(("planted", "weight", "factors"), [("helps", 1.0, 32), ("noise", 0.0, None)])
def test_the_fallback_weight_follows_validation_mae(rec, monkeypatch, planted, weight, factors) -> None:
    """A planted validation MAE that falls with the MF's weight (lowest with 32 factors) picks it at 1;
    one that grows with it keeps the model as trained (weight 0)."""
    head = rec.learner.head

    def mae(learner, space, log, tasks, **kw):
        w, width = float(head.mf_weight), int((head.mf_design.abs().sum(0) > 0).sum())
        return {"mae": 0.8 - 0.1 * w - 0.001 * width if planted == "helps" else 0.8 + w}

    monkeypatch.setattr(post_training, "evaluate_rating_tasks", mae)
    val_log, tasks = _validation(rec)
    train_log = UserLog.from_frame(_ds().interactions, rec.space.items)
    chosen = post_training.choose_mf_fallback(rec.learner, rec.space, rec.config, train_log, val_log, tasks)
    assert (chosen["weight"], chosen["factors"]) == (weight, factors)
    assert float(head.mf_weight) == weight


def test_a_model_file_without_the_fallback_loads_with_it_off(rec) -> None:
    state = {k: v for k, v in rec.learner.state_dict().items() if not k.startswith("net.head.mf_")}
    fresh = training.build_learner(rec.config, rec.space, rec.info["rating_mean"])
    load_weights(fresh, state)  # what loading a model saved before the fallback existed does
    assert float(fresh.head.mf_weight) == 0.0 and not fresh.head.mf_active


def test_save_and_load_keep_the_fallback(rec, tmp_path) -> None:
    from recsys.recommender import ColdStartRecommender

    post_training._set_mf(rec.learner.head, _mf(rec))
    rec.learner.head.set_mf_weight(0.75)
    rec._cache = None
    request = {56: 5.0, 18: 4.0, 45: 1.0}
    want = rec.predict(request, [1, 2, 3, 4])
    loaded = ColdStartRecommender.load(rec.save(tmp_path / "m"))
    assert float(loaded.learner.head.mf_weight) == 0.75
    np.testing.assert_allclose(loaded.predict(request, [1, 2, 3, 4]), want, atol=1e-5)


def test_items_added_later_get_the_mf_of_an_item_without_ratings(rec) -> None:
    head = copy.deepcopy(rec.learner.head)  # grown alone: the shared model keeps its catalogue
    mf = _mf(rec)
    post_training._set_mf(head, mf)
    n = head.mf_design.shape[0]
    assert {"mf_design", "mf_base", "mf_seen"} <= set(grow_catalogue(head, 2))
    assert head.mf_seen[n:].tolist() == [0.0, 0.0]  # never rated: they keep the head's prediction
    assert head.mf_design.shape == (n + 2, head.mf_design.shape[1])
    assert head.mf_design[n:].tolist() == [[1.0] + [0.0] * (head.mf_design.shape[1] - 1)] * 2
    assert torch.allclose(head.mf_base[n:], torch.full((2,), float(mf.mu)))


def test_the_fallback_reuses_the_mf_the_als_start_fitted_on_the_same_log(rec, monkeypatch) -> None:
    """The ALS start of the item ids and the fallback's 32-factor candidate are the same biased MF
    (training users, recipe seed): given the start's fits, the fallback fits only its other candidates,
    and an MF fitted for another log or seed is never taken."""
    from recsys.models.classical import mf as mf_module
    from recsys.models.item_init import als_item_factors

    fits: list[int] = []
    real_fit = BiasedMF.fit

    def counting_fit(self, log, n_items):
        fits.append(int(self.params["factors"]))
        return real_fit(self, log, n_items)

    monkeypatch.setattr(BiasedMF, "fit", counting_fit)
    monkeypatch.setattr(post_training, "evaluate_rating_tasks", lambda *a, **k: {"mae": 0.8})
    val_log, tasks = _validation(rec)
    train_log = UserLog.from_frame(_ds().interactions, rec.space.items)
    mfs = mf_module.FittedMFs(train_log, rec.space.n_items, rec.config.train.seed)
    start = als_item_factors(
        train_log, rec.space.n_items, 32, implicit=False, seed=mfs.seed, paths=("rating",), mfs=mfs
    )
    assert fits == [32]
    np.testing.assert_array_equal(start["rating"], mfs.get(factors=32).item_factors)
    post_training.choose_mf_fallback(rec.learner, rec.space, rec.config, train_log, val_log, tasks, mfs)
    assert sorted(fits) == [8, 32]  # the 32-factor MF was not fitted again
    other = mf_module.FittedMFs(train_log, rec.space.n_items, rec.config.train.seed + 1)
    post_training.choose_mf_fallback(rec.learner, rec.space, rec.config, train_log, val_log, tasks, other)
    assert sorted(fits) == [8, 8, 32, 32]  # another seed's MFs are fitted for this call, as without any
    another_log = UserLog.from_frame(_ds().interactions, rec.space.items)  # equal, but not the same log
    assert not mfs.of(another_log, rec.space.n_items, mfs.seed) and mfs.of(
        train_log, rec.space.n_items, mfs.seed
    )
