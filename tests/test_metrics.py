"""Metrics against hand-computed cases: ties, no relevant items, fewer candidates than k."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.metrics import core as M
from recsys.metrics.topk import top_n


def test_mae_rmse_with_padding() -> None:
    pred = np.array([[4.0, 2.0, 9.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    true = np.array([[5.0, 2.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = np.array([[True, True, False], [True, False, False], [False, False, False]])
    assert M.mae(pred, true, mask)[:2].tolist() == [0.5, 2.0]
    assert M.rmse(pred, true, mask)[0] == pytest.approx(math.sqrt(0.5))
    assert math.isnan(M.mae(pred, true, mask)[2])  # no query -> undefined, not zero


def test_query_ndcg_hand_computed() -> None:
    true = np.array([[5.0, 3.0, 1.0]])
    mask = np.ones((1, 3), bool)
    perfect = M.query_ndcg(np.array([[3.0, 2.0, 1.0]]), true, mask, 3)
    assert perfect[0] == pytest.approx(1.0)
    reversed_ = M.query_ndcg(np.array([[1.0, 2.0, 3.0]]), true, mask, 3)
    g = [31, 7, 1]
    dcg = 1 / np.log2(2) + 7 / np.log2(3) + 31 / np.log2(4)
    idcg = 31 / np.log2(2) + 7 / np.log2(3) + 1 / np.log2(4)
    assert reversed_[0] == pytest.approx(dcg / idcg)
    assert g[0] == 2**5 - 1
    # @1 picks the top prediction only
    assert M.query_ndcg(np.array([[1.0, 2.0, 3.0]]), true, mask, 1)[0] == pytest.approx(1 / 31)


def test_query_ndcg_ties_are_stable_and_padding_last() -> None:
    true = np.array([[1.0, 5.0, 4.0]])
    # all-equal predictions: stable order keeps positions 0, 1, 2
    tied = M.query_ndcg(np.zeros((1, 3)), true, np.ones((1, 3), bool), 1)
    assert tied[0] == pytest.approx(1 / 31)
    # a padded slot with a huge prediction is never ranked
    padded = M.query_ndcg(
        np.array([[9.0, 1.0, 2.0]]), np.array([[5.0, 3.0, 4.0]]), np.array([[False, True, True]]), 1
    )
    assert padded[0] == pytest.approx(1.0)


def test_query_ndcg_all_zero_gain_is_undefined() -> None:
    out = M.query_ndcg(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]), np.ones((1, 2), bool), 2)
    assert math.isnan(out[0])


def test_top_k_ties_and_exclusion() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert top_n(scores, 3)[0].tolist() == [[1, 2, 4]]  # ties broken by item index
    excl = np.array([[False, True, False, False, False]])
    assert top_n(scores, 2, excl)[0].tolist() == [[2, 4]]


def test_top_n_in_chunks_of_rows_equals_top_n_at_once(monkeypatch) -> None:
    """Above ``TOP_N_CHUNK_VALUES`` scores the rows are ranked in chunks (bounded memory on a 1M-item
    catalogue); the result, ties and exclusions included, is the same."""
    from recsys.metrics import topk

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(13, 9)).astype(np.float32)  # many ties
    exclude = rng.random((13, 9)) < 0.3
    whole = top_n(scores, 5, exclude)
    monkeypatch.setattr(topk, "TOP_N_CHUNK_VALUES", 20)  # two rows a chunk
    chunked = top_n(scores, 5, exclude)
    np.testing.assert_array_equal(chunked[0], whole[0])
    np.testing.assert_array_equal(chunked[1], whole[1])
    assert top_n(scores[:0], 5)[0].shape == (0, 5)


def _top_n_by_partition(scores, n, exclude=None):
    """The former ``top_n`` (numpy's argpartition on a float64 copy of every row): the reference."""
    s = scores.astype(np.float64, copy=True)
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(n, s.shape[1])
    part = (
        np.argpartition(-s, kth=k - 1, axis=1)[:, :k]
        if k < s.shape[1]
        else np.tile(np.arange(s.shape[1]), (len(s), 1))
    )
    order = np.lexsort((part, -np.take_along_axis(s, part, axis=1)), axis=1)
    indices = np.take_along_axis(part, order, axis=1)
    return indices, np.take_along_axis(scores, indices, axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("n", [1, 5, 9, 12])
def test_top_n_by_torch_topk_equals_the_partition_reference(dtype, n) -> None:
    """``top_n`` takes the k + 1 best per row from ``torch.topk`` and falls back to the partition for
    rows tied at the k-th place, with NaN scores or with fewer than k items left: the same items in the
    same order as the reference, row by row (distinct scores, many ties, exclusions, NaN)."""
    rng = np.random.default_rng(n)
    distinct = rng.normal(size=(40, 12))
    tied = rng.integers(0, 3, size=(40, 12)).astype(float)
    scores = np.concatenate([distinct, tied]).astype(dtype)
    exclude = rng.random(scores.shape) < 0.25
    exclude[3] = True  # nothing left in one row
    if dtype is not np.int64:
        scores[5, [2, 7]] = np.nan
    for ex in (None, exclude):
        got, want = top_n(scores, n, ex), _top_n_by_partition(scores, n, ex)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[0].dtype == np.int64 and got[1].dtype == scores.dtype


def test_catalogue_metrics_hand_computed() -> None:
    ranked = np.array([[3, 1, 0, 2]])
    relevant = np.zeros((1, 5), bool)
    relevant[0, [1, 2, 4]] = True  # item 4 is never ranked
    m = M.catalogue_metrics(ranked, relevant, ks=(2, 4))
    assert m["recall@2"][0] == pytest.approx(1 / 2)  # 1 hit / min(2, 3 relevant)
    assert m["recall@4"][0] == pytest.approx(2 / 3)
    assert m["hit@2"][0] == 1.0
    disc = 1 / np.log2(np.arange(2, 6))
    assert m["ndcg@2"][0] == pytest.approx(disc[1] / (disc[0] + disc[1]))
    assert m["ndcg@4"][0] == pytest.approx((disc[1] + disc[3]) / disc[:3].sum())
    # AP@4: hits at ranks 2 and 4 -> (1/2 + 2/4) / min(3, 4)
    assert m["map@4"][0] == pytest.approx((0.5 + 0.5) / 3)


def test_catalogue_metrics_no_relevant_items_is_nan() -> None:
    m = M.catalogue_metrics(np.array([[0, 1]]), np.zeros((1, 3), bool), ks=(2,))
    assert all(math.isnan(v[0]) for v in m.values())


def test_fewer_candidates_than_k() -> None:
    scores = np.array([[0.5, 0.9, 0.1]])
    exclude = np.array([[False, False, True]])
    top, _ = top_n(scores, 20, exclude)
    assert top.shape == (1, 3)
    relevant = np.array([[True, True, False]])
    m = M.catalogue_metrics(top, relevant, ~exclude, ks=(20,))
    assert m["recall@20"][0] == 1.0 and m["ndcg@20"][0] == pytest.approx(1.0)


def test_coverage_and_bootstrap() -> None:
    assert M.coverage(np.array([[0, 1], [1, 2]]), 10, 2) == pytest.approx(0.3)
    mean, lo, hi = M.bootstrap_ci(np.array([1.0, 2.0, 3.0, np.nan]), n_boot=500)
    assert mean == pytest.approx(2.0) and lo < 2.0 < hi
    assert all(math.isnan(x) for x in M.bootstrap_ci(np.array([np.nan])))
