"""Catalogue updates without retraining: items added to a trained model score exactly as the evaluation
scores held-out new items; hidden items are never recommended; both survive save/load; the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys import ColdStartRecommender
from recsys.cli import main
from recsys.data.synthetic import make_synthetic
from recsys.data.tasks import UserLog
from recsys.errors import DataError, FeatureMismatchError, UnknownItemError
from recsys.evaluation.runner import MetaScorer
from recsys.meta.scoring import clamp_to_scale
from recsys.models import trend
from recsys.models.catalogue import grow_catalogue
from recsys.models.item_item import fit_item_item

TINY = {
    "train.epochs": 1,
    "train.meta_batch_size": 16,
    "model.embedding_dim": 8,
    "model.hidden": (16, 16),
    "train.patience": 0,
}
NEW = [37, 38, 39, 40]
"""Items held out of the synthetic model's training log and item table: added afterwards."""
TWIN = 36
"""An item in the synthetic model's item table but not in its training log: a catalogue item without
training interactions, which the model scores exactly as the evaluation scores held-out new items."""


def fit_model(interactions, users, items, item_fields, user_fields, validation_users, **over):
    rec = ColdStartRecommender(**(TINY | over))
    return rec.fit(
        interactions,
        users,
        items,
        user_fields=user_fields,
        item_fields=item_fields,
        title_field="title",
        rating_scale=(1.0, 5.0),
        validation_users=validation_users,
    )


def evaluation_path(rec: ColdStartRecommender, interactions, users, items, data_kw) -> ColdStartRecommender:
    """The model the evaluation scores new items with: the catalogue built by training's own code with
    the new items in the item table from the start (their item-id field unknown, their content encoded
    by the encoders fitted on the training items), the trained weights of ``rec``, and the per-item
    buffers of that catalogue computed by training's own code from the same training log (item
    offsets; the item-item matrix left empty: the new items' columns of any matrix fitted on a log
    without them are zero, see test_item_item_matrices_have_no_row_or_column_for_items_without_interactions).
    The trend prior is standardised over each catalogue, and the MF rating fallback refitted on a larger
    catalogue draws other random starting factors (test_mf_fallback.py covers its added items), as does
    the ALS ranking path (test_als_path.py covers its added items), so the comparisons switch these off
    on both."""
    from recsys import training

    kw = {k: v for k, v in data_kw.items() if k != "validation_users"}
    data = training.prepare_log(interactions, users, items, rec.config, **kw)
    train_inter, _ = training.split_validation(
        data.interactions, data_kw["validation_users"], rec.config.train, None
    )
    space = training.fit_space(train_inter, data, rec.config.model, "title")
    assert space.item_encoder.to_dict() == rec.space.item_encoder.to_dict()  # the same encoders
    ref = ColdStartRecommender(rec.config)
    ref._build(space, rec.info["rating_mean"])
    per_item = (
        "net.head.item_offset",
        "net.head.trend",
        "net.head.item_item",
        "net.head.mf_design",
        "net.head.mf_base",
        "net.head.mf_seen",
        "net.head.als_factors",
        "net.head.cf_matrix",  # left empty: the new items' rows and columns are zero, as in the added copy
    )
    state = {k: v for k, v in rec.learner.state_dict().items() if k not in per_item}
    missing, unexpected = ref.learner.load_state_dict(state, strict=False)
    assert set(missing) <= set(per_item) and not unexpected
    train_log = UserLog.from_frame(train_inter, space.items)
    training.set_item_offsets(ref.learner.head, train_log, space.n_items, rec.info["rating_mean"])
    ref.learner.head.trend_weight.zero_()
    ref.learner.head.set_mf_weight(0.0)
    ref.learner.head.set_als_weight(0.0)
    ref.info = dict(rec.info)
    return ref


def compare_with_evaluation_path(added, ref, supports: list[dict], ds, new_ids: list) -> None:
    """Predicted ratings of every item and ranking scores of the added items agree (tight tolerance)."""
    added.learner.head.trend_weight.zero_()  # see evaluation_path
    added.learner.head.set_mf_weight(0.0)
    added.learner.head.set_als_weight(0.0)
    added._cache = None
    mine, _ = added.score_users(supports, what="rating")
    mine_rank, _ = added.score_users(supports, what="rank")
    items, ratings = ref._encode_requests(supports, "error")
    theirs = MetaScorer(ref, ds).score(items, ratings)  # the evaluation's scorer
    ids = added.item_ids
    assert sorted(map(str, ids)) == sorted(map(str, ref.item_ids))
    np.testing.assert_allclose(
        mine[:, added._lookup(ids)],
        clamp_to_scale(theirs.ratings, ref.space.rating_scale)[:, ref._lookup(ids)],
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        mine_rank[:, added._lookup(new_ids)], theirs.ranking[:, ref._lookup(new_ids)], rtol=1e-5, atol=1e-5
    )


