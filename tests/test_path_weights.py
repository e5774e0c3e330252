"""The paths' weights chosen after training: the ranking paths' mix (``model.hybrid.rank_mix``) and the
rating fold-in's weight (``model.hybrid.fold_in_weight``). The head's outputs are the weighted sums of
its paths, the choice on validation users keeps the model as trained unless another weight does better,
and model files without the weights load as trained."""

from __future__ import annotations

import functools

import numpy as np
import polars as pl
import pytest
import torch

from recsys import post_training, training
from recsys.data.synthetic import make_synthetic
from recsys.data.tasks import UserLog, sample_tasks
from recsys.persistence import load_weights
from recsys.recommender import ColdStartRecommender

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8], "factor_dim": 8},
    "train": {"epochs": 1, "meta_batch_size": 16, "num_threads": 1},
}
RATINGS = {56: 5.0, 18: 4.0, 45: 1.0, 14: 2.0}


@functools.cache
def _ds():
    return make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3)


@functools.cache
def _fit(rank_mix: bool = True, fold_in_weight: bool = True) -> ColdStartRecommender:
    ds = _ds()
    hybrid = {"rank_mix": rank_mix, "fold_in_weight": fold_in_weight}
    cfg = TINY | {"model": TINY["model"] | {"hybrid": hybrid}}
    return ColdStartRecommender(cfg).fit_dataset(ds)


def _validation(rec: ColdStartRecommender):
    """A log of 40 of the users and one task each (support 3-5, query up to 10)."""
    frame = _ds().interactions
    log = UserLog.from_frame(
        frame.filter(pl.col("user_id").is_in(frame["user_id"].unique().sort()[:40].implode())),
        rec.space.items,
    )
    tasks = sample_tasks(
        log, np.arange(log.n_users), np.random.default_rng(0), support_size=(3, 5), query_size=10
    )
    return log, tasks


def _rank(rec: ColdStartRecommender, mix: tuple[float, float]) -> np.ndarray:
    head = rec.learner.head
    before = head.rank_mix.clone()
    head.set_rank_mix(*mix)
    try:
        scores, _ = rec.score_users([RATINGS], what="rank")
    finally:
        head.rank_mix.copy_(before)
    return scores[0]


def test_ranking_scores_are_the_weighted_sum_of_the_paths() -> None:
    rec = _fit()
    # the terms no mix weighs: the trend prior and the ALS path (where validation chose them)
    fixed = _rank(rec, (0.0, 0.0))
    encoder = _rank(rec, (1.0, 0.0)) - fixed
    item_item = _rank(rec, (0.0, 1.0)) - fixed
    assert np.abs(encoder).max() > 0 and np.abs(item_item).max() > 0
    np.testing.assert_allclose(
        _rank(rec, (0.5, 2.0)), 0.5 * encoder + 2.0 * item_item + fixed, rtol=1e-4, atol=1e-4
    )


def test_fit_records_the_chosen_mix_and_sets_it_on_the_head() -> None:
    rec = _fit()
    mix = rec.info["rank_mix"]
    assert (mix["support_encoder"], mix["item_item"]) in post_training.RANK_MIXES
    assert rec.learner.head.rank_mix.tolist() == [mix["support_encoder"], mix["item_item"]]
    values = mix["validation_recall20_plus_ndcg10"]
    assert values[f"{mix['support_encoder']:g},{mix['item_item']:g}"] == max(values.values())


def test_rank_mix_off_keeps_both_paths_as_trained() -> None:
    rec = _fit(rank_mix=False)
    assert "rank_mix" not in rec.info
    assert rec.learner.head.rank_mix.tolist() == [1.0, 1.0]


def _choose_with_paths(monkeypatch, encoder: np.ndarray, item_item: np.ndarray) -> dict:
    """choose_rank_mix on the tiny model's validation users with planted path scores."""
    rec = _fit()
    learner, space = rec.learner, rec.space

    def planted_scores(learner, space, log, tasks, **kw):
        enc, ii = learner.head.rank_mix.tolist()
        return enc * encoder[: len(tasks)] + ii * item_item[: len(tasks)]

    monkeypatch.setattr(post_training, "catalogue_scores", planted_scores)
    val_log, tasks = _validation(rec)
    before = learner.head.rank_mix.tolist()
    try:
        return post_training.choose_rank_mix(learner, space, rec.config, val_log, tasks)
    finally:
        learner.head.set_rank_mix(*before)


