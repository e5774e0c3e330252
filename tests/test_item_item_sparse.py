"""The sparse top-k item-item kind: its blend equals the dense computation on the kept entries, it runs
vectorised like a per-user loop, its out-of-fold copies never saw their own users, models keep it
through save/load, old dense models still load, and the summary says which kind was used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys import ColdStartRecommender
from recsys.config import MetaConfig, ModelConfig, RecommenderConfig
from recsys.meta.maml import MetaLearner
from recsys.models.item_item import fit_item_item
from recsys.models.item_item_blend import item_item_storage
from recsys.models.item_item_sparse import TopK, topk_rows
from recsys.models.network import ColdStartNet
from tests.helpers import make_batch, meta_grads, space_and_log
from tests.test_item_item import _log

K = 5
F64 = torch.float64


def _learner(space, sparse: bool, meta: MetaConfig) -> MetaLearner:
    hybrid = {"item_item_dense_items": 0 if sparse else 100_000, "item_item_neighbours": K}
    cfg = ModelConfig(embedding_dim=8, hidden=(16,), head="hybrid", factor_dim=6, hybrid=hybrid)
    torch.manual_seed(0)
    net = ColdStartNet.for_space(cfg, space, rating_mean=3.5)
    learner = MetaLearner(net, meta).to(F64)
    t = space.item_table
    learner.set_catalogue(
        torch.from_numpy(t.indices), torch.from_numpy(t.offsets), torch.from_numpy(t.dense).to(F64)
    )
    return learner


def _random_topk(n: int, copies: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack(
        [torch.stack([torch.randperm(n, generator=g)[:K] for _ in range(n)]) for _ in range(copies)]
    )
    val = torch.rand(copies, n, K, generator=g, dtype=F64) - 0.3
    val[..., -1] = 0.0  # an empty slot (index 0 may also be a real neighbour): adds nothing
    return idx.to(torch.int32), val


def _dense(idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    n = idx.shape[-2]
    return torch.zeros(*idx.shape[:-1], n, dtype=val.dtype).scatter_add_(-1, idx.long(), val)


@pytest.fixture(scope="module")
def data(synthetic_small):
    return space_and_log(synthetic_small)


@pytest.fixture(scope="module")
def pair(data):
    """A sparse-kind learner with random top-k matrices and a dense one holding the same entries."""
    space, _ = data
    meta = MetaConfig(inner_steps=1, inner_lr=0.1, rank_weight=0.5)
    sparse, dense = _learner(space, True, meta), _learner(space, False, meta)
    full, folds = _random_topk(space.n_items, 1, 1), _random_topk(space.n_items, 2, 2)
    sparse.head.set_item_item((full[0][0], full[1][0]), folds)
    dense.head.set_item_item(_dense(full[0][0], full[1][0]), _dense(*folds))
    assert sparse.head.item_item_sparse and not dense.head.item_item_sparse
    assert sparse.head.item_item.numel() == 0 and sparse.head.item_item_idx.shape == (space.n_items, K)
    return sparse, dense


def test_sparse_blend_scores_equal_the_dense_computation_on_the_kept_entries(data, pair) -> None:
    space, log = data
    sparse, dense = pair
    batch = make_batch(space, log, n_tasks=6, support=(1, 7), dtype=F64, rank=True)
    for training in (True, False):  # out-of-fold copies while training, the full matrix after
        sparse.train(training)
        dense.train(training)
        with torch.no_grad():
            ts, td = sparse.task_tensors(batch), dense.task_tensors(batch)
            assert "ii_rows" not in ts.support and ts.support["ii_idx"].shape[-1] == K
            fs = sparse.adapt(ts.user, ts.support, ts.support_y, ts.support_m, 0)
            fd = dense.adapt(td.user, td.support, td.support_y, td.support_m, 0)
        torch.testing.assert_close(fs["fast.ii"], fd["fast.ii"])
        assert fs["fast.ii"].abs().sum() > 0
    items = torch.tensor([[0, 3, -1]])
    torch.testing.assert_close(
        sparse.head.item_item_rows(items, None), dense.head.item_item_rows(items, None)
    )


def test_sparse_blend_vectorised_equals_a_per_user_loop_and_trains_its_weights(data, pair) -> None:
    space, log = data
    sparse, dense = pair
    sparse.train()
    batch = make_batch(space, log, n_tasks=7, support=(1, 8), dtype=F64, rank=True)
    loss_v, g_v = meta_grads(sparse, batch)
    loss_l, g_l = meta_grads(sparse, batch, loop=True)
    assert abs(loss_v - loss_l) < 1e-8
    for name in ("net.head.ii_scale", "net.head.ii_rate", "net.head.ii_gate.bias"):
        assert g_v[name].abs().sum() > 0
        torch.testing.assert_close(g_v[name], g_l[name], atol=1e-8, rtol=1e-6)
    dense.train()
    loss_d, g_d = meta_grads(dense, batch)
    assert abs(loss_v - loss_d) < 1e-8
    torch.testing.assert_close(g_v["net.head.ii_rate"], g_d["net.head.ii_rate"], atol=1e-8, rtol=1e-6)


def test_the_neighbours_accessor_lists_the_strongest_kept_entries(pair) -> None:
    sparse, _ = pair
    idx, val = sparse.head.item_item_neighbours(4, n=3)
    row = sparse.head.item_item_rows(torch.tensor([[4]]), None)[0, 0]
    assert len(idx) <= 3 and 4 not in idx.tolist() and (val[:-1] >= val[1:]).all()
    assert torch.equal(row[idx], val) and (row.clone().index_fill_(0, idx, -1e9).max() <= val.min())


@pytest.mark.parametrize("chunk", [2**24, 1, 3])
def test_topk_rows_keeps_each_rows_largest_off_diagonal_entries(chunk, monkeypatch) -> None:
    """Also when the rows are sorted a block at a time (one or a few rows here; bounded memory at 1M items)."""
    from recsys.models import item_item_sparse

    monkeypatch.setattr(item_item_sparse, "TOPK_CHUNK_ENTRIES", chunk)
    m = np.array([[9.0, 1.0, 3.0, 2.0], [0.0, 5.0, -1.0, 0.0], [4.0, 4.5, 0.0, 7.0], [0, 0, 0, 0]])
    t = topk_rows(m, 2)
    assert t.idx.dtype == np.int32 and t.val.dtype == np.float32 and t.shape == (4, 2)
    dense = t.to_csr().toarray()
    assert dense[0].tolist() == [0, 0, 3, 2] and dense[1].tolist() == [0, 0, -1, 0]
    assert dense[2].tolist() == [0, 4.5, 0, 7] and not dense[3].any()


@pytest.mark.parametrize("candidate", ["cosine", "ease-pop"])
def test_an_out_of_fold_sparse_matrix_never_contains_its_own_folds_users(monkeypatch, candidate) -> None:
    """As the dense test (test_item_item.py): two planted users each make a co-occurrence no other user
    has; each pair is in the other fold's sparse matrix and the full one, never in its own fold's."""
    from recsys.models import item_item

    monkeypatch.setattr(item_item, "SPARSE_DEFAULT", (candidate, 8000.0))
    rng = np.random.default_rng(0)
    users = [sorted(rng.choice(10, size=4, replace=False).tolist()) for _ in range(10)]
    users[5] = [1, 2, 10, 11]  # fold 1 (odd row)
    users[4] = [3, 4, 12, 13]  # fold 0 (even row)
    full, folds, chosen = fit_item_item(_log(users), None, 14, threshold=4.0, implicit=False, dense_items=8)
    assert isinstance(full, TopK) and isinstance(folds, TopK) and chosen.startswith(candidate)
    assert folds.shape == (2, 14, full.shape[1])
    b = full.to_csr().toarray()
    f0, f1 = (TopK(folds.idx[f], folds.val[f]).to_csr().toarray() for f in (0, 1))
    assert b[10, 11] > 0 and b[12, 13] > 0
    assert f0[10, 11] > 0 and f1[12, 13] > 0  # each pair is in the other fold's matrix
    assert not f1[[10, 11]].any() and not f1[:, [10, 11]].any()
    assert not f0[[12, 13]].any() and not f0[:, [12, 13]].any()


def test_models_saved_before_the_sparse_kind_keep_their_dense_matrix() -> None:
    """A saved config without ``item_item_dense_items`` was dense up to 20,000 items (its saved
    ``item_item_max_items``), so its weights have the dense shape; a new config goes sparse there."""
    old = RecommenderConfig().to_dict()
    for key in ("item_item_dense_items", "item_item_neighbours"):
        del old["model"]["hybrid"][key]
    old["model"]["hybrid"]["item_item_max_items"] = 20_000
    saved = RecommenderConfig.from_saved(old)
    assert item_item_storage(saved.model, 15_000) == (15_000, 0)
    assert item_item_storage(saved.model, 25_000) == (0, 0)
    assert item_item_storage(RecommenderConfig().model, 15_000) == (15_000, 100)


def test_a_sparse_model_round_trips_through_save_and_load_and_says_its_kind(tmp_path) -> None:
    from recsys.data.synthetic import make_synthetic
    from recsys.workflows import summary_text

    ds = make_synthetic(n_users=120, n_items=60, n_interactions=3000, seed=4)
    over = {
        "model.embedding_dim": 8,
        "model.hidden": (16,),
        "model.factor_dim": 6,
        "model.hybrid.item_item_dense_items": 20,
        "model.hybrid.item_item_neighbours": 8,
        "meta.inner_steps": 0,
        "train.epochs": 1,
        "train.patience": 0,
    }
    rec = ColdStartRecommender(**over).fit_dataset(ds)
    assert rec.learner.head.item_item_sparse
    assert "(sparse, 60 items > dense limit 20)" in rec.info["item_item"]
    assert "item-item blend: " + rec.info["item_item"] in summary_text(rec)
    rec.save(tmp_path / "m")
    again = ColdStartRecommender.load(tmp_path / "m")
    assert torch.equal(again.learner.head.item_item_val, rec.learner.head.item_item_val)
    assert again.learner.head.item_item_val.abs().sum() > 0
    items = ds.items["item_id"].to_list()
    ratings = {items[0]: 5.0, items[3]: 2.0, items[7]: 4.0}
    assert rec.recommend(ratings, n=10) == again.recommend(ratings, n=10)


def test_ease_on_every_popular_item_is_dense_ease_pruned_to_its_top_k(synthetic_small) -> None:
    from recsys.models.classical import BASELINES
    from recsys.models.item_item_sparse import popular_ease

    space, log = space_and_log(synthetic_small)
    n = space.n_items
    dense = BASELINES["ease"](lam=500.0).fit(log, n).B
    pruned = popular_ease(log, n, n, 500.0, 7).toarray()
    np.testing.assert_allclose(pruned, topk_rows(dense, 7).to_csr().toarray(), rtol=1e-4, atol=1e-6)
    assert ((pruned != 0).sum(1) == 7).all()


def test_choosing_the_sparse_kind_computes_the_training_logs_cosine_once(monkeypatch) -> None:
    """Both sparse candidates contain the training log's cosine similarities (the 25M-rating log: about
    a minute each on 2 cores): choosing between them computes it once, then once per out-of-fold half."""
    from recsys.models import item_item, item_item_sparse

    calls: list[int] = []
    real = item_item_sparse.cosine

    def counted(log_, n_items, k):
        calls.append(log_.n_users)
        return real(log_, n_items, k)

    monkeypatch.setattr(item_item.sparse, "cosine", counted)
    rng = np.random.default_rng(1)
    users = [sorted(rng.choice(14, size=8, replace=False).tolist()) for _ in range(40)]
    train, validation = _log(users[:30]), _log(users[30:])
    fit_item_item(train, validation, 14, threshold=4.0, implicit=False, dense_items=8)
    assert calls == [30, 15, 15]  # the full log once for both candidates, then each fold's half