@pytest.fixture(scope="module")
def synth():
    ds = make_synthetic(n_users=80, n_items=40, n_interactions=1500, seed=3)
    inter = ds.interactions.filter(~pl.col("item_id").is_in([*NEW, TWIN]))
    items = ds.items.filter(~pl.col("item_id").is_in(NEW))
    val = inter["user_id"].unique().sort()[:10]
    kw = {
        "user_fields": ds.spec.user_fields,
        "item_fields": ds.spec.item_fields,
        "rating_scale": (1.0, 5.0),
        "validation_users": val,
    }
    rec = fit_model(inter, ds.users, items, ds.spec.item_fields, ds.spec.user_fields, val)
    return ds, inter, rec, kw


def added_copy(rec: ColdStartRecommender, items) -> ColdStartRecommender:
    import copy

    out = copy.deepcopy(rec)
    out.add_items(items)
    return out


def test_an_added_item_scores_exactly_as_a_catalogue_item_without_training_interactions(synth) -> None:
    ds, _, rec, _ = synth
    twin_row = ds.items.filter(pl.col("item_id") == TWIN).with_columns(pl.lit(1000).alias("item_id"))
    added = added_copy(rec, twin_row)
    head = added.learner.head
    assert (
        float(head.trend_weight) != 0
    )  # the model has a trend prior: new items get its no-interactions value
    twin, new = (int(i) for i in added._lookup([TWIN, 1000]))
    assert new == rec.space.n_items and added.title(1000) == f"Item {TWIN}"
    for buffer in ("item_offset", "trend"):
        assert getattr(head, buffer)[new] == pytest.approx(float(getattr(head, buffer)[twin]), abs=1e-6)
    assert head.item_item_active and not head.item_item[new].any() and not head.item_item[:, new].any()
    supports = [{1: 5.0, 2: 3.0, 5: 4.0}, {}, {3: 1.0, TWIN: 4.0}]
    for what in ("rating", "rank"):
        scores, _ = added.score_users(supports, what=what)
        np.testing.assert_allclose(scores[:, new], scores[:, twin], rtol=1e-6, atol=1e-6)
        before, _ = rec.score_users(supports, what=what)  # the items already there score as before
        np.testing.assert_allclose(scores[:, : rec.space.n_items], before, rtol=1e-6, atol=1e-6)


def test_added_items_score_as_the_evaluation_path_scores_new_items(synth) -> None:
    ds, inter, rec, kw = synth
    added = added_copy(rec, ds.items.filter(pl.col("item_id").is_in(NEW)))
    full_log = inter  # the same training log; the item table now has the new items too
    ref = evaluation_path(rec, full_log, ds.users, ds.items, kw)
    supports = [{1: 5.0, 2: 3.0}, {}, {37: 5.0, 3: 2.0}, {38: 1.0, 39: 4.0, 40: 5.0}]
    compare_with_evaluation_path(added, ref, supports, ds, NEW)


def test_item_item_matrices_have_no_row_or_column_for_items_without_interactions(synth) -> None:
    _, inter, rec, _ = synth
    catalogue = rec.space.items
    log = UserLog.from_frame(inter, catalogue)
    matrix, _, _ = fit_item_item(log, None, len(catalogue), threshold=None, implicit=False)
    unseen = rec.space.popularity == 0
    assert unseen.any() and not matrix[unseen].any() and not matrix[:, unseen].any()


def test_the_recorded_no_interactions_trend_is_the_prior_of_an_item_without_interactions(synth) -> None:
    _, inter, rec, _ = synth
    log = UserLog.from_frame(inter, rec.space.items)
    for half_life in (None, 30.0):
        prior = trend.trend_prior(log, rec.space.n_items, half_life)
        unseen = prior[rec.space.popularity == 0]
        assert len(unseen) and trend.no_interactions_value(log, rec.space.n_items, half_life) == unseen[0]


def test_grow_catalogue_pads_the_per_item_buffers_and_reports_them(synth) -> None:
    _, _, rec, _ = synth
    import copy

    head = copy.deepcopy(rec.learner.head)
    n = rec.space.n_items
    added = [name for name in ("als_factors", "cf_matrix") if head.get_buffer(name).numel()]  # where chosen
    assert grow_catalogue(head, 3, trend_fill=-0.5) == [
        "item_offset",
        "trend",
        "mf_design",
        "mf_base",
        "mf_seen",
        *added,
        "item_item",
    ]
    assert head.item_offset.shape == (n + 3,) and torch.equal(head.item_offset[n:], torch.zeros(3))
    assert torch.equal(head.trend[n:], torch.full((3,), -0.5))
    assert head.item_item.shape == (n + 3, n + 3)
    assert torch.equal(head.item_item[:n, :n], rec.learner.head.item_item)


