"""The implicit-ALS ranking path (``model.hybrid.als_path``): after training, implicit ALS fitted on the
training users, whose fold-in of a new user's support is added to the ranking scores with a weight
chosen on validation users. Alone it scores exactly as the ``implicit-als`` baseline; at weight 0 the
model ranks as trained; the choice never makes the validation value worse; files without its buffers
load with it off; items added later get no factors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recsys import added_paths, training
from recsys.data.tasks import UserLog
from recsys.meta.scoring import score_catalogue
from recsys.models.catalogue import grow_catalogue
from recsys.models.classical import ImplicitALS
from recsys.models.support_bands import BAND_NAMES
from recsys.persistence import load_weights
from tests.test_mf_fallback import _support
from tests.test_path_weights import _ds, _fit, _validation


def restoring_added_paths():
    """The shared tiny model, its added paths and ranking mix restored after each test (the ``rec``
    fixture here and in test_classical_item_item.py)."""
    rec = _fit()
    head = rec.learner.head
    saved = {k: v.clone() for k, v in head.state_dict().items() if k.startswith(("als_", "cf_", "rank_mix"))}
    yield rec
    for name, value in saved.items():  # setattr: the added paths' buffers change size
        setattr(head, name, value)
    rec._cache = None


rec = pytest.fixture(restoring_added_paths, name="rec")


def _als(rec, positives: str = "all", alpha: float = 1.0) -> ImplicitALS:
    log = UserLog.from_frame(_ds().interactions, rec.space.items)
    kwargs = {"positives": positives, "threshold": 4.0, "alpha": alpha, "regularization": 20.0}
    return ImplicitALS(seed=0, factors=16, **kwargs).fit(log, rec.space.n_items)


def _rank(rec, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    rec._cache = None
    users = rec.space.user_table.gather(np.zeros(len(items), dtype=np.int64))
    return score_catalogue(rec.learner, rec.space, items, ratings, users, ratings=False).ranking


def _set(rec, als: ImplicitALS, weight: float, positives: str = "all") -> None:
    head = rec.learner.head
    threshold = 4.0 if positives == "liked" else None
    head.set_als(torch.from_numpy(als.item_factors), 20.0, float(als.params["alpha"]), threshold)
    head.set_als_weight(weight)


@pytest.mark.parametrize(("positives", "alpha"), [("all", 1.0), ("liked", 1.0), ("all", 4.0)])
def test_the_path_alone_scores_exactly_as_the_implicit_als_baseline(rec, positives, alpha) -> None:
    als = _als(rec, positives, alpha)
    head = rec.learner.head
    _set(rec, als, 1.0, positives)
    head.set_rank_mix(0.0, 0.0)
    head.trend_weight.zero_()
    head.set_cf_weight(0.0)
    items, ratings = _support(rec)
    got = _rank(rec, items, ratings)
    want = als._score(items, ratings)
    # a user without a positive in the support: the baseline gives the average training user, the path
    # nothing (the model's other paths rank alone)
    none = ((items < 0) | ((ratings < 4.0) & (positives == "liked"))).all(1)
    assert np.abs(want).max() > 0 and not none.all()
    np.testing.assert_allclose(got[~none], want[~none], atol=2e-4)
    assert not got[none].any()


def test_weight_zero_ranks_as_trained_and_the_path_adds_linearly(rec) -> None:
    items, ratings = _support(rec)
    trained = _rank(rec, items, ratings) if not rec.learner.head.als_weight.any() else None
    als = _als(rec)
    _set(rec, als, 0.0)
    off = _rank(rec, items, ratings)
    if trained is not None:
        np.testing.assert_array_equal(off, trained)
    _set(rec, als, 2.5)
    np.testing.assert_allclose(_rank(rec, items, ratings), off + 2.5 * als._score(items, ratings), atol=5e-4)


def test_fit_records_the_choice_and_it_is_the_best_validation_value() -> None:
    rec = _fit()
    chosen = rec.info["als_path"]
    values = chosen["validation_recall20_plus_ndcg10"]
    assert "off" in values and len(values) == 1 + 2 * len(added_paths.ALS_FITS) * len(added_paths.WEIGHTS)
    short = max(values, key=lambda k: (values[k], k == "off"))
    assert (short == "off") == (chosen["weight"]["3-20"] == 0.0)
    assert (chosen["chosen"] == "off") == (not any(chosen["weight"].values()))
    assert list(chosen["weight"]) == list(BAND_NAMES)
    assert rec.learner.head.als_weight.tolist() == pytest.approx(list(chosen["weight"].values()))


def planted(model: str, path: str, buffer: str):
    """Planted catalogue scores of the added-path choice: while the head's ``buffer`` (the path's weight)
    is 0 the model's, else the path's; each ``"perfect"`` (every task's relevant items on top: the
    user's others rated 4 or more; the rest 0), ``"noise"`` (normal noise), ``"perfect-long"`` (perfect for supports above 20 ratings, noise for
    the others), ``"perfect-short"`` (the reverse), ``"perfect-1-2"`` (perfect for supports of 1-2
    ratings, noise for the others) or ``"perfect-3+"`` (the reverse)."""
    rng = np.random.default_rng(0)

    def kind(name: str, log, chunk, n_items: int) -> np.ndarray:
        noise = rng.normal(0, 1.0, (len(chunk), n_items))
        perfect = np.zeros_like(noise)
        for t, u in enumerate(chunk.users):  # the relevant items (the user's others rated 4+) on top
            own = np.arange(log.indptr[u], log.indptr[u + 1])
            own = own[(log.ratings[own] >= 4.0) & ~np.isin(own, chunk.support[t])]
            perfect[t, log.items[own]] = 10.0
        long = (chunk.support_sizes > 20)[:, None]
        if name in ("perfect-long", "perfect-short"):
            return np.where(long == (name == "perfect-long"), perfect, noise).astype(np.float32)
        if name in ("perfect-1-2", "perfect-3+"):
            one_two = (chunk.support_sizes <= 2)[:, None]
            return np.where(one_two == (name == "perfect-1-2"), perfect, noise).astype(np.float32)
        return (perfect if name == "perfect" else noise).astype(np.float32)

    def scores(learner, space, log, chunk, **kw):
        return kind(path if learner.head.get_buffer(buffer).any() else model, log, chunk, space.n_items)

    return scores


def choose_planted(rec, monkeypatch, model: str, path: str, which: str = "als") -> dict:
    """Choose the ``which`` added path ("als" or "cf") of ``rec`` on the shared validation tasks with
    :func:`planted` scores (``model`` while the path's weight is 0, ``path`` otherwise); its report."""
    val_log, tasks = _validation(rec)
    train_log = UserLog.from_frame(_ds().interactions, rec.space.items)
    monkeypatch.setattr(added_paths, "catalogue_scores", planted(model, path, f"{which}_weight"))
    choose = added_paths.choose_als_path if which == "als" else added_paths.choose_cf_path
    return choose(rec.learner, rec.space, rec.config, train_log, val_log, tasks)


def test_a_path_that_ranks_the_held_out_items_first_is_chosen(rec, monkeypatch) -> None:
    """With planted scores where the ALS path puts each validation user's held-out items on top and the
    model ranks at random, the choice moves to the ALS path; where the ALS path is noise, it stays off."""
    learner = rec.learner
    chosen = choose_planted(rec, monkeypatch, "noise", "perfect")
    assert chosen["chosen"] != "off" and all(w > 0 for w in chosen["weight"].values())
    chosen = choose_planted(rec, monkeypatch, "perfect", "noise")
    assert chosen["chosen"] == "off" and not learner.head.als_weight.any()
    assert learner.head.rank_mix.tolist() == [
        rec.info["rank_mix"][k] for k in ("support_encoder", "item_item")
    ]


def test_a_model_file_without_the_als_buffers_loads_with_the_path_off(rec) -> None:
    _set(rec, _als(rec), 1.0)
    state = {k: v for k, v in rec.learner.state_dict().items() if ".als_" not in k}
    fresh = training.build_learner(rec.config, rec.space, rec.info["rating_mean"])
    load_weights(fresh, state)
    assert not fresh.head.als_weight.any() and not fresh.head.als_active


def test_the_path_off_in_the_config_keeps_no_per_item_buffers() -> None:
    cfg = copy.deepcopy(_fit().config).override(**{"model.hybrid.als_path": False})
    learner = training.build_learner(cfg, _fit().space, 3.5)
    assert learner.head.als_factors.shape == (0, added_paths.ALS_WIDTH)
    assert not added_paths.wants_als_path(learner.head, cfg)


@pytest.mark.parametrize("chosen", [True, False])
def test_a_saved_model_keeps_the_factors_only_where_the_path_was_chosen(rec, chosen, tmp_path) -> None:
    """Off, the path's per-item factors are dropped (a large catalogue saves no [n_items, 64] zeros);
    on, they are saved and load back: either file loads and scores as the model that saved it."""
    head = rec.learner.head
    if chosen:
        _set(rec, _als(rec), 0.5)
    else:
        head.drop_als()
    rows = rec.space.n_items if chosen else 0
    assert head.als_factors.shape == (rows, added_paths.ALS_WIDTH)
    rec.save(tmp_path / "m")
    back = type(rec).load(tmp_path / "m")
    assert back.learner.head.als_factors.shape == (rows, added_paths.ALS_WIDTH)
    items, ratings = _support(rec)
    np.testing.assert_allclose(_rank(back, items, ratings), _rank(rec, items, ratings), atol=1e-5)


def test_items_added_later_get_no_als_factors(rec) -> None:
    _set(rec, _als(rec), 1.0)
    head = copy.deepcopy(rec.learner.head)
    n = head.als_factors.shape[0]
    assert "als_factors" in grow_catalogue(head, 3)
    assert head.als_factors.shape == (n + 3, added_paths.ALS_WIDTH)
    assert torch.equal(head.als_factors[:n], rec.learner.head.als_factors)
    assert not head.als_factors[n:].any()


def test_a_new_head_holds_finite_als_buffers() -> None:
    """Regression: "every rating is a positive" was a -inf threshold, and a checkpoint's model tensors
    must be finite (the crash test checks them)."""
    head = training.build_learner(_fit().config, _fit().space, 3.5).head
    assert all(torch.isfinite(b).all() for name, b in head.named_buffers() if name.startswith("als_"))


@pytest.mark.parametrize("which", ["als", "cf"])
@pytest.mark.parametrize("at_once", [1, 3])
def test_scoring_the_fits_in_groups_chooses_exactly_what_scoring_them_all_at_once_does(
    monkeypatch, at_once, which
) -> None:
    """Regression (a 100,000-item catalogue went over its 6 GB address-space cap when an ALS grid of 16
    fits was tried): the added paths' fits are scored a few at a time beside the model, and every
    candidate's validation value, the choice and the weights are the same as with every fit at once."""
    base = _fit()
    val_log, tasks = _validation(base)
    train_log = UserLog.from_frame(_ds().interactions, base.space.items)
    choose_path = added_paths.choose_als_path if which == "als" else added_paths.choose_cf_path

    def choose(n: int) -> tuple[dict, list[float]]:
        rec = copy.deepcopy(base)  # each choice from the same trained model
        monkeypatch.setattr(added_paths, "FITS_AT_ONCE", n)
        report = choose_path(rec.learner, rec.space, rec.config, train_log, val_log, tasks)
        return report, rec.learner.head.get_buffer(f"{which}_weight").tolist()

    together, grouped = choose(100), choose(at_once)
    assert grouped == together
    n_fits = 2 * len(added_paths.ALS_FITS) if which == "als" else len(added_paths.CF_FITS)
    assert len(together[0]["validation_recall20_plus_ndcg10"]) == 1 + n_fits * len(added_paths.WEIGHTS)
