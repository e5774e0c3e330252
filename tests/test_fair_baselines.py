"""Baselines at full strength (the same information as the meta-learner) and honest intervals.

Ranking baselines choose on validation users which interactions count as positives (all ratings, or the
liked ones); a recency-weighted popularity baseline gets the trend prior's half-lives; tuning tasks follow
the protocol and the tuning record keeps every protocol; intervals are over distinct users.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.data.ids import IdIndex
from recsys.data.synthetic import make_synthetic
from recsys.data.tasks import UserLog
from recsys.evaluation.cells import Cell
from recsys.evaluation.runner import EvalSettings, Evaluation
from recsys.models.classical import BASELINES, EASE, ItemKNN, Popularity, RankingBaseline, Trending

N_ITEMS = 60
LIKED = np.arange(0, 12)  # a cluster users like
DISLIKED = np.arange(12, 24)  # a cluster the same users rate low


def planted_log(n_users: int, seed: int, n_other: int = 2) -> pl.DataFrame:
    """Every user likes 4 items of the LIKED cluster (5 stars) and rates 4 of the DISLIKED cluster 1 star;
    DISLIKED items co-occur with each other more than with anything else."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(LIKED, 4, replace=False):
            rows.append((u, int(i), 5.0))
        for i in rng.choice(DISLIKED, 6, replace=False):
            rows.append((u, int(i), 1.0))
        for i in rng.choice(np.arange(24, N_ITEMS), n_other, replace=False):
            rows.append((u, int(i), 3.0))
    return pl.DataFrame(rows, schema=["user_id", "item_id", "rating"], orient="row")


def as_log(frame: pl.DataFrame) -> UserLog:
    return UserLog.from_frame(frame, IdIndex(pl.Series(np.arange(N_ITEMS))))


def recall_of_liked_cluster(model, n_users: int = 50) -> float:
    """Support: 2 liked and 2 disliked items; relevant: the other liked items; Recall@5."""
    rng = np.random.default_rng(99)
    hits = 0.0
    for _ in range(n_users):
        liked = rng.choice(LIKED, 2, replace=False)
        disliked = rng.choice(DISLIKED, 2, replace=False)
        items = np.concatenate([liked, disliked])[None, :]
        ratings = np.array([[5.0, 5.0, 1.0, 1.0]])
        scores = model.score(items, ratings).ranking[0]
        scores[items[0]] = -np.inf
        top = np.argsort(-scores)[:5]
        relevant = set(LIKED) - set(liked)
        hits += len(relevant & set(top.tolist())) / 5
    return hits / n_users


@pytest.mark.parametrize("cls", [EASE, ItemKNN])
def test_a_baseline_on_liked_only_positives_recovers_a_planted_liked_cluster_that_all_positives_misses(
    cls,
) -> None:
    log = as_log(planted_log(300, seed=0))
    params = {"lam": 50.0} if cls is EASE else {"K": 50}
    everything = cls(**params, positives="all").fit(log, N_ITEMS)
    liked = cls(**params, positives="liked", threshold=4.0).fit(log, N_ITEMS)
    assert recall_of_liked_cluster(liked) > 0.9
    assert recall_of_liked_cluster(everything) < 0.5


def test_tuning_chooses_liked_positives_on_the_planted_log_and_records_them() -> None:
    """Evaluation._tune on validation users picks ``positives = liked`` for EASE."""
    ds = make_synthetic(n_users=40, n_items=N_ITEMS, n_interactions=800, seed=0)
    ev = Evaluation(ds, EvalSettings(protocols=["random"], baselines=["ease"], seeds=1))
    train = as_log(planted_log(300, seed=0))
    val = as_log(planted_log(60, seed=1, n_other=6).with_columns(pl.col("user_id") + 1000))  # 16 ratings
    params = ev._tune(EASE, train, val, N_ITEMS, 0, None, "random")
    assert params["positives"] == "liked"
    assert ev.tuning["ease"]["random seed 0"] == params
    assert "random ratings" in ev.tuning_protocols["random"]


def test_implicit_logs_do_not_tune_the_positive_definition() -> None:
    log = as_log(planted_log(20, seed=0))
    assert "positives" in EASE.grid_for(log, implicit=False)
    assert "positives" not in EASE.grid_for(log, implicit=True)