def test_set_available_hides_items_from_recommend_and_recommend_batch(synth) -> None:
    _, _, rec, _ = synth
    import copy

    rec = copy.deepcopy(rec)
    ratings = {1: 5.0, 2: 3.0}
    top = [i for i, _ in rec.recommend(ratings, n=5)]
    assert rec.set_available(top[:2], False) == 2
    assert rec._available.dtype == bool and (~rec._available).sum() == 2
    every = rec.recommend(ratings, n=rec.space.n_items)
    assert not set(top[:2]) & {i for i, _ in every} and len(every) == rec.space.n_items - 4
    for row in rec.recommend_batch([ratings, {}, {3: 4.0}], n=rec.space.n_items):
        assert not set(top[:2]) & {i for i, _ in row}
    frame = pl.DataFrame({"user_id": ["a", "a"], "item_id": [1, 2], "rating": [5.0, 3.0]})
    assert not set(top[:2]) & set(rec.recommend_frame(frame, n=rec.space.n_items)["item_id"].to_list())
    assert len(rec.predict(ratings, top[:2])) == 2  # hidden, not deleted
    rec.set_available(top[:2], True)
    assert rec._available is None and [i for i, _ in rec.recommend(ratings, n=5)] == top


def test_added_items_and_hidden_items_round_trip_through_save_and_load(synth, tmp_path: Path) -> None:
    ds, _, rec, _ = synth
    added = added_copy(rec, ds.items.filter(pl.col("item_id").is_in(NEW)))
    added.set_available([5, 38], False)
    added.save(tmp_path / "m")
    again = ColdStartRecommender.load(tmp_path / "m")
    assert again.item_ids == added.item_ids and again.space.titles == added.space.titles
    assert np.array_equal(again._available, added._available)
    supports = [{1: 5.0, 38: 2.0}, {}]
    for what in ("rating", "rank"):
        a, _ = added.score_users(supports, what=what)
        b, _ = again.score_users(supports, what=what)
        np.testing.assert_array_equal(a, b)
    assert again.recommend({1: 5.0}, n=10) == added.recommend({1: 5.0}, n=10)
    assert again.info["catalogue"] == {"items_added": len(NEW), "hidden_items": 2}


def test_saved_availability_of_the_wrong_size_is_refused(synth, tmp_path: Path) -> None:
    from recsys import persistence
    from recsys.errors import ModelFileError

    with pytest.raises(ModelFileError, match="availability"):
        persistence.read_available({persistence.AVAILABLE: torch.ones(3, dtype=torch.uint8)}, 4, tmp_path)


# ---- bad input: one clear error each -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda f: f.drop("item_id"), DataError, "no 'item_id' column"),
        (lambda f: f.with_columns(pl.lit("x").alias("colour")), FeatureMismatchError, "unknown column"),
        (lambda f: f.drop("category"), FeatureMismatchError, "missing item feature"),
        (lambda f: f.with_columns(pl.col("genre").list.join("|")), FeatureMismatchError, "lists of tokens"),
        (lambda f: f.with_columns(pl.lit(7).alias("item_id")), DataError, "repeated item id"),
        (lambda f: f.with_columns(pl.Series("item_id", [1, 500, 501, 502])), DataError, "already in"),
        (
            lambda f: f.with_columns(pl.Series("item_id", ["x", "500", "501", "502"])),
            DataError,
            "not an item id",
        ),
        (lambda f: f.head(0), DataError, "empty"),
        (lambda f: "not a frame", DataError, "DataFrame"),
    ],
    ids=[
        "no-id",
        "unknown-column",
        "missing-column",
        "wrong-type",
        "duplicate",
        "known",
        "bad-id",
        "empty",
        "type",
    ],
)
def test_add_items_bad_input_is_one_clear_error_and_changes_nothing(synth, change, error, message) -> None:
    ds, _, rec, _ = synth
    frame = change(ds.items.filter(pl.col("item_id").is_in(NEW)))
    n = rec.space.n_items
    with pytest.raises(error, match=message):
        rec.add_items(frame)
    assert rec.space.n_items == n and rec.learner.head.item_offset.shape == (n,)


