"""The one scorer protocol (:mod:`recsys.models.scorer`) run by every method, and the one top-N
(:mod:`recsys.metrics.topk`)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys import ColdStartRecommender
from recsys.data.synthetic import make_synthetic
from recsys.data.tasks import UserLog
from recsys.evaluation.runner import MetaScorer
from recsys.features.space import FeatureSpace
from recsys.metrics.topk import exclusion_mask, top_n
from recsys.models.classical import BASELINES
from recsys.models.scorer import Scorer, Scores

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8]},
    "train": {"epochs": 1, "meta_batch_size": 16, "num_threads": 1},
}
META = "meta-learner"


@pytest.fixture(scope="module")
def data():
    """A training log, the catalogue size, and padded supports of new users (the last one empty)."""
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3)
    space = FeatureSpace.fit(ds.interactions)
    log = UserLog.from_frame(ds.interactions, space.items)
    train, new = log.subset(np.arange(100)), log.subset(np.arange(100, log.n_users))
    k = np.minimum(new.counts, 4)
    items = np.full((new.n_users + 1, 4), -1, dtype=np.int64)
    ratings = np.zeros(items.shape, dtype=np.float32)
    for u in range(new.n_users):
        items[u, : k[u]] = new.items[new.indptr[u] : new.indptr[u] + k[u]]
        ratings[u, : k[u]] = new.ratings[new.indptr[u] : new.indptr[u] + k[u]]
    return ds, train, space.n_items, items, ratings


@pytest.fixture(scope="module")
def scorers(data) -> dict[str, Scorer]:
    """Every classical baseline (default hyperparameters) and a tiny trained meta-learner."""
    ds, train, n_items, _, _ = data
    out: dict[str, Scorer] = {name: cls().fit(train, n_items) for name, cls in BASELINES.items()}
    out[META] = MetaScorer(ColdStartRecommender(TINY).fit_dataset(ds), ds)
    return out


METHODS = [*BASELINES, META]


@pytest.mark.parametrize("name", METHODS)
def test_every_method_answers_the_scorer_protocol_with_scores_of_the_whole_catalogue(
    name, scorers, data
) -> None:
    _, _, n_items, items, ratings = data
    scorer = scorers[name]
    assert isinstance(scorer, Scorer)
    scores = scorer.score(items, ratings)
    assert isinstance(scores, Scores)
    assert scores.ranking.shape == (len(items), n_items) and scores.ranking.dtype == np.float32
    assert np.isfinite(scores.ranking).all()
    assert (scores.ratings is not None) == scorer.predicts_ratings
    if scores.ratings is not None:
        assert scores.ratings.shape == scores.ranking.shape and scores.ratings.dtype == np.float32
        assert np.isfinite(scores.ratings).all()


@pytest.mark.parametrize("name", METHODS)
def test_padding_columns_change_no_score(name, scorers, data) -> None:
    _, _, _, items, ratings = data
    scorer = scorers[name]
    wide_items = np.concatenate([items, np.full((len(items), 3), -1)], axis=1)
    wide_ratings = np.concatenate([ratings, np.zeros((len(items), 3), np.float32)], axis=1)
    a, b = scorer.score(items, ratings), scorer.score(wide_items, wide_ratings)
    np.testing.assert_allclose(b.ranking, a.ranking, rtol=1e-5, atol=1e-5)
    if a.ratings is not None:
        np.testing.assert_allclose(b.ratings, a.ratings, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_an_empty_support_gets_the_same_no_information_prior_for_every_user(name, scorers, data) -> None:
    _, _, n_items, items, ratings = data
    scorer = scorers[name]
    for width in (0, 2):  # no support column at all, or only padding
        empty = scorer.score(np.full((3, width), -1, np.int64), np.zeros((3, width), np.float32))
        assert empty.ranking.shape == (3, n_items)
        np.testing.assert_allclose(empty.ranking, np.broadcast_to(empty.ranking[0], (3, n_items)), atol=1e-6)
    # the empty user in a batch of others (last row) gets the prior it gets alone
    alone = scorer.score(np.full((1, 1), -1, np.int64), np.zeros((1, 1), np.float32))
    np.testing.assert_allclose(
        scorer.score(items, ratings).ranking[-1], alone.ranking[0], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", METHODS)
def test_scoring_twice_gives_equal_scores(name, scorers, data) -> None:
    _, _, _, items, ratings = data
    a, b = scorers[name].score(items, ratings), scorers[name].score(items, ratings)
    assert np.array_equal(a.ranking, b.ranking)
    assert (a.ratings is None and b.ratings is None) or np.array_equal(a.ratings, b.ratings)


def test_rating_predictors_rank_by_their_ratings_and_rankers_predict_none(scorers, data) -> None:
    _, _, _, items, ratings = data
    for name in BASELINES:
        scores = scorers[name].score(items, ratings)
        if BASELINES[name].predicts_ratings:
            assert np.array_equal(scores.ratings, scores.ranking), name
        else:
            assert scores.ratings is None, name


def test_scores_refuse_ratings_and_ranking_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        Scores(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))


# ---- top-N --------------------------------------------------------------------------------------------


def test_exclusion_mask_marks_each_users_support_items_and_ignores_padding() -> None:
    support = np.array([[2, -1, 0], [-1, -1, -1]])
    mask = exclusion_mask(support, 4)
    assert mask.tolist() == [[True, False, True, False], [False] * 4]
    extra = np.zeros((2, 4), bool)
    extra[1, 3] = True
    assert exclusion_mask(support, 4, extra)[1].tolist() == [False, False, False, True]
    assert exclusion_mask(np.zeros((2, 0), np.int64), 4).shape == (2, 4)


def test_top_n_never_returns_a_support_item_when_enough_others_are_left() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 30)).astype(np.float32)
    support = rng.integers(-1, 30, size=(20, 8))
    exclude = exclusion_mask(support, 30)
    top, values = top_n(scores, 10, exclude)
    assert top.shape == values.shape == (20, 10)
    assert not np.take_along_axis(exclude, top, axis=1).any()
    np.testing.assert_array_equal(values, np.take_along_axis(scores, top, axis=1))
    assert (np.diff(values, axis=1) <= 0).all()


def test_top_n_returns_exactly_n_items_and_at_most_the_catalogue() -> None:
    scores = np.arange(6, dtype=np.float32)[None, :].repeat(2, 0)
    assert top_n(scores, 4)[0].tolist() == [[5, 4, 3, 2]] * 2
    top, _ = top_n(scores, 50)
    assert top.shape == (2, 6)
    # fewer candidates than n: the excluded items come last, for the caller to drop
    exclude = exclusion_mask(np.array([[5, 4, 3], [0, -1, -1]]), 6)
    top, _ = top_n(scores, 5, exclude)
    assert top[0, :3].tolist() == [2, 1, 0] and set(top[0, 3:]) <= {3, 4, 5}
    assert top[1].tolist() == [5, 4, 3, 2, 1]


def test_top_n_orders_tied_items_by_item_index_and_keeps_the_best_scores() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(50, 40)).astype(np.float32)  # many ties
    exclude = rng.random((50, 40)) < 0.2
    top, values = top_n(scores, 12, exclude)
    masked = np.where(exclude, -np.inf, scores)
    best = -np.sort(-masked, axis=1)[:, :12]
    np.testing.assert_array_equal(np.take_along_axis(masked, top, axis=1), best)  # the 12 best scores
    same = values[:, 1:] == values[:, :-1]
    assert (np.diff(top, axis=1)[same] > 0).all()  # tied items in catalogue order
    assert len({tuple(row) for row in top}) > 1
    constant = np.zeros((1, 7), np.float32)
    assert top_n(constant, 3)[0].tolist() == [[0, 1, 2]]  # a constant scorer ranks in catalogue order
    assert top_n(constant, 7)[0].tolist() == [list(range(7))]
