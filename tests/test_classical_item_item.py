"""The classical item-item path (``model.hybrid.classical_item_item``): after training, EASE or cosine
item-kNN fitted on the training users' liked ratings, whose fold-in of a new user's liked support items is
added to the ranking scores with a weight chosen on validation users. Alone it scores exactly as the
``ease`` / ``item-knn`` baselines with liked positives; at weight 0 the model ranks as trained; the
choice never makes the validation value worse; files without its buffers load with it off; catalogues
above the dense limit keep no matrix; items added later get no row or column."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recsys import added_paths, training
from recsys.data.tasks import UserLog
from recsys.models.catalogue import grow_catalogue
from recsys.models.classical import BASELINES
from recsys.persistence import load_weights
from tests.test_als_path import _rank, _support, choose_planted, restoring_added_paths
from tests.test_path_weights import _ds, _fit, _validation

rec = pytest.fixture(restoring_added_paths, name="rec")


def _baseline(rec, kind: str):
    log = UserLog.from_frame(_ds().interactions, rec.space.items)
    params = {"positives": "liked", "threshold": 4.0}
    params |= {"lam": 500.0} if kind == "ease" else {"K": 20}
    return BASELINES[kind](**params).fit(log, rec.space.n_items)


def _matrix(baseline) -> torch.Tensor:
    m = baseline.B if hasattr(baseline, "B") else baseline.similarity.toarray()
    return torch.from_numpy(np.asarray(m, dtype=np.float32))


def _path(baseline, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The path's scores: the baseline's, but nothing for a user without a liked support item (the
    baseline falls back to a prior there); and which users those are."""
    none = ((items < 0) | (ratings < 4.0)).all(1)
    return np.where(none[:, None], 0.0, baseline._score(items, ratings)), none


@pytest.mark.parametrize("kind", ["ease", "item-knn"])
def test_the_path_alone_scores_exactly_as_the_liked_baseline(rec, kind) -> None:
    baseline = _baseline(rec, kind)
    head = rec.learner.head
    head.set_cf(_matrix(baseline), 4.0)
    head.set_cf_weight(1.0)
    head.set_als_weight(0.0)
    head.set_rank_mix(0.0, 0.0)
    head.trend_weight.zero_()
    items, ratings = _support(rec)
    got = _rank(rec, items, ratings)
    want, none = _path(baseline, items, ratings)
    assert np.abs(want).max() > 0 and not none.all()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_weight_zero_ranks_as_trained_and_the_path_adds_linearly(rec) -> None:
    baseline = _baseline(rec, "ease")
    head = rec.learner.head
    head.set_cf(_matrix(baseline), 4.0)
    head.set_cf_weight(0.0)
    items, ratings = _support(rec)
    off = _rank(rec, items, ratings)
    head.set_cf_weight(3.0)
    np.testing.assert_allclose(
        _rank(rec, items, ratings), off + 3.0 * _path(baseline, items, ratings)[0], atol=5e-4
    )


def test_fit_records_the_choice_and_it_is_the_best_validation_value() -> None:
    rec = _fit()
    chosen = rec.info["classical_item_item"]
    values = chosen["validation_recall20_plus_ndcg10"]
    assert len(values) == 1 + len(added_paths.CF_FITS) * len(added_paths.WEIGHTS)
    best = max(values, key=lambda k: (values[k], k == "off"))
    assert (best == "off") == (chosen["weight"]["3-20"] == 0.0)
    assert chosen["chosen"].startswith("off") == (not any(chosen["weight"].values()))
    assert rec.learner.head.cf_weight.tolist() == pytest.approx(list(chosen["weight"].values()))


def test_a_path_that_ranks_the_held_out_items_first_is_chosen_and_noise_is_not(rec, monkeypatch) -> None:
    chosen = choose_planted(rec, monkeypatch, "noise", "perfect", "cf")
    assert not chosen["chosen"].startswith("off") and all(w > 0 for w in chosen["weight"].values())
    chosen = choose_planted(rec, monkeypatch, "perfect", "noise", "cf")
    assert chosen["chosen"].startswith("off") and not rec.learner.head.cf_weight.any()