def test_add_items_accepts_pandas_and_set_available_refuses_unknown_ids(synth) -> None:
    ds, _, rec, _ = synth
    added = added_copy(rec, ds.items.filter(pl.col("item_id") == 40).to_pandas())
    assert added.item_ids[-1] == 40
    with pytest.raises(UnknownItemError, match="9999"):
        added.set_available([1, 9999], False)
    assert added._available is None


# ---- the command line ----------------------------------------------------------------------------------
def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_catalogue_add_hide_and_show(synth, tmp_path: Path, capsys) -> None:
    ds, _, rec, _ = synth
    rec.save(tmp_path / "m")
    raw = ds.raw_items.filter(pl.col("item_id").is_in(NEW))  # genre as "g1|g4", as in the item file
    raw.write_csv(tmp_path / "new.csv")
    code, out, err = run_cli(
        [
            "catalogue",
            "add",
            "--model",
            str(tmp_path / "m"),
            "--items",
            str(tmp_path / "new.csv"),
            "--out",
            str(tmp_path / "m2"),
        ],
        capsys,
    )
    assert code == 0, err
    assert f"added {len(NEW)} item(s)" in out
    m2 = ColdStartRecommender.load(tmp_path / "m2")
    api = added_copy(rec, ds.items.filter(pl.col("item_id").is_in(NEW)))
    assert m2.item_ids == api.item_ids
    np.testing.assert_array_equal(m2.space.item_table.indices, api.space.item_table.indices)
    (tmp_path / "ids.txt").write_text("item_id\n38\n5\n")
    code, out, err = run_cli(
        [
            "catalogue",
            "hide",
            "--model",
            str(tmp_path / "m2"),
            "--ids",
            str(tmp_path / "ids.txt"),
            "--out",
            str(tmp_path / "m3"),
        ],
        capsys,
    )
    assert code == 0 and "hid 2 item(s)" in out and "(2 hidden)" in out, err
    m3 = ColdStartRecommender.load(tmp_path / "m3")
    assert not {5, 38} & {i for i, _ in m3.recommend({1: 5.0}, n=m3.space.n_items)}
    code, out, _ = run_cli(
        [
            "catalogue",
            "show",
            "--model",
            str(tmp_path / "m3"),
            "--ids",
            str(tmp_path / "ids.txt"),
            "--out",
            str(tmp_path / "m4"),
        ],
        capsys,
    )
    assert code == 0 and ColdStartRecommender.load(tmp_path / "m4")._available is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("genre,category\ng1,c1\n", "no 'item_id' column"),
        ("item_id,genre,category,colour\n500,g1,c1,red\n", "unknown column"),
        ("item_id,genre\n500,g1\n", "missing item feature"),
        ("item_id,genre,category\n500,g1,c1\n500,g2,c2\n", "repeated item id"),
        ("item_id,genre,category\n1,g1,c1\n", "already in the catalogue"),
    ],
    ids=["no-id-column", "unknown-column", "missing-column", "duplicate-ids", "known-id"],
)
def test_cli_catalogue_add_bad_items_file_is_one_line_exit_2(
    synth, tmp_path: Path, capsys, table, message
) -> None:
    _, _, rec, _ = synth
    rec.save(tmp_path / "m")
    (tmp_path / "new.csv").write_text(table)
    args = ["catalogue", "add", "--model", str(tmp_path / "m"), "--items", str(tmp_path / "new.csv")]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "m2")], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_catalogue_hide_unknown_ids_is_one_line_exit_2(synth, tmp_path: Path, capsys) -> None:
    _, _, rec, _ = synth
    rec.save(tmp_path / "m")
    (tmp_path / "ids.txt").write_text("9999\n")
    args = ["catalogue", "hide", "--model", str(tmp_path / "m"), "--ids", str(tmp_path / "ids.txt")]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "m2")], capsys)
    assert code == 2 and "9999" in err and len(err.strip().splitlines()) == 1


def test_registered_name_of_registry_uris() -> None:
    from recsys.cli.catalogue import registered_name

    assert registered_name("models:/movies@champion") == "movies"
    assert registered_name("models:/movies/3") == "movies"
    assert registered_name("runs:/abc/model") is None and registered_name("models/m") is None


# ---- MeLU's split -----------------------------------------------------------------------------------
MELU = Path(os.environ.get("RECSYS_DATA_DIR", "data")) / "melu-ml1m" / "warm_state.json"