def test_a_path_that_only_adds_noise_gets_weight_zero(monkeypatch) -> None:
    rec = _fit()
    val_log, tasks = _validation(rec)
    n = rec.space.n_items
    # item-item path: every held-out item of each validation user on top; encoder: noise
    perfect = np.zeros((len(tasks), n))
    for t in range(len(tasks)):
        held = tasks.query[t][tasks.query[t] >= 0]
        perfect[t, val_log.items[held]] = 10.0
    noise = np.random.default_rng(0).normal(0, 100.0, (len(tasks), n))
    chosen = _choose_with_paths(monkeypatch, noise, perfect)
    assert chosen["support_encoder"] == 0.0 and chosen["item_item"] == 1.0


def test_the_model_as_trained_wins_ties(monkeypatch) -> None:
    rec = _fit()
    _, tasks = _validation(rec)
    same = np.random.default_rng(1).normal(size=(len(tasks), rec.space.n_items))
    chosen = _choose_with_paths(monkeypatch, same, same)
    assert (chosen["support_encoder"], chosen["item_item"]) == (1.0, 1.0)


def test_a_model_file_without_rank_mix_loads_with_both_paths_at_one() -> None:
    rec = _fit()
    rec_state = rec.learner.state_dict()
    state = {k: v for k, v in rec_state.items() if k not in ("net.head.rank_mix", "net.head.fold_in_weight")}
    fresh = training.build_learner(rec.config, rec.space, rec.info["rating_mean"])
    load_weights(fresh, state)  # what loading a model saved before the weights existed does
    assert fresh.head.rank_mix.tolist() == [1.0, 1.0] and float(fresh.head.fold_in_weight) == 1.0
    assert torch.equal(fresh.state_dict()["net.head.ii_scale"], rec_state["net.head.ii_scale"])


def test_saved_model_keeps_the_chosen_mix(tmp_path) -> None:
    rec = _fit()
    rec.learner.head.set_rank_mix(0.5, 2.0)
    try:
        rec.save(tmp_path / "m")
        back = ColdStartRecommender.load(tmp_path / "m")
        assert back.learner.head.rank_mix.tolist() == [0.5, 2.0]
    finally:
        rec.learner.head.set_rank_mix(
            rec.info["rank_mix"]["support_encoder"], rec.info["rank_mix"]["item_item"]
        )


@pytest.mark.parametrize("mix", [(0.0, 1.0), (1.0, 0.0)])
def test_explanation_parts_follow_the_mix(mix) -> None:
    rec = _fit()
    head = rec.learner.head
    before = head.rank_mix.tolist()
    head.set_rank_mix(*mix)
    try:
        item = 3
        e = rec.explain(RATINGS, item)
        assert sum(e["parts"].values()) == pytest.approx(e["score"], abs=1e-9)
        zero = "support_encoder" if mix[0] == 0 else "item_item"
        assert e["parts"][zero] == 0.0
        contributions = sum(s["contribution"] for s in e["support"])
        assert contributions == pytest.approx(e["parts"]["item_item"], abs=1e-6)
    finally:
        head.set_rank_mix(*before)


# ---- the rating fold-in's weight -------------------------------------------------------------------------
def _predict(rec: ColdStartRecommender, weight: float) -> np.ndarray:
    head = rec.learner.head
    before = float(head.fold_in_weight)
    head.set_fold_in_weight(weight)
    try:
        return rec.predict(RATINGS, list(range(1, 40)))
    finally:
        head.set_fold_in_weight(before)


def test_rating_predictions_are_the_item_baseline_plus_the_weighted_fold_in() -> None:
    rec = _fit()
    base, full = _predict(rec, 0.0), _predict(rec, 1.0)
    assert not np.allclose(base, full)
    np.testing.assert_allclose(_predict(rec, 0.5), 0.5 * (base + full), rtol=1e-5, atol=1e-5)
    # weight 0: every user gets the item's baseline, whatever they rated
    head = rec.learner.head
    before = float(head.fold_in_weight)
    head.set_fold_in_weight(0.0)
    try:
        other = rec.predict({3: 1.0, 7: 2.0}, list(range(1, 40)))
    finally:
        head.set_fold_in_weight(before)
    np.testing.assert_allclose(other, base, rtol=1e-6)


def test_fit_records_the_fold_in_weight_with_the_lowest_validation_mae() -> None:
    rec = _fit()
    chosen = rec.info["fold_in_weight"]
    assert chosen["weight"] in post_training.FOLD_IN_WEIGHTS
    assert float(rec.learner.head.fold_in_weight) == chosen["weight"]
    values = chosen["validation_mae"]
    assert values[f"{chosen['weight']:g}"] == min(values.values())
    if values["1"] == min(values.values()):
        assert chosen["weight"] == 1.0  # the model as trained wins ties


