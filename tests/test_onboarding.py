"""Onboarding: which items to ask a new user about, and the simulation that evaluates the choice."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from recsys.config import RecommenderConfig
from recsys.data.tasks import UserLog
from recsys.errors import ScoringInputError, SpecError
from recsys.evaluation.onboarding import evaluate_onboarding, markdown_table, simulate_answers, summarise
from recsys.onboarding import _greedy_d_optimal, onboarding_order
from recsys.workflows import train_model

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8], "factor_dim": 8},
    "train": {"epochs": 2, "meta_batch_size": 16, "num_threads": 1, "patience": 0},
}


def _log(users: list[list[int]], ratings: list[list[float]]) -> UserLog:
    indptr = np.concatenate([[0], np.cumsum([len(u) for u in users])]).astype(np.int64)
    items = np.array([i for u in users for i in u], dtype=np.int64)
    r = np.array([x for u in ratings for x in u], dtype=np.float32)
    return UserLog(pl.Series("user_id", [f"u{i}" for i in range(len(users))]), indptr, items, r, None)


def test_greedy_design_prefers_a_new_direction_over_a_duplicate() -> None:
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.9]])
    p = np.ones(3)
    # the first pick is the largest vector; the second is the orthogonal one, not the duplicate
    assert _greedy_d_optimal(v, p, 2).tolist() == [0, 2]


def test_greedy_design_weighs_information_by_the_chance_the_item_is_known() -> None:
    v = np.array([[3.0, 0.0], [0.0, 1.0]])
    assert _greedy_d_optimal(v, np.array([1.0, 1.0]), 1).tolist() == [0]
    # an informative item hardly anyone knows loses to a well-known one
    assert _greedy_d_optimal(v, np.array([0.01, 1.0]), 1).tolist() == [1]


def test_simulated_users_answer_what_they_rated_in_question_order() -> None:
    log = _log([[5, 2, 7, 1], [3, 4], [2, 9]], [[5, 4, 3, 2], [1, 2], [3, 4]])
    order = np.array([7, 3, 2, 5, 4, 9])
    items, ratings, asked = simulate_answers(order, log, np.array([0, 1, 2]), k=2)
    # user 0 rated 7 (3.0), 2 (4.0), 5 (5.0): the first two asked are 7 then 2, after 3 questions
    assert items[0].tolist() == [7, 2] and ratings[0].tolist() == [3.0, 4.0] and asked[0] == 3
    # user 1 answers 3 (question 2) and 4 (question 5)
    assert items[1].tolist() == [3, 4] and ratings[1].tolist() == [1.0, 2.0] and asked[1] == 5
    # user 2 answers 2 and 9 — the last question
    assert items[2].tolist() == [2, 9] and asked[2] == 6
    # asking for more answers than a user can give: padding and every question asked
    items, _, asked = simulate_answers(order, log, np.array([1]), k=3)
    assert items[0].tolist() == [3, 4, -1] and asked[0] == len(order)
    # only answerable ratings are given: user 0 may not answer about item 2
    answerable = np.ones(len(log.items), dtype=bool)
    answerable[1] = False  # user 0's rating of item 2
    items, ratings, asked = simulate_answers(order, log, np.array([0]), k=2, answerable=answerable)
    assert items[0].tolist() == [7, 5] and ratings[0].tolist() == [3.0, 5.0] and asked[0] == 4


@pytest.fixture(scope="module")
def trained(synthetic_small):
    rec, _ = train_model(synthetic_small, RecommenderConfig.from_dict(TINY), protocol="random", seed=0)
    return synthetic_small, rec


def test_onboarding_items_are_distinct_known_items_per_strategy(trained) -> None:
    _, rec = trained
    popularity = rec.space.popularity
    known = {rec.space.items.ids[int(i)] for i in np.nonzero(popularity > 0)[0]}
    for strategy in ("evidence", "popular", "random"):
        items = rec.onboarding_items(10, strategy=strategy)
        assert len(items) == 10 and len(set(items)) == 10 and set(items) <= known
    top = np.argsort(-popularity, kind="stable")[:10]
    assert rec.onboarding_items(10, strategy="popular") == [rec.space.items.ids[int(i)] for i in top]
    assert rec.onboarding_items(5, strategy="random", seed=3) == rec.onboarding_items(
        5, strategy="random", seed=3
    )
    # more than the catalogue holds: every known item once
    assert len(rec.onboarding_items(10_000)) == len(known)


def test_onboarding_with_user_features_draws_from_the_users_top_ranked_items(trained) -> None:
    ds, rec = trained
    features = ds.users.row(0, named=True)
    features.pop("user_id")
    items = rec.onboarding_items(8, features)
    assert len(set(items)) == 8
    # the model's catalogue ranking for this user before any rating; the pool is its top-ranked
    # items among those seen in training (not the most popular ones)
    prior = rec.score_padded(np.full((1, 1), -1), np.zeros((1, 1)), [features], what="rank")[0]
    seen = np.nonzero(rec.space.popularity > 0)[0]
    top8 = set(seen[np.argsort(-prior[seen], kind="stable")][:8].tolist())
    popular8 = set(seen[np.argsort(-rec.space.popularity[seen], kind="stable")][:8].tolist())
    assert top8 != popular8  # so the check below tells the two pools apart
    # a pool of 8 for 8 questions: exactly the user's 8 top-ranked items, in the design's order
    chosen = onboarding_order(rec, 8, user_features=features, pool=8)
    assert len(chosen) == 8 and set(chosen.tolist()) == top8
    # onboarding_items is that order (with the default pool), as item ids
    default = onboarding_order(rec, 8, user_features=features)
    assert items == [rec.space.items.ids[int(i)] for i in default]


def test_onboarding_rejects_bad_requests(trained) -> None:
    _, rec = trained
    with pytest.raises(ScoringInputError, match="strategy"):
        rec.onboarding_items(5, strategy="smart")
    for n in (0, -1, 2.5, True):
        with pytest.raises(ScoringInputError, match="positive integer"):
            rec.onboarding_items(n)
    with pytest.raises(ScoringInputError, match="dict"):
        rec.onboarding_items(5, ["F"])


def test_evaluate_onboarding_reports_every_strategy_and_budget(trained) -> None:
    ds, rec = trained
    rows = evaluate_onboarding(rec, ds, protocol="random", seed=0, answers=(2, 4), questions=(5,), n_boot=50)
    strategies = ("evidence", "popular", "random")
    assert [(r["mode"], r["k"], r["strategy"]) for r in rows] == [
        (m, k, s) for m, ks in (("answers", (2, 4)), ("questions", (5,))) for k in ks for s in strategies
    ]
    for r in rows:
        assert r["users"] > 0
        assert 0.0 <= r["recall@20"]["mean"] <= 1.0 and 0.0 <= r["ndcg@10"]["mean"] <= 1.0
        if r["mode"] == "answers":
            assert r["questions_mean"] >= r["k"] and r["answers_mean"] == r["k"]
        else:
            assert r["questions_mean"] <= r["k"] and 0 <= r["answers_mean"] <= r["k"]
    # every strategy is scored on the same users (and the same held-out items)
    assert len({(r["mode"], r["k"], r["users"]) for r in rows}) == 3
    by = {(r["mode"], r["k"], r["strategy"]): r for r in rows}
    # popular items are the ones users rated most: collecting answers takes fewer questions than random,
    # and the first questions get more answers
    assert by[("answers", 4, "popular")]["questions_mean"] < by[("answers", 4, "random")]["questions_mean"]
    assert by[("questions", 5, "popular")]["answers_mean"] > by[("questions", 5, "random")]["answers_mean"]
    summary = summarise(rows + [dict(r, seed=1) for r in rows])
    assert len(summary) == len(rows) and all(r["seeds"] == 2 for r in summary)
    assert "| random | 4 answers | popular |" in markdown_table(summary)


def test_evaluate_onboarding_refuses_a_model_trained_on_another_split(trained) -> None:
    ds, rec = trained
    with pytest.raises(SpecError, match="not trained on the random split with seed 1"):
        evaluate_onboarding(rec, ds, protocol="random", seed=1)


def test_cli_onboard_prints_the_questions(trained, tmp_path) -> None:
    from typer.testing import CliRunner

    from recsys.cli import app

    _, rec = trained
    rec.save(tmp_path / "model")
    result = CliRunner().invoke(app, ["onboard", "--model", str(tmp_path / "model"), "-n", "4"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["item_id"] for r in rows] == rec.onboarding_items(4)
    bad = CliRunner().invoke(app, ["onboard", "--model", str(tmp_path / "model"), "--user-features", "{x"])
    # recsys.cli.main turns this documented error into one line on stderr and exit status 2
    assert isinstance(bad.exception, ScoringInputError) and "not valid JSON" in str(bad.exception)
