"""The public API: fit, save/load round trip, resume, predict/recommend, and input validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys import ColdStartRecommender
from recsys.config import RecommenderConfig
from recsys.errors import ModelFileError, ScoringInputError, UnknownItemError
from recsys.meta.trainer import MetaTrainer
from tests.helpers import random_log_with_duplicates

FAST = {
    "train.epochs": 2,
    "train.meta_batch_size": 16,
    "model.embedding_dim": 8,
    "model.hidden": (16, 16),
    "train.checkpoint_every": 5,
    "train.checkpoint_interval_s": 0,
    "train.patience": 0,
}


def fit(ds, tmp: Path | None = None, resume: bool = False, **over) -> ColdStartRecommender:
    rec = ColdStartRecommender(**(FAST | over))
    return rec.fit(
        ds.interactions,
        ds.users,
        ds.items,
        user_fields=ds.spec.user_fields,
        item_fields=ds.spec.item_fields,
        title_field="title",
        rating_scale=(1.0, 5.0),
        checkpoint=tmp / "ckpt.safetensors" if tmp else None,
        resume=resume,
    )


@pytest.fixture(scope="module")
def trained(synthetic_small, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    rec = fit(synthetic_small)
    rec.save(tmp / "m")
    return rec, tmp / "m"


def state(rec) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in rec.learner.state_dict().items()}


def test_save_load_predict_round_trip(trained) -> None:
    rec, path = trained
    again = ColdStartRecommender.load(path)
    ratings = {1: 5.0, 2: 3.0, 7: 4.0}
    items = [3, 4, 5, 50]
    assert np.array_equal(rec.predict(ratings, items), again.predict(ratings, items))
    assert rec.recommend(ratings, n=5) == again.recommend(ratings, n=5)
    assert again.title(3) == "Item 3"
    for name in ("config.json", "features.json", "manifest.json", "model.safetensors"):
        assert (path / name).exists()


@pytest.mark.parametrize(
    "over",
    [{}, {"train.weight_average": 0.9, "train.grad_clip_scope": "per-path"}],
    ids=["default", "weight-average"],
)
def test_resume_after_a_crash_matches_an_uninterrupted_run(
    synthetic_small, tmp_path, monkeypatch, over
) -> None:
    full = fit(synthetic_small, **over)
    original = MetaTrainer._step
    calls = {"n": 0}

    def crashing(self, batch, *args):
        calls["n"] += 1
        if calls["n"] == 23:  # mid-way through the second epoch, after a checkpoint at step 20
            raise KeyboardInterrupt("simulated crash")
        return original(self, batch, *args)

    monkeypatch.setattr(MetaTrainer, "_step", crashing)
    with pytest.raises(KeyboardInterrupt):
        fit(synthetic_small, tmp_path, **over)
    monkeypatch.setattr(MetaTrainer, "_step", original)
    resumed = fit(synthetic_small, tmp_path, resume=True, **over)
    a, b = state(full), state(resumed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-6, msg=name)
    assert [h["train_loss"] for h in full.history] == pytest.approx(
        [h["train_loss"] for h in resumed.history]
    )


def test_empty_ratings_is_pure_cold_start_and_uses_features(trained) -> None:
    rec, _ = trained
    plain = rec.recommend({}, n=10)
    assert len(plain) == 10 and all(isinstance(s, float) for _, s in plain)
    a = rec.predict({}, [1, 2, 3], user_features={"occupation": "occ1", "age": "age0", "gender": "F"})
    b = rec.predict({}, [1, 2, 3], user_features={"occupation": "occ7", "age": "age5", "gender": "M"})
    assert not np.allclose(a, b)


def test_exclude_rated_and_batch(trained) -> None:
    rec, _ = trained
    ratings = {1: 5.0, 2: 1.0}
    top = rec.recommend(ratings, n=rec.space.n_items)
    ids = [i for i, _ in top]
    assert 1 not in ids and 2 not in ids and len(ids) == rec.space.n_items - 2
    assert 1 in [i for i, _ in rec.recommend(ratings, n=rec.space.n_items, exclude_rated=False)]
    batch = rec.recommend_batch([ratings, {3: 4.0}, {}], n=5)
    single = rec.recommend(ratings, n=5)
    assert len(batch) == 3 and [i for i, _ in batch[0]] == [i for i, _ in single]
    assert np.allclose([x for _, x in batch[0]], [x for _, x in single], rtol=1e-5, atol=1e-6)
    scores = [s for _, s in top]
    assert scores == sorted(scores, reverse=True)


def test_unknown_items_error_or_ignore(trained) -> None:
    rec, _ = trained
    with pytest.raises(UnknownItemError, match="999999"):
        rec.recommend({999999: 4.0, 1: 3.0})
    kept = rec.recommend({999999: 4.0, 1: 3.0}, on_unknown="ignore", n=3)
    assert kept == rec.recommend({1: 3.0}, n=3)


@pytest.mark.parametrize(
    "bad", [{1: float("nan")}, {1: float("inf")}, {1: 9.0}, {1: "five"}, {1: None}, [1, 2]]
)
def test_bad_ratings_are_clear_errors(trained, bad) -> None:
    rec, _ = trained
    with pytest.raises(ScoringInputError):
        rec.recommend(bad)


def test_bad_n(trained) -> None:
    rec, _ = trained
    with pytest.raises(ScoringInputError):
        rec.recommend({1: 4.0}, n=0)


def test_item_ids_from_json_strings_match_integer_ids(trained) -> None:
    rec, _ = trained
    assert rec.recommend({"1": 5.0, "2": 3.0}, n=4) == rec.recommend({1: 5.0, 2: 3.0}, n=4)


def test_tampered_model_is_refused(trained, tmp_path) -> None:
    _, path = trained
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(path, copy)
    data = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="checksum"):
        ColdStartRecommender.load(copy)


def test_pandas_input_and_inferred_fields(synthetic_small) -> None:
    ds = synthetic_small
    items = ds.items.to_pandas()
    rec = ColdStartRecommender(**FAST | {"train.epochs": 1})
    rec.fit(ds.interactions.to_pandas(), items=items)
    assert [f.name for f in rec.space.item_encoder.fields][:2] == ["genre", "category"]
    assert len(rec.recommend({1: 4.0}, n=3)) == 3


def test_summary_reports_baseline_comparison(trained, synthetic_small) -> None:
    """The summary's figures are the validation users' MAEs of the kept model and of the item-mean
    baseline, recomputed here from the same split (the seeded validation draw fit() makes)."""
    from recsys.data.log_checks import choose_validation_users
    from recsys.data.tasks import UserLog
    from recsys.meta.trainer import evaluate_rating_tasks, validation_tasks
    from recsys.metrics.core import mae
    from recsys.utils.seeds import VALIDATION_TASKS, VALIDATION_USERS, Seeds

    rec, path = trained
    s = rec.summary
    assert s is not None and s.validation_users > 0
    assert 0 < s.mae_adapted < 2 and 0 < s.mae_item_mean < 2
    cfg = rec.config.train
    inter = synthetic_small.interactions
    seeds = Seeds(cfg.seed)  # the named streams fit() draws from
    val = choose_validation_users(
        inter, cfg.validation_fraction, seeds.rng(VALIDATION_USERS), min_ratings=cfg.min_user_ratings
    )
    is_val = inter["user_id"].is_in(val.implode())
    train_log = UserLog.from_frame(inter.filter(~is_val), rec.space.items)
    val_log = UserLog.from_frame(inter.filter(is_val), rec.space.items)
    assert val_log.n_users == rec.info["validation_users"]  # the split fit() made
    assert len(train_log.items) == rec.info["train_interactions"]
    tasks = validation_tasks(val_log, cfg, seeds.rng(VALIDATION_TASKS))
    assert s.validation_users == len(tasks)
    # the item-mean baseline: each query item's mean training rating (the global mean if unrated)
    sums = np.bincount(train_log.items, weights=train_log.ratings, minlength=rec.space.n_items)
    counts = np.bincount(train_log.items, minlength=rec.space.n_items)
    item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), train_log.ratings.mean())
    query = np.maximum(tasks.query, 0)
    per_user = mae(item_mean[val_log.items[query]], val_log.ratings[query], tasks.query >= 0)
    assert s.mae_item_mean == pytest.approx(float(np.nanmean(per_user)), rel=1e-9)
    # the adapted and support-ignored figures are the kept model's, on the same tasks
    adapted = evaluate_rating_tasks(rec.learner, rec.space, val_log, tasks)["mae"]
    frozen = evaluate_rating_tasks(rec.learner, rec.space, val_log, tasks, ignore_support=True)["mae"]
    assert s.mae_adapted == pytest.approx(adapted, rel=1e-6)
    assert s.mae_no_adaptation == pytest.approx(frozen, rel=1e-6)
    assert s.mae_adapted != s.mae_no_adaptation  # the support is used
    assert s.mae_adapted == pytest.approx(rec.history[s.best_epoch - 1]["val_mae"], rel=1e-6)
    hist = json.loads((path / "history.json").read_text())
    assert len(hist["history"]) == 2 and hist["summary"]["mae_adapted"] == pytest.approx(s.mae_adapted)
    assert pl.DataFrame(hist["history"]).height == 2


def test_duplicate_pairs_in_a_fitted_frame_cause_no_nonfinite_steps():
    """Regression: a frame given to fit() with the same (user, item) twice put the item in a task's
    support and among its ranking positives at once; log p = -inf made steps non-finite (skipped)."""
    n = 2000
    frame = random_log_with_duplicates(n, distinct_times=False)
    assert frame.unique(subset=["user_id", "item_id"]).height < n  # duplicates are there
    cfg = RecommenderConfig().override(**{"train.epochs": 2, "train.patience": 0})
    rec = ColdStartRecommender(cfg).fit(frame)
    assert [h["skipped_steps"] for h in rec.history] == [0, 0]
    assert rec.info["train_interactions"] <= frame.unique(subset=["user_id", "item_id"]).height