def test_every_ranking_baseline_offers_both_positive_definitions() -> None:
    ranking = [cls for cls in BASELINES.values() if not cls.predicts_ratings]
    assert ranking and all(issubclass(cls, RankingBaseline) for cls in ranking)
    assert all(cls.grid["positives"] == ["all", "liked"] for cls in ranking)
    assert all(cls.defaults["positives"] == "all" for cls in ranking)  # the item-item blend's EASE


def test_liked_only_popularity_counts_only_liked_interactions() -> None:
    log = as_log(planted_log(100, seed=0))
    counts = Popularity(positives="liked").fit(log, N_ITEMS).counts
    assert counts[DISLIKED].sum() == 0 and counts[LIKED].sum() == 400


def test_trending_ranks_what_is_popular_lately_above_what_was_popular_long_ago() -> None:
    day = 86_400
    rows = [(u, 0, 5.0, 1_000 * day + u) for u in range(50)]  # item 0: popular 3 years ago
    rows += [(100 + u, 1, 5.0, 2_000 * day + u) for u in range(20)]  # item 1: popular this week
    rows += [(200, 2, 5.0, 2_000 * day)]
    log = as_log(pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row"))
    empty = np.full((1, 1), -1)
    recent = Trending(half_life=7.0).fit(log, N_ITEMS).score(empty, np.zeros((1, 1))).ranking[0]
    all_time = Trending(half_life=None).fit(log, N_ITEMS).score(empty, np.zeros((1, 1))).ranking[0]
    assert recent[1] > recent[0] and all_time[0] > all_time[1]
    assert Trending.grid_for(log, implicit=False)["half_life"] == [None, 7.0, 30.0, 90.0, 365.0]
    no_times = as_log(pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "t"], orient="row"))
    assert Trending.grid_for(no_times, implicit=False)["half_life"] == [None]


def test_temporal_seeds_never_pool_duplicate_users_into_an_interval() -> None:
    """The same 3 users under three seeds (a deterministic split) are 3 users, each with its mean."""
    cell = Cell()
    users = np.array(["a", "b", "c"])
    for seed, values in enumerate(([1.0, 2.0, 3.0], [1.2, 2.2, 3.2], [0.8, 1.8, 2.8])):
        cell.add({"mae": np.array(values)}, users, seed)
    assert cell.users == 3 and cell.tasks == 9
    np.testing.assert_allclose(cell.per_user("mae"), [1.0, 2.0, 3.0])
    assert cell.seed_spread("mae") == pytest.approx(np.std([2.0, 2.2, 1.8]))


def test_the_tuning_record_keeps_both_protocols() -> None:
    ds = make_synthetic(n_users=120, n_items=50, n_interactions=4000, seed=3)
    settings = EvalSettings(
        protocols=["temporal", "random"], shots=[3], baselines=["item-mean", "ease"], seeds=1, ablations=[]
    )
    from recsys.config import RecommenderConfig

    config = RecommenderConfig().override(
        **{"train.epochs": 1, "model.embedding_dim": 8, "model.hidden": (16,), "model.factor_dim": 8}
    )
    ev = Evaluation(ds, settings, config=config).run()
    assert set(ev.tuning["item-mean"]) == {"temporal seed 0", "random seed 0"}
    assert set(ev.tuning["ease"]) == {"temporal seed 0", "random seed 0"}
    assert "first 5 ratings by time" in ev.tuning_protocols["temporal"]
    # the meta-learner's own choices on its validation users, per protocol and seed, in the report
    assert set(ev.model_choices) == {"temporal seed 0", "random seed 0"}
    for chosen in ev.model_choices.values():
        assert {"item_item", "ranking paths", "rating fold-in weight", "trend prior"} <= set(chosen)
    from recsys.evaluation.report import build_report, markdown

    report = build_report(ev)
    assert report["model_choices"] == ev.model_choices
    assert "## The meta-learner's choices on its validation users" in markdown(report)
    # the machine too: float results (and near-tied choices) can differ between CPUs' kernels
    assert report["environment"]["torch_cpu_capability"] in markdown(report).split("Machine: ")[1]
    rows = ev.results()
    assert all(r["users"] <= r["tasks"] for r in rows)
