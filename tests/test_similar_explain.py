"""Similar items (item-item matrix or item factors) and explanations (the ranking score split by path,
the support items behind it), through the API, the CLI and the pyfunc behind the REST endpoint."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from recsys import ColdStartRecommender
from recsys.data.synthetic import make_synthetic
from recsys.errors import ScoringInputError, UnknownItemError
from recsys.explain import explain_frame, explain_rows
from recsys.similar import similar_rows
from tests.mlflow_servers import cli

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8], "factor_dim": 8},
    "train": {"epochs": 1, "meta_batch_size": 16, "num_threads": 1},
}
RATINGS = {56: 5.0, 18: 4.0, 45: 1.0, 14: 2.0}


@functools.cache
def _fit(**model) -> ColdStartRecommender:
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3)
    return ColdStartRecommender(TINY | {"model": TINY["model"] | model}).fit_dataset(ds)


def hybrid() -> ColdStartRecommender:
    """The default head, with its item-item matrix and trend prior."""
    rec = _fit()
    head = rec.learner.head
    if not float(head.trend_weight):  # validation may choose none on this tiny log: the parts need one
        head.set_trend(torch.linspace(0.0, 1.0, head.trend.numel()), 0.1)
        rec._cache = None
    assert head.item_item_active and float(head.trend_weight) != 0
    return rec


def rating_only() -> ColdStartRecommender:
    rec = _fit(head="factorized")
    assert not rec.learner.head.capabilities.ranking_output
    return rec


def planted(rec: ColdStartRecommender, seed: int = 0) -> tuple[ColdStartRecommender, np.ndarray]:
    """A copy of ``rec`` whose item-item matrix is a random one (zero diagonal), and that matrix."""
    rec = copy.deepcopy(rec)
    n = rec.space.n_items
    b = np.random.default_rng(seed).normal(size=(n, n)).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    rec.learner.head.set_item_item(torch.from_numpy(b))
    return rec, b


def rank_score(rec: ColdStartRecommender, ratings: dict, item) -> float:
    scores, _ = rec.score_users([ratings], what="rank")
    return float(scores[0, rec._lookup([item])[0]])


# ---- explanations ---------------------------------------------------------------------------------
def test_explanation_parts_sum_to_the_ranking_score_recommend_orders_by() -> None:
    rec = hybrid()
    top = rec.recommend(RATINGS, n=5)
    for item, score in top:
        e = rec.explain(RATINGS, item)
        head = rec.learner.head  # the added classical paths: where validation chose them
        added = {"als"} if head.als_active else set()
        added |= {"classical_item_item"} if head.cf_active else set()
        assert set(e["parts"]) == {"support_encoder", "item_item", "trend"} | added
        assert sum(e["parts"].values()) == pytest.approx(e["score"], abs=1e-9)
        assert e["score"] == pytest.approx(score, abs=1e-4)
        assert sum(e["shares"].values()) == pytest.approx(1.0)
        assert e["predicted_rating"] == pytest.approx(float(rec.predict(RATINGS, [item])[0]), abs=1e-4)
    # an item that is not recommended too (the rated ones included)
    for item in (56, 3):
        assert rec.explain(RATINGS, item)["score"] == pytest.approx(rank_score(rec, RATINGS, item), abs=1e-4)
    # pure cold start: no support items, the same parts
    empty = rec.explain({}, 3)
    assert empty["support"] == [] and empty["score"] == pytest.approx(rank_score(rec, {}, 3), abs=1e-4)


def test_explanation_uses_the_adapted_params_when_scoring_takes_inner_steps() -> None:
    rec = copy.deepcopy(hybrid())
    rec.learner.cfg = dataclasses.replace(rec.learner.cfg, eval_inner_steps=3, inner_lr=0.5)
    before = copy.deepcopy(hybrid()).explain(RATINGS, 3)["predicted_rating"]
    e = rec.explain(RATINGS, 3)
    assert e["predicted_rating"] != pytest.approx(before, abs=1e-4)  # the steps did change the user
    assert e["predicted_rating"] == pytest.approx(float(rec.predict(RATINGS, [3])[0]), abs=1e-4)
    assert e["score"] == pytest.approx(rank_score(rec, RATINGS, 3), abs=1e-4)


def test_explanation_names_support_items_whose_contributions_sum_to_the_item_item_part() -> None:
    rec = hybrid()
    e = rec.explain(RATINGS, 3, top=len(RATINGS))
    assert {s["item_id"] for s in e["support"]} == set(RATINGS)
    assert all(s["rating"] == RATINGS[s["item_id"]] for s in e["support"])
    contributions = [s["contribution"] for s in e["support"]]
    assert contributions == sorted(contributions, reverse=True)
    assert sum(contributions) == pytest.approx(e["parts"]["item_item"], rel=1e-4, abs=1e-6)
    assert len(rec.explain(RATINGS, 3, top=2)["support"]) == 2


def test_top_contributor_is_the_support_item_with_the_largest_item_item_term() -> None:
    rec, b = planted(hybrid())
    p = {k: v.detach() for k, v in rec.learner.head.named_parameters()}
    mu, rate, scale = float(p["mu"]), p["ii_rate"].numpy(), float(p["ii_scale"])
    idx = {i: int(rec._lookup([i])[0]) for i in [*RATINGS, 3, 7]}
    for target in (3, 7):
        # the user's gate is one positive factor shared by every support item: it does not change the order
        term = {
            s: scale * (rate[0] + rate[1] * (r - mu)) * b[idx[s], idx[target]] for s, r in RATINGS.items()
        }
        e = rec.explain(RATINGS, target, top=len(RATINGS))
        assert e["support"][0]["item_id"] == max(term, key=term.get)
        gates = [c["contribution"] / term[c["item_id"]] for c in e["support"]]
        assert min(gates) > 0 and np.allclose(gates, gates[0], rtol=1e-4)


@pytest.mark.parametrize(("rate", "negative"), [((1.0, 0.0), set()), ((0.2, 1.0), {45, 14})])
def test_a_learned_rating_weight_can_make_disliked_support_items_negatives(rate, negative) -> None:
    # issue 21 asks that low support ratings can enter the ranking as negatives: the blend's rating
    # weight ii_rate[0] + ii_rate[1] (r - mu) is learned and unbounded, so training may make them so
    rec, b = planted(hybrid())
    rec.learner.head.set_item_item(torch.from_numpy(np.abs(b)))  # every row adds where its weight is > 0
    with torch.no_grad():
        rec.learner.head.ii_rate.copy_(torch.tensor(rate))
    rec._cache = None
    e = rec.explain(RATINGS, 3, top=len(RATINGS))
    below = {s["item_id"] for s in e["support"] if s["contribution"] < 0}
    assert below == negative  # rated 1 and 2 (the mean is about 3.9): subtracted; 4 and 5 added


def test_a_rating_only_head_explains_with_its_predicted_rating_and_no_contributions() -> None:
    rec = rating_only()
    (item, score), *_ = rec.recommend(RATINGS, n=3)
    e = rec.explain(RATINGS, item)
    assert e["parts"] == {"rating": pytest.approx(score, abs=1e-5)} and e["support"] == []
    assert e["score"] == pytest.approx(score, abs=1e-5)
    assert e["predicted_rating"] == pytest.approx(float(rec.predict(RATINGS, [item])[0]), abs=1e-5)


def test_explain_of_an_unknown_item_is_an_unknown_item_error() -> None:
    with pytest.raises(UnknownItemError, match="424242"):
        hybrid().explain(RATINGS, 424242)
    with pytest.raises(ScoringInputError, match="top"):
        hybrid().explain(RATINGS, 3, top=0)


def test_explanations_of_rows_and_of_a_table_match_the_single_item_ones() -> None:
    rec = hybrid()
    rows = [{"item_id": i, "score": s} for i, s in rec.recommend(RATINGS, n=3)]
    for row in explain_rows(rec, RATINGS, rows):
        single = rec.explain(RATINGS, row["item_id"])
        assert row["explanation"]["parts"] == pytest.approx(single["parts"], abs=1e-5)
        assert [s["item_id"] for s in row["explanation"]["support"]] == [
            s["item_id"] for s in single["support"]
        ]
    table = pd.DataFrame(
        {
            "user_id": ["a"] * len(RATINGS) + ["b"],
            "item_id": [*RATINGS, 3],
            "rating": [*RATINGS.values(), 5.0],
        }
    )
    out = explain_frame(rec, table, rec.recommend_frame(table, n=2))
    for row in out.iter_rows(named=True):
        ratings = RATINGS if row["user_id"] == "a" else {3: 5.0}
        e = json.loads(row["explanation"])
        assert e["score"] == pytest.approx(row["score"], abs=1e-4)
        assert [s["item_id"] for s in e["support"]] == [
            s["item_id"] for s in rec.explain(ratings, row["item_id"])["support"]
        ]


# ---- similar items --------------------------------------------------------------------------------
def test_similar_items_by_item_item_are_the_largest_entries_of_the_items_row_without_itself() -> None:
    rec, b = planted(hybrid())
    ids = rec.space.items.ids
    for item in (56, 3):
        i = int(rec._lookup([item])[0])
        found = rec.similar_items(item, n=5)
        assert found.source == "item_item" and item not in [j for j, _ in found]
        row = b[i].astype(np.float64)
        row[i] = -np.inf
        want = np.argsort(-row, kind="stable")[:5]
        assert [j for j, _ in found] == [ids[int(k)] for k in want]
        np.testing.assert_allclose([s for _, s in found], b[i, want], rtol=1e-6)


def test_similar_items_by_factors_are_ordered_cosines_of_the_item_factors() -> None:
    rec = hybrid()
    f = rec._catalogue_cache().side["psi"].detach().numpy().astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    i = int(rec._lookup([56])[0])
    found = rec.similar_items(56, n=6, by="factors")
    assert found.source == "factors" and 56 not in [j for j, _ in found] and len(found) == 6
    sims = [s for _, s in found]
    assert sims == sorted(sims, reverse=True)
    cos = f @ f[i]
    cos[i] = -np.inf
    assert sims[0] == pytest.approx(cos.max(), abs=1e-5)
    for j, s in found:
        assert s == pytest.approx(cos[rec._lookup([j])[0]], abs=1e-5)


def test_similar_items_fall_back_to_factors_without_an_item_item_matrix() -> None:
    rec = rating_only()
    found = rec.similar_items(56, n=3)
    assert found.source == "factors" and len(found) == 3 and 56 not in [j for j, _ in found]
    with pytest.raises(ScoringInputError, match="no item-item matrix"):
        rec.similar_items(56, by="item_item")


def test_similar_items_of_an_unknown_item_is_an_unknown_item_error() -> None:
    with pytest.raises(UnknownItemError, match="424242"):
        hybrid().similar_items(424242)


@pytest.mark.parametrize(("kwargs", "words"), [({"by": "magic"}, "by must be"), ({"n": 0}, "n must be")])
def test_similar_items_with_a_bad_by_or_n_is_a_scoring_input_error(kwargs, words) -> None:
    with pytest.raises(ScoringInputError, match=words):
        hybrid().similar_items(56, **kwargs)


def test_similar_rows_have_rank_source_and_titles() -> None:
    rec = hybrid()
    rows = similar_rows(rec, "56", 4)  # an id as the command line gives it
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert {r["source"] for r in rows} == {"item_item"}
    assert all(r["title"] == rec.title(r["item_id"]) for r in rows)


# ---- the command line -----------------------------------------------------------------------------
@functools.cache
def _model_dir():
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    folder = tempfile.mkdtemp(prefix="recsys-similar-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return hybrid().save(Path(folder) / "model")


def test_cli_similar_prints_ranked_similar_items_with_their_source(capsys) -> None:
    proc = cli(capsys, "similar", "--model", str(_model_dir()), "--item", "56", "-n", "3")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["item_id"], r["source"]) for r in rows] == [
        (i, "item_item") for i, _ in hybrid().similar_items(56, 3)
    ]
    proc = cli(capsys, "similar", "--model", str(_model_dir()), "--item", "56", "--by", "factors")
    assert proc.returncode == 0 and {r["source"] for r in json.loads(proc.stdout)} == {"factors"}


def test_cli_similar_of_an_unknown_item_exits_2(capsys) -> None:
    proc = cli(capsys, "similar", "--model", str(_model_dir()), "--item", "424242")
    assert proc.returncode == 2 and "unknown item id" in proc.stderr, proc
    proc = cli(capsys, "similar", "--model", str(_model_dir()), "--item", "56", "--by", "magic")
    assert proc.returncode == 2 and "by must be" in proc.stderr, proc


def test_cli_recommend_explain_adds_an_explanation_to_each_row(capsys, tmp_path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({str(k): v for k, v in RATINGS.items()}))
    proc = cli(capsys, "recommend", "--model", str(_model_dir()), "--ratings", str(tmp_path / "r.json"),
               "-n", "3", "--explain")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 3
    for row in rows:
        e = row["explanation"]
        assert e["score"] == pytest.approx(row["score"], abs=1e-3)
        assert {s["item_id"] for s in e["support"]} <= set(RATINGS)


# ---- the pyfunc behind REST -----------------------------------------------------------------------
def _pyfunc():
    pytest.importorskip("mlflow")
    from recsys.tracking.pyfunc import RecsysPyfunc

    model = RecsysPyfunc()
    model.rec = hybrid()
    return model


TABLE = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["56", "18"], "rating": [5.0, 4.0]})


def test_rest_explain_param_adds_an_explanation_column() -> None:
    out = _pyfunc().predict(None, TABLE, {"n": 3, "explain": True})
    assert len(out) == 3 and "explanation" in out.columns
    for _, row in out.iterrows():
        e = json.loads(row["explanation"])
        assert e["score"] == pytest.approx(row["score"], abs=1e-4)
        assert {s["item_id"] for s in e["support"]} <= {56, 18}
    assert "explanation" not in _pyfunc().predict(None, TABLE, {"n": 3}).columns


def test_rest_similar_to_param_answers_with_similar_items() -> None:
    out = _pyfunc().predict(None, TABLE, {"similar_to": "56", "n": 4, "by": "factors"})
    assert list(out["rank"]) == [1, 2, 3, 4] and set(out["source"]) == {"factors"}
    assert list(out["item_id"]) == [i for i, _ in hybrid().similar_items(56, 4, by="factors")]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"explain": "yes"}, "explain must be"),
        ({"similar_to": "424242"}, "unknown item"),
        ({"similar_to": "56", "by": "magic"}, "by must be"),
        ({"similar_to": "56", "explain": True}, "cannot be combined"),
        ({"by": "factors"}, "by applies to similar_to"),
    ],
)
def test_rest_bad_explain_or_similar_params_are_http_400(params, words) -> None:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as err:
        _pyfunc().predict(None, TABLE, params)
    assert err.value.get_http_status_code() == 400 and words in err.value.message


def test_rest_explain_and_similar_to_through_mlflows_scoring_app() -> None:
    """The real REST path in process: MLflow's scoring app (which casts params by the signature) behind
    the gateway's guard, for a saved models-from-code pyfunc."""
    pytest.importorskip("mlflow")
    from tests.test_ids_and_rest import _apps, post, rows
    from tests.test_reliability_inputs import tiny_model

    guarded = _apps()[1]
    status, answer = post(guarded, rows(["a", "1", 5.0], ["a", "2", 4.0], params={"n": 2, "explain": True}))
    assert status == 200, answer
    for p in answer["predictions"]:
        e = json.loads(p["explanation"])
        assert e["score"] == pytest.approx(p["score"], abs=1e-4) and {s["item_id"] for s in e["support"]} <= {
            1,
            2,
        }
    status, answer = post(guarded, rows(["a", "1", 5.0], params={"similar_to": "1", "n": 3}))
    assert status == 200, answer
    want = tiny_model().similar_items(1, 3)
    assert [(p["item_id"], p["source"]) for p in answer["predictions"]] == [(i, want.source) for i, _ in want]
    status, answer = post(guarded, rows(["a", "1", 5.0], params={"similar_to": "424242"}))
    assert status == 400 and "unknown item" in answer["message"], answer
    status, answer = post(guarded, rows(["a", "1", 5.0], params={"explain": "maybe"}))
    assert status == 400, answer
