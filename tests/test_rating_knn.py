"""The rating item-kNN (the rating combiner's third term): its neighbour lists are the top-k of the
shrunk residual cosine whatever the block size; its term is the damped similarity-weighted mean of the
support's residuals, padding ignored, the same under vmap; the head serves it only with the combiner on;
the `no-rating-knn` ablation removes just it; saved lists load back, files without them load with it off."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recsys import post_training, training
from recsys.data.tasks import UserLog
from recsys.evaluation.ablations import ADDED_PATH_ABLATIONS, check_ablations
from recsys.meta.scoring import predict_tasks
from recsys.models import rating_knn
from recsys.persistence import load_weights
from tests.test_mf_fallback import _mf
from tests.test_path_weights import _ds, _validation
from tests.test_rating_mix import COEF, rec  # noqa: F401  (the fixture)


def _log(n_users: int = 60, n_items: int = 12, seed: int = 0) -> UserLog:
    rng = np.random.default_rng(seed)
    rows = [
        np.sort(rng.choice(n_items, size=rng.integers(3, n_items), replace=False)) for _ in range(n_users)
    ]
    items = np.concatenate(rows)
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    ratings = rng.integers(1, 6, len(items)).astype(np.float32)
    return UserLog(pl.Series(np.arange(n_users)), indptr, items, ratings, None)


def _dense_similarity(log: UserLog, n_items: int) -> np.ndarray:
    """The shrunk residual cosine of every item pair, by loops over the definition."""
    e = rating_knn.training_residuals(log, n_items)
    vectors = np.zeros((log.n_users, n_items))
    rated = np.zeros((log.n_users, n_items))
    vectors[log.user_of, log.items] = e
    rated[log.user_of, log.items] = 1
    s = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            norm = np.linalg.norm(vectors[:, i]) * np.linalg.norm(vectors[:, j])
            common = (rated[:, i] * rated[:, j]).sum()
            if i != j and norm > 0:
                s[i, j] = vectors[:, i] @ vectors[:, j] / norm * common / (common + rating_knn.SHRINK)
    return s


@pytest.mark.parametrize("block", [2**24, 25])  # one block; blocks of two items
def test_the_lists_are_each_items_strongest_neighbours_under_the_shrunk_residual_cosine(
    monkeypatch, block
) -> None:
    monkeypatch.setattr(rating_knn, "BLOCK_VALUES", block)
    log, n = _log(), 12
    want = _dense_similarity(log, n)
    lists = rating_knn.fit_rating_knn(log, n, k=4)
    assert lists.idx.shape == (n, 4)
    for i in range(n):
        np.testing.assert_allclose(lists.val[i], want[i, lists.idx[i]], atol=1e-6)
        strongest = np.sort(np.abs(want[i]))[::-1][:4]
        np.testing.assert_allclose(np.sort(np.abs(lists.val[i]))[::-1], strongest, atol=1e-6)
        assert i not in lists.idx[i][lists.val[i] != 0]


def test_the_term_is_the_damped_similarity_weighted_mean_of_the_support_residuals() -> None:
    idx = torch.tensor([[1, 2], [2, 3], [0, 0]])  # the third support row is padding
    val = torch.tensor([[0.5, -0.25], [1.0, 0.5], [9.0, 9.0]])
    sy, base = torch.tensor([4.0, 2.0, 5.0]), torch.tensor([3.0, 3.0, 1.0])
    m = torch.tensor([True, True, False])
    d = rating_knn.support_residuals(sy, base, m)
    # residuals 1 and -1, their mean damped by one pseudo-rating: 0 / 3 -> d = [1, -1, 0]
    np.testing.assert_allclose(d.numpy(), [1.0, -1.0, 0.0])
    got = rating_knn.knn_scores(idx, val, d, m, 5).numpy()
    damping = rating_knn.DAMPING
    want = [0.0, 0.5 / (0.5 + damping), (-0.25 - 1.0) / (1.25 + damping), -0.5 / (0.5 + damping), 0.0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    batched = torch.vmap(rating_knn.knn_scores, in_dims=(0, 0, 0, 0, None))(
        idx[None].expand(2, -1, -1),
        val[None].expand(2, -1, -1),
        d[None].expand(2, -1),
        m[None].expand(2, -1),
        5,
    )
    np.testing.assert_allclose(batched[1].numpy(), want, atol=1e-6)


def test_a_user_who_liked_an_items_twin_gets_a_positive_term_for_it() -> None:
    """Two items every training user rates alike (a twin pair) and one rated at random: a new user
    rating one twin above their mean gets a positive term on the other twin."""
    rng = np.random.default_rng(1)
    n_users, rows, ratings = 200, [], []
    for _ in range(n_users):
        taste = rng.choice([1.0, 5.0])
        rows.append([0, 1, 2, 3])
        ratings.append([taste, taste, rng.integers(1, 6), 3.0])
    items = np.array(rows).ravel()
    indptr = np.arange(0, 4 * n_users + 1, 4)
    log = UserLog(pl.Series(np.arange(n_users)), indptr, items, np.array(ratings, np.float32).ravel(), None)
    lists = rating_knn.fit_rating_knn(log, 4, k=2)
    assert lists.idx[0][np.argmax(lists.val[0])] == 1
    idx, val = torch.from_numpy(lists.idx).long(), torch.from_numpy(lists.val)
    sy, base, m = torch.tensor([5.0, 2.0]), torch.tensor([3.0, 3.0]), torch.tensor([True, True])
    support = torch.tensor([0, 3])
    term = rating_knn.knn_scores(idx[support], val[support], rating_knn.support_residuals(sy, base, m), m, 4)
    assert term[1] > 0.5


def test_the_head_serves_the_term_only_with_the_combiner_on(rec) -> None:  # noqa: F811
    head = rec.learner.head
    log, tasks = _validation(rec)
    head.set_rating_knn(_lists(rec))
    only_knn = np.zeros_like(COEF)
    only_knn[2, 0] = 1.0
    head.set_rate_mix(torch.from_numpy(only_knn).float())
    assert not head.rate_knn_active  # the fold-in and MF rows all zero: the combiner is off
    head.set_rate_mix(torch.from_numpy(COEF).float())
    assert head.rate_knn_active
    with_knn = predict_tasks(rec.learner, rec.space, log, tasks)
    without = COEF.copy()
    without[2] = 0
    head.set_rate_mix(torch.from_numpy(without).float())
    assert head.rate_mix_active and not head.rate_knn_active
    plain = predict_tasks(rec.learner, rec.space, log, tasks)
    parts = post_training.rating_parts(rec.learner, rec.space, log, tasks)
    assert parts["seen"].all() and np.abs(parts["knn"]).max() > 0.01
    weight = parts["features"] @ COEF[2]  # each rating's user weight of the kNN term
    np.testing.assert_allclose((with_knn - plain)[tasks.query >= 0], weight * parts["knn"], atol=2e-4)


def _lists(model):
    return rating_knn.fit_rating_knn(
        UserLog.from_frame(_ds().interactions, model.space.items), model.space.n_items
    )


def test_the_ablation_removes_only_the_knn_term() -> None:
    check_ablations(["no-rating-knn"])
    assert ADDED_PATH_ABLATIONS["no-rating-knn"][1] == "rate_knn"


def test_saved_lists_load_back_and_files_without_them_load_with_the_term_off(rec, tmp_path) -> None:  # noqa: F811
    from recsys.recommender import ColdStartRecommender

    head = rec.learner.head
    post_training._set_mf(head, _mf(rec))
    head.set_rating_knn(_lists(rec))
    head.set_rate_mix(torch.from_numpy(COEF).float())
    rec._cache = None
    request = {56: 5.0, 18: 4.0, 45: 1.0}
    want = rec.predict(request, [1, 2, 3, 4])
    loaded = ColdStartRecommender.load(rec.save(tmp_path / "m"))
    assert loaded.learner.head.rate_knn_active
    np.testing.assert_array_equal(loaded.learner.head.knn_idx.numpy(), head.knn_idx.numpy())
    np.testing.assert_allclose(loaded.predict(request, [1, 2, 3, 4]), want, atol=1e-5)
    state = {k: v for k, v in rec.learner.state_dict().items() if "knn" not in k}
    fresh = training.build_learner(rec.config, rec.space, rec.info["rating_mean"])
    load_weights(fresh, state)  # what loading a model saved before the term existed does
    assert fresh.head.rate_mix_active and not fresh.head.rate_knn_active


def test_the_rating_knn_baseline_is_the_item_baseline_the_user_offset_and_the_same_term() -> None:
    """The `rating-knn` baseline predicts ``base_i + u + k_ui`` with the lists and term the combiner
    uses (:func:`rating_knn.knn_scores`), so its row in a report is that term alone."""
    from recsys.models.classical import BASELINES

    log, n = _log(n_users=80, seed=3), 12
    model = BASELINES["rating-knn"](neighbours=5).fit(log, n)
    items = np.array([[0, 4, 7, -1], [-1, -1, -1, -1]])
    ratings = np.array([[5.0, 1.0, 3.0, 0.0], [0.0] * 4], dtype=np.float32)
    got = model.score(items, ratings).ratings
    lists = rating_knn.fit_rating_knn(log, n, k=5)
    it, m = torch.from_numpy(items[0]).clamp_min(0), torch.from_numpy(items[0] >= 0)
    sy, base = torch.from_numpy(ratings[0]).double(), torch.from_numpy(model.base[it.numpy()])
    d = rating_knn.support_residuals(sy, base, m)
    term = rating_knn.knn_scores(
        torch.from_numpy(lists.idx[it.numpy()]).long(),
        torch.from_numpy(lists.val[it.numpy()]).double(),
        d,
        m,
        n,
    )
    user = float(((sy - base) * m).sum() / (m.sum() + 1.0))
    np.testing.assert_allclose(got[0], model.base + user + term.numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1], model.base, atol=1e-6)  # no support: the item baseline