def test_fold_in_weight_off_keeps_the_fold_in_as_trained() -> None:
    rec = _fit(fold_in_weight=False)
    assert "fold_in_weight" not in rec.info
    assert float(rec.learner.head.fold_in_weight) == 1.0


def test_a_fold_in_that_only_adds_noise_gets_weight_zero(monkeypatch) -> None:
    """Validation MAE that grows with the fold-in's weight: the prediction falls back to the item's
    baseline."""
    rec = _fit()
    learner, space = rec.learner, rec.space

    def planted(learner, space, log, tasks, **kw):
        return {"mae": 0.7 + float(learner.head.fold_in_weight)}

    monkeypatch.setattr(post_training, "evaluate_rating_tasks", planted)
    val_log, tasks = _validation(rec)
    before = float(learner.head.fold_in_weight)
    try:
        chosen = post_training.choose_fold_in_weight(learner, space, rec.config, val_log, tasks)
    finally:
        learner.head.set_fold_in_weight(before)
    assert chosen["weight"] == 0.0


def test_validation_in_chunks_of_users_gives_the_figures_and_choices_of_all_users_at_once(
    monkeypatch,
) -> None:
    """The catalogue validation (each epoch, the ranking paths' mix, the trend prior) scores the
    validation users a chunk at a time (16k validation users of a 62k-item catalogue would take 4 GB a
    path at once): with 3 users a chunk every figure and choice equals the one of all users at once."""
    from recsys.meta import validation

    rec = _fit()
    learner, space, cfg = rec.learner, rec.space, rec.config
    val_log, tasks = _validation(rec)
    train_log = UserLog.from_frame(_ds().interactions, space.items)
    head = learner.head
    saved = {k: v.clone() for k, v in head.state_dict().items()}

    def run() -> tuple:
        head.load_state_dict(saved)
        figures = validation.evaluate_rating_tasks(learner, space, val_log, tasks, catalogue=True)
        mix = post_training.choose_rank_mix(learner, space, cfg, val_log, tasks)
        trend = post_training.choose_trend(learner, space, cfg, train_log, val_log, tasks)
        return figures, mix, trend

    try:
        whole = run()
        monkeypatch.setattr(validation, "CATALOGUE_CHUNK_VALUES", 3 * space.n_items)
        assert len(list(validation.task_chunks(tasks, space.n_items))) == -(-len(tasks) // 3)
        chunked = run()
    finally:
        head.load_state_dict(saved)
    for a, b in zip(whole, chunked, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], dict):
                assert a[key] == pytest.approx(b[key], abs=1e-6)
            else:
                assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_every_candidate_of_catalogue_values_gets_the_metrics_of_its_own_scores_ranked_alone() -> None:
    """The candidates of one chunk share one scratch array, masked in place: each candidate's Recall@20
    and nDCG@10 are still those of its scores evaluated alone by the evaluation's own top-N (ties, NaN
    scores and support items included), whatever the candidate before it wrote."""
    from recsys.meta import validation

    rec = _fit()
    space = rec.space
    val_log, tasks = _validation(rec)
    rng = np.random.default_rng(5)
    paths = [rng.normal(size=(len(tasks), space.n_items)).astype(np.float32) for _ in range(2)]
    paths[1][:, ::7] = 0.0  # ties at the top-20 boundary
    paths[1][3, :5] = np.nan
    prior = rng.normal(size=space.n_items).astype(np.float32)
    combos = {
        "first": (lambda p, out: out.copy_(p[0]), lambda p: p[0]),
        "mix": (
            lambda p, out: torch.mul(p[0], 0.5, out=out).add_(p[1], alpha=2.0),
            lambda p: 0.5 * p[0] + 2.0 * p[1],
        ),
        "second": (lambda p, out: out.copy_(p[1]), lambda p: p[1]),
        "prior": (
            lambda p, out: torch.add(p[0], torch.from_numpy(prior), alpha=0.25, out=out),
            lambda p: p[0] + 0.25 * prior,
        ),
    }
    got = validation.catalogue_values(
        lambda chunk: paths,  # one chunk: 40 tasks of a 60-item catalogue
        {key: c[0] for key, c in combos.items()},
        space,
        val_log,
        tasks,
        4.0,
    )
    for key, (_, reference) in combos.items():
        want = validation.catalogue_quality(reference(paths), space, val_log, tasks, 4.0)
        assert got[key] == pytest.approx(want, abs=1e-9), key