@pytest.mark.slow
@pytest.mark.skipif(not MELU.exists(), reason="MeLU's split is not in RECSYS_DATA_DIR")
def test_melu_new_items_added_to_a_warm_model_score_as_in_the_item_cold_state_evaluation() -> None:
    from recsys.data import load_dataset

    ds = load_dataset("melu-ml1m")
    states = ds.interactions
    warm = states.filter(pl.col("state") == "warm_state").drop("state")
    users = warm["user_id"].unique().sort()[:150]  # a small warm model: 150 training users
    warm = warm.filter(pl.col("user_id").is_in(users.implode()))
    warm_items = warm["item_id"].unique()
    cold = states.filter(pl.col("state") == "item_cold_state")
    new_items = cold["item_id"].unique().filter(~cold["item_id"].unique().is_in(warm_items.implode()))
    val = users[:15]
    kw = {
        "user_fields": ds.spec.user_fields,
        "item_fields": ds.spec.item_fields,
        "rating_scale": ds.rating_scale,
        "validation_users": val,
    }
    items = ds.items.filter(pl.col("item_id").is_in(warm_items.implode()))
    rec = fit_model(
        warm,
        ds.users,
        items,
        ds.spec.item_fields,
        ds.spec.user_fields,
        val,
        **{"model.item_id_init": "random"},
    )
    added = added_copy(rec, ds.items.filter(pl.col("item_id").is_in(new_items.implode())))
    assert added.space.n_items == rec.space.n_items + len(new_items)
    ref = evaluation_path(
        rec,
        warm,
        ds.users,
        ds.items.filter(pl.col("item_id").is_in(pl.concat([warm_items, new_items]).implode())),
        kw,
    )
    # item_cold_state users' ratings of new items as the support, as in that scenario
    supports = [
        dict(zip(g["item_id"].to_list()[:10], g["rating"].to_list()[:10], strict=True))
        for _, g in cold.filter(pl.col("item_id").is_in(new_items.implode())).group_by(
            "user_id", maintain_order=True
        )
    ][:8]
    compare_with_evaluation_path(added, ref, supports, ds, new_items.to_list())


@pytest.mark.slow
def test_cli_catalogue_add_to_a_registered_model_registers_the_next_version(
    synth, tmp_path: Path, capsys, monkeypatch
) -> None:
    from recsys.tracking.mlflow_run import Tracker, TrackingOptions
    from recsys.utils.locations import resolve_model_location

    ds, _, rec, _ = synth
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with Tracker(TrackingOptions(tracking_uri=uri)) as tr:
        assert tr.log_model(rec, "catalogue-test").version == "1"
    ds.raw_items.filter(pl.col("item_id").is_in(NEW)).write_csv(tmp_path / "new.csv")
    args = ["catalogue", "add", "--model", "models:/catalogue-test/1", "--items", str(tmp_path / "new.csv")]
    code, out, err = run_cli([*args, "--out", str(tmp_path / "m2")], capsys)
    assert code == 0, err
    assert "registered: models:/catalogue-test/2" in out
    v2 = ColdStartRecommender.load(tmp_path / "m2")

    registered = ColdStartRecommender.load(resolve_model_location("models:/catalogue-test/2", uri))
    assert registered.item_ids == v2.item_ids and registered.item_ids[-len(NEW) :] == NEW


@pytest.mark.parametrize("dense_items", [10, 1000])
def test_added_items_keep_the_blends_storage_and_the_model_reloads(synth, tmp_path, dense_items) -> None:
    """Sparse top-k storage (dense limit 10 < 36 items) gets empty neighbour lists for the new rows; a
    dense model grown past the dense limit keeps its dense matrix (the limit is raised in its config),
    and either reloads with the scores it had."""
    ds, inter, _, kw = synth
    over = {"model.hybrid.item_item_dense_items": dense_items}
    rec = fit_model(inter, ds.users, ds.items.filter(~pl.col("item_id").is_in(NEW)), kw["item_fields"],
                    kw["user_fields"], kw["validation_users"], **over)  # fmt: skip
    sparse = rec.learner.head.item_item_sparse
    assert sparse == (dense_items == 10) and rec.learner.head.item_item_active
    n = rec.space.n_items
    rec.config = rec.config.replace(model={"hybrid": {"item_item_dense_items": min(dense_items, n)}})
    rec.add_items(ds.items.filter(pl.col("item_id").is_in(NEW)))
    head = rec.learner.head
    assert head.item_item_sparse == sparse and head.item_item_catalogue == n + len(NEW)
    if sparse:
        assert (
            not head.item_item_val[n:].any()
            and not (head.item_item_val[:n] * (head.item_item_idx[:n] >= n)).any()
        )
    supports = [{1: 5.0, 2: 3.0}, {37: 4.0, 3: 2.0}]
    want, _ = rec.score_users(supports, what="rank")
    again = ColdStartRecommender.load(rec.save(tmp_path / "m"))
    got, _ = again.score_users(supports, what="rank")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
