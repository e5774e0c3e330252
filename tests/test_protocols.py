"""Protocols leak nothing: new users never train, no query rating and nothing later than the support
reaches training or the support set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.config import RecommenderConfig
from recsys.data import load_dataset
from recsys.data.protocols import QUERY_SIZE, new_user_tasks, split_protocol
from recsys.data.tasks import UserLog
from recsys.features.space import FeatureSpace
from tests.conftest import write


def _log(frame, ds):
    space = FeatureSpace.fit(ds.interactions, items=ds.items, item_fields=ds.spec.item_fields)
    return UserLog.from_frame(frame, space.items)


def test_temporal_split_is_strictly_before_new_users(synthetic_small) -> None:
    ds = synthetic_small
    sp = split_protocol(ds, "temporal", seed=0)
    test = sp.test["new_users"]
    assert set(sp.train["user_id"]).isdisjoint(set(test["user_id"]))
    assert sp.train["timestamp"].max() < sp.cutoff == test["timestamp"].min()
    assert set(sp.validation_users).issubset(set(sp.train["user_id"]))
    log = _log(test, ds)
    for k in (1, 5):
        tasks = new_user_tasks("temporal", log, k, seed=0)
        assert len(tasks) > 0 and (log.counts[tasks.users] >= k + QUERY_SIZE).all()
        for t in range(len(tasks)):
            s = tasks.support[t][tasks.support[t] >= 0]
            q = tasks.query[t][tasks.query[t] >= 0]
            u = tasks.users[t]
            lo, hi = log.indptr[u], log.indptr[u + 1]
            assert s.tolist() == list(range(lo, lo + k))  # first K by time
            assert sorted(q.tolist()) == list(range(hi - QUERY_SIZE, hi))  # last 10
            assert log.times[s].max() <= log.times[q].min()


def test_random_split_disjoint_and_seeded(synthetic_small) -> None:
    ds = synthetic_small
    a, b, c = (split_protocol(ds, "random", seed=s) for s in (0, 0, 1))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    test_users = set(a.test["new_users"]["user_id"])
    assert test_users.isdisjoint(set(a.train["user_id"])) and test_users.isdisjoint(set(a.validation_users))
    log = _log(a.test["new_users"], ds)
    tasks = new_user_tasks("random", log, 3, seed=0)
    for t in range(len(tasks)):
        s = set(tasks.support[t][tasks.support[t] >= 0].tolist())
        q = set(tasks.query[t][tasks.query[t] >= 0].tolist())
        assert len(s) == 3 and len(q) == QUERY_SIZE and not s & q


def test_users_without_enough_ratings_are_skipped(synthetic_small) -> None:
    ds = synthetic_small
    sp = split_protocol(ds, "random", seed=0)
    log = _log(sp.test["new_users"], ds)
    big = new_user_tasks("random", log, 20, seed=0)
    assert (log.counts[big.users] >= 30).all() and len(big) < log.n_users


@pytest.fixture
def melu_dir(tmp_path: Path) -> Path:
    d = tmp_path / "melu-ml1m"
    rng = np.random.default_rng(0)
    states = {"warm_state": range(1, 30), "user_cold_state": range(30, 40), "item_cold_state": range(1, 10)}
    movies = {"warm_state": range(1, 60), "user_cold_state": range(1, 60), "item_cold_state": range(60, 80)}
    for state, users in states.items():
        items = {
            str(u): [
                str(m)
                for m in rng.choice(
                    list(movies[state]), size=int(rng.integers(8, min(40, len(movies[state])))), replace=False
                )
            ]
            for u in users
        }
        write(d / f"{state}.json", json.dumps(items))
        write(
            d / f"{state}_y.json",
            json.dumps({u: [int(x) for x in rng.integers(1, 6, len(v))] for u, v in items.items()}),
        )
    write(
        d / "movies_extrainfos.dat",
        "".join(f"{m}::M{m}::1995::PG::x::Drama::D{m % 3}::w::A{m % 5}, B::p::x\n" for m in range(1, 80)),
    )
    write(tmp_path / "ml-1m" / "users.dat", "".join(f"{u}::F::25::3::12345\n" for u in range(1, 40)))
    return tmp_path


def test_melu_protocol(melu_dir: Path) -> None:
    ds = load_dataset("melu-ml1m", data_root=melu_dir)
    sp = split_protocol(ds, "melu", seed=0)
    assert set(sp.train["state"]) == {"warm_state"}
    assert set(sp.test) == {"user_cold_state", "item_cold_state"}
    cold = sp.test["user_cold_state"]
    assert set(cold["user_id"]).isdisjoint(set(sp.train["user_id"]))
    # new items of item_cold_state never reach training
    assert set(sp.test["item_cold_state"]["item_id"]).isdisjoint(set(sp.train["item_id"]))
    log = _log(cold, ds)
    tasks = new_user_tasks("melu", log, None, seed=0)
    n = log.counts[tasks.users]
    assert ((n >= 13) & (n <= 100)).all()
    assert (tasks.query_sizes == QUERY_SIZE).all() and (tasks.support_sizes == n - QUERY_SIZE).all()
    other = new_user_tasks("melu", log, None, seed=0, draw=1)
    assert not np.array_equal(tasks.query, other.query)  # several query draws


def test_melu_validation_users_have_as_many_warm_ratings_as_new_users_are_tested_with(melu_dir: Path) -> None:
    """Validation users stand in for new users: only warm users with 13 to 100 warm ratings (the
    protocol's filter of new users), as many as the validation fraction asks of all warm users; the
    others train."""
    ds = load_dataset("melu-ml1m", data_root=melu_dir)
    sp = split_protocol(ds, "melu", seed=0, validation_fraction=0.2)
    counts = sp.train.group_by("user_id").len()
    val = counts.filter(pl.col("user_id").is_in(sp.validation_users.implode()))
    assert val.height == len(sp.validation_users) == round(0.2 * counts.height)
    assert val["len"].is_between(13, 100).all()
    short = counts.filter(pl.col("len") < 13)["user_id"]
    assert len(short) and not short.is_in(sp.validation_users.implode()).any()  # they train
    again = split_protocol(ds, "melu", seed=0, validation_fraction=0.2).validation_users
    assert again.to_list() == sp.validation_users.to_list()


def test_model_trained_on_a_split_records_its_fingerprint(synthetic_small) -> None:
    from recsys.config import RecommenderConfig
    from recsys.workflows import train_model

    cfg = RecommenderConfig().override(**{"train.epochs": 1, "model.embedding_dim": 4, "model.hidden": (8,)})
    rec, split = train_model(synthetic_small, cfg, protocol="random", seed=0)
    assert rec.info["holdout"]["fingerprint"] == split.fingerprint()
    seen = set(rec.space.users.to_list())
    assert seen.isdisjoint(set(split.test_users.to_list()))
    assert pl.Series(rec.space.items.to_list()).len() == rec.space.n_items


@pytest.mark.parametrize("protocol", ["temporal", "random"])
def test_nested_evaluation_never_touches_the_splits_new_users(synthetic_small, protocol) -> None:
    from recsys.evaluation.runner import EvalSettings, Evaluation

    ds = synthetic_small
    outer = split_protocol(ds, protocol, seed=0)
    ev = Evaluation(ds, EvalSettings(protocols=[protocol], nested=True))
    inner_ds, inner = ev._split(protocol, 0)
    outer_new = set(outer.test_users.to_list())
    assert outer_new.isdisjoint(inner_ds.interactions["user_id"].to_list())
    assert set(inner.test_users.to_list()) <= set(outer.train["user_id"].to_list())
    assert set(inner.validation_users.to_list()) <= set(inner.train["user_id"].to_list())
    assert inner.fingerprint() != outer.fingerprint()
    if protocol == "temporal":
        assert inner.cutoff <= outer.cutoff
    plain_ds, plain = Evaluation(ds, EvalSettings(protocols=[protocol]))._split(protocol, 0)
    assert plain_ds is ds and plain.fingerprint() == outer.fingerprint()


def test_nested_evaluation_refuses_the_melu_protocol(synthetic_small) -> None:
    from recsys.errors import SpecError
    from recsys.evaluation.runner import EvalSettings, Evaluation

    ev = Evaluation(synthetic_small, EvalSettings(protocols=["melu"], nested=True))
    with pytest.raises(SpecError, match="nested"):
        ev._split("melu", 0)


def test_retrained_ablations_of_the_new_defaults_run_and_are_named(synthetic_small) -> None:
    from recsys.evaluation.ablations import SEED0_LABEL
    from recsys.evaluation.runner import EvalSettings, Evaluation

    cfg = RecommenderConfig().override(
        **{"train.epochs": 1, "model.embedding_dim": 8, "model.hidden": (16,), "train.meta_batch_size": 64}
    )
    settings = EvalSettings(
        protocols=["temporal"],
        shots=[3],
        baselines=[],
        seeds=1,
        ablations=["no-als-init", "random-query"],
        n_boot=10,
    )
    ev = Evaluation(synthetic_small, settings, config=cfg).run()
    methods = {key[3] for key in ev.cells}
    assert methods == {
        "meta-learner",
        "meta-learner (item ids not initialised from ALS)",
        "meta-learner (random query for temporal-support tasks)",
    }
    # with several seeds the default's seed-0 row is added: the retrained rows' like-for-like reference
    settings.seeds, settings.ablations = 2, ["no-als-init"]
    ev = Evaluation(synthetic_small, settings, config=cfg).run()
    cells = {key[3]: cell for key, cell in ev.cells.items()}
    reference = cells[f"meta-learner ({SEED0_LABEL})"]
    retrained = cells["meta-learner (item ids not initialised from ALS)"]
    # (a temporal split holds the same users under every seed: compare tasks, not distinct users)
    assert reference.tasks == retrained.tasks < cells["meta-learner"].tasks
    assert reference.users == retrained.users == cells["meta-learner"].users
    seed0 = {k: v[0] for k, v in cells["meta-learner"].values.items()}  # the first seed's values
    for metric, values in reference.values.items():
        np.testing.assert_array_equal(values[0], seed0[metric])
    # regression: the report's methods were the last seed's only, so the retrained rows (seed 0 only)
    # dropped out of ``methods`` and had no paired ablation rows
    assert ev.methods_meta["meta-learner (item ids not initialised from ALS)"]["kind"] == "ablation"
    paired = {(d["variant"], d["reference"]) for d in ev.paired_ablations()}
    assert paired == {("meta-learner (item ids not initialised from ALS)", f"meta-learner ({SEED0_LABEL})")}


def test_no_trend_row_pools_every_seed_also_where_validation_chose_no_prior(synthetic_small) -> None:
    """Regression: the "without trend prior" row was only added for seeds whose chosen trend weight
    was non-zero, so it averaged a subset of the seeds' users and its MAE differed from the default's
    although the prior never touches ratings."""
    from recsys.evaluation.runner import EvalSettings, Evaluation

    cfg = RecommenderConfig().override(
        **{"train.epochs": 1, "model.embedding_dim": 8, "model.hidden": (16,), "model.hybrid.trend": False}
    )
    settings = EvalSettings(
        protocols=["random"], shots=[3], baselines=[], seeds=2, ablations=["no-trend"], n_boot=10
    )
    ev = Evaluation(synthetic_small, settings, config=cfg).run()
    cells = {key[3]: cell for key, cell in ev.cells.items()}
    default, plain = cells["meta-learner"], cells["meta-learner (without trend prior)"]
    assert plain.users == default.users
    for metric, values in default.values.items():
        for a, b in zip(values, plain.values[metric], strict=True):
            np.testing.assert_array_equal(a, b)


def test_path_ablations_rescore_each_ranking_path_alone_and_leave_ratings_untouched(synthetic_small) -> None:
    """Also the ALS path's ablation (``no-als-path``): ratings untouched, a row whatever validation chose."""
    from recsys.evaluation.runner import EvalSettings, Evaluation

    cfg = RecommenderConfig().override(**{"train.epochs": 1, "model.embedding_dim": 8, "model.hidden": (16,)})
    settings = EvalSettings(
        protocols=["random"],
        shots=[3],
        baselines=[],
        seeds=1,
        ablations=["item-item-only", "encoder-only", "no-als-path"],
        n_boot=10,
    )
    ev = Evaluation(synthetic_small, settings, config=cfg).run()
    cells = {key[3]: cell for key, cell in ev.cells.items()}
    default = cells["meta-learner"]
    ii, enc = (
        cells["meta-learner (ranking by the item-item path alone)"],
        cells["meta-learner (ranking by the support encoder alone)"],
    )
    np.testing.assert_array_equal(
        ii.values["mae"][0], default.values["mae"][0]
    )  # rank_mix never touches ratings
    np.testing.assert_array_equal(enc.values["mae"][0], default.values["mae"][0])
    np.testing.assert_array_equal(
        cells["meta-learner (without ALS path)"].values["mae"][0], default.values["mae"][0]
    )
    assert not np.array_equal(ii.values["ndcg@10"][0], enc.values["ndcg@10"][0])  # two different rankings
    paired = ev.paired_ablations()
    assert {d["variant"] for d in paired} == {"meta-learner (ranking by the item-item path alone)",
                                              "meta-learner (ranking by the support encoder alone)",
                                              "meta-learner (without ALS path)"}  # fmt: skip
    assert {d["reference"] for d in paired} == {"meta-learner"}
    assert all(d["mean"] == 0 for d in paired if d["metric"] == "mae")


def test_a_path_ablation_keeps_its_path_even_where_validation_weighted_it_zero() -> None:
    """Regression: with the chosen mix (0, 1) "ranking by the support encoder alone" was (0, 0), i.e.
    the trend prior alone."""
    from recsys.evaluation.ablations import PATH_ABLATIONS, path_mix

    encoder, item_item = PATH_ABLATIONS["encoder-only"][1], PATH_ABLATIONS["item-item-only"][1]
    assert path_mix([1.0, 2.0], item_item) == [0.0, 2.0] and path_mix([1.0, 2.0], encoder) == [1.0, 0.0]
    assert path_mix([0.0, 1.0], encoder) == [1.0, 0.0]


def test_unknown_ablation_names_are_an_error_not_silently_skipped(synthetic_small) -> None:
    """Regression: a misspelt ablation (e.g. ``no-trnd``) was accepted and silently produced no row."""
    from recsys.errors import SpecError
    from recsys.evaluation.runner import EvalSettings, Evaluation

    with pytest.raises(SpecError, match=r"unknown ablation\(s\) 'no-trnd'; known: no-adaptation"):
        Evaluation(synthetic_small, EvalSettings(ablations=["no-trend", "no-trnd"]))
    Evaluation(synthetic_small, EvalSettings(ablations=["no-trend", "global-trust"]))  # known: fine


@pytest.mark.parametrize(
    ("protocol", "given", "expected"),
    [
        ("temporal", "auto", "temporal"),
        ("random", "auto", "random"),
        ("none", "auto", "auto"),
        (None, "auto", "auto"),
        ("melu", "auto", "random"),
        ("temporal", "random", "random"),
        ("random", "temporal", "temporal"),
    ],
)
def test_validation_tasks_follow_the_holdout_protocol_unless_the_config_says_otherwise(
    protocol, given, expected
) -> None:
    from recsys.config import RecommenderConfig
    from recsys.workflows import protocol_validation

    cfg = RecommenderConfig().override(**{"train.validation_order": given})
    assert protocol_validation(cfg, protocol).train.validation_order == expected


def test_a_model_trained_under_the_temporal_holdout_records_temporal_validation_tasks(
    synthetic_small,
) -> None:
    from recsys.config import RecommenderConfig
    from recsys.workflows import train_model

    cfg = RecommenderConfig().override(**{"train.epochs": 1, "model.embedding_dim": 4, "model.hidden": (8,)})
    rec, _ = train_model(synthetic_small, cfg, protocol="temporal", seed=0)
    assert rec.config.train.validation_order == "temporal"
    production, _ = train_model(synthetic_small, cfg, protocol="none", seed=0)
    assert production.config.train.validation_order == "auto"