def test_choosing_one_added_path_keeps_the_other_as_chosen(rec, monkeypatch) -> None:
    """The ALS path is chosen after this one: while it is scored alone the classical path is off, and
    afterwards the classical path's weight is what was chosen for it."""
    head = rec.learner.head
    head.set_cf(_matrix(_baseline(rec, "ease")), 4.0)
    head.set_cf_weight(0.75)
    val_log, tasks = _validation(rec)
    train_log = UserLog.from_frame(_ds().interactions, rec.space.items)
    seen = []
    real = added_paths.catalogue_scores

    def spy(learner, *args, **kw):
        seen.append((float(learner.head.als_weight.max()), float(learner.head.cf_weight.max())))
        return real(learner, *args, **kw)

    monkeypatch.setattr(added_paths, "catalogue_scores", spy)
    added_paths.choose_als_path(rec.learner, rec.space, rec.config, train_log, val_log, tasks)
    assert (0.0, 0.75) in seen and (1.0, 0.0) in seen and (1.0, 0.75) not in seen
    assert head.cf_weight.tolist() == [0.75] * len(head.cf_weight)


def test_a_model_file_without_the_path_loads_with_it_off(rec) -> None:
    rec.learner.head.set_cf_weight(1.0)
    state = {k: v for k, v in rec.learner.state_dict().items() if ".cf_" not in k}
    fresh = training.build_learner(rec.config, rec.space, rec.info["rating_mean"])
    load_weights(fresh, state)
    assert not fresh.head.cf_weight.any() and not fresh.head.cf_active


def test_a_catalogue_above_the_dense_limit_or_the_path_off_keeps_no_matrix() -> None:
    base = _fit()
    for change in ({"model.hybrid.item_item_dense_items": 10}, {"model.hybrid.classical_item_item": False}):
        cfg = copy.deepcopy(base.config).override(**change)
        head = training.build_learner(cfg, base.space, 3.5).head
        assert head.cf_matrix.shape == (0, 0) and not added_paths.wants_cf_path(head, cfg)


def test_items_added_later_get_no_row_or_column(rec) -> None:
    rec.learner.head.set_cf(_matrix(_baseline(rec, "ease")), 4.0)
    head = copy.deepcopy(rec.learner.head)
    n = head.cf_matrix.shape[0]
    assert "cf_matrix" in grow_catalogue(head, 2)
    assert head.cf_matrix.shape == (n + 2, n + 2)
    assert torch.equal(head.cf_matrix[:n, :n], rec.learner.head.cf_matrix)
    assert not head.cf_matrix[n:].any() and not head.cf_matrix[:, n:].any()


def test_the_training_summary_says_what_was_chosen_for_each_added_path() -> None:
    from recsys.workflows import summary_text

    rec = _fit()
    text = summary_text(rec)
    assert (
        f"classical item-item path chosen on validation users: {rec.info['classical_item_item']['chosen']}"
        in text
    )
    assert f"ALS ranking path chosen on validation users: {rec.info['als_path']['chosen']}" in text


@pytest.mark.parametrize("chosen", [True, False])
def test_a_saved_model_keeps_the_matrix_only_where_the_path_was_chosen(rec, chosen, tmp_path) -> None:
    head = rec.learner.head
    if chosen:
        head.set_cf(_matrix(_baseline(rec, "ease")), 4.0)
        head.set_cf_weight(0.5)
    else:
        head.drop_cf()
    n = rec.space.n_items if chosen else 0
    rec.save(tmp_path / "m")
    back = type(rec).load(tmp_path / "m")
    assert back.learner.head.cf_matrix.shape == (n, n) and back.learner.head.cf_active == chosen
    items, ratings = _support(rec)
    np.testing.assert_allclose(_rank(back, items, ratings), _rank(rec, items, ratings), atol=1e-5)
