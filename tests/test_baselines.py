"""Classical cold-start baselines: interface contract, hand-computed means, planted-structure recovery."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys.data.tasks import UserLog
from recsys.features.space import FeatureSpace
from recsys.models.classical import BASELINES, EASE, Baseline, BiasedMF, ImplicitALS, ItemKNN


def make_log(users: list[list[int]], ratings: list[list[float]] | None = None) -> UserLog:
    """A UserLog from per-user item lists (ratings default to 1.0)."""
    counts = [len(u) for u in users]
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    items = np.array([i for u in users for i in u], dtype=np.int64)
    r = (
        np.ones(len(items), dtype=np.float32)
        if ratings is None
        else np.array([x for u in ratings for x in u], dtype=np.float32)
    )
    return UserLog(pl.Series("user_id", [f"u{i}" for i in range(len(users))]), indptr, items, r, None)


def pad(lists: list[list[int]], values: list[list[float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Padded [n, S] support arrays (item -1 on padding; S >= 1)."""
    width = max(1, *(len(x) for x in lists))
    items = np.full((len(lists), width), -1, dtype=np.int64)
    ratings = np.zeros((len(lists), width), dtype=np.float32)
    for u, lst in enumerate(lists):
        items[u, : len(lst)] = lst
        ratings[u, : len(lst)] = 1.0 if values is None else values[u]
    return items, ratings


# ----------------------------------------------------------------------------------------------------
# contract shared by every registered baseline


@pytest.fixture(scope="module")
def small(synthetic_small):
    """Training log of 250 synthetic users and padded supports of the 50 others (+ one empty user)."""
    ds = synthetic_small
    space = FeatureSpace.fit(ds.interactions)
    log = UserLog.from_frame(ds.interactions, space.items)
    train = log.subset(np.arange(250))
    new = log.subset(np.arange(250, log.n_users))
    k = np.minimum(new.counts, 5)
    lists = [new.items[new.indptr[u] : new.indptr[u] + k[u]].tolist() for u in range(new.n_users)]
    values = [new.ratings[new.indptr[u] : new.indptr[u] + k[u]].tolist() for u in range(new.n_users)]
    items, ratings = pad([*lists, []], [*values, []])
    return train, space.n_items, items, ratings


def test_registry_names_grids_and_defaults() -> None:
    assert set(BASELINES) == {
        "global-mean",
        "item-mean",
        "popularity",
        "mf-als",
        "implicit-als",
        "item-knn",
        "ease",
        "trending",
        "rating-knn",
    }
    for name, cls in BASELINES.items():
        assert cls.name == name and issubclass(cls, Baseline)
        assert set(cls.grid) <= set(cls.defaults), name
        combos = list(itertools.product(*cls.grid.values()))
        assert len(combos) <= 18, name  # at most 9 settings, times the ranking baselines' positives
        for combo in combos:
            assert cls(**dict(zip(cls.grid, combo, strict=True))).params.keys() == cls.defaults.keys()
    assert BASELINES["mf-als"].predicts_ratings and BASELINES["item-mean"].predicts_ratings
    assert not BASELINES["popularity"].predicts_ratings and not BASELINES["ease"].predicts_ratings
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        BASELINES["ease"](lamda=3.0)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_scores_new_users(name: str, small) -> None:
    train, n_items, items, ratings = small
    a = BASELINES[name]().fit(train, n_items).score(items, ratings).ranking
    b = BASELINES[name]().fit(train, n_items).score(items, ratings).ranking
    assert a.shape == (len(items), n_items) and a.dtype == np.float32
    assert np.isfinite(a).all()
    assert np.array_equal(a, b), "two fits must give equal scores"
    # the empty user (last row) gets the same scores alone, in a batch with S = 1 all padding
    empty = BASELINES[name]().fit(train, n_items).score(*pad([[]])).ranking
    assert empty.shape == (1, n_items) and np.isfinite(empty).all()
    np.testing.assert_allclose(empty[0], a[-1], rtol=1e-5, atol=1e-6)
    assert np.ptp(empty[0]) > 0 or name == "global-mean", "the no-information prior should rank items"
    none = (
        BASELINES[name]()
        .fit(train, n_items)
        .score(np.zeros((0, 1), np.int64), np.zeros((0, 1), np.float32))
        .ranking
    )
    assert none.shape == (0, n_items)
    # padding position and batch composition do not matter
    shuffled_items, shuffled_ratings = items[:3, ::-1].copy(), ratings[:3, ::-1].copy()
    c = BASELINES[name]().fit(train, n_items).score(shuffled_items, shuffled_ratings).ranking
    np.testing.assert_allclose(c, a[:3], rtol=1e-5, atol=1e-5)


def test_support_out_of_catalogue_is_rejected(small) -> None:
    train, n_items, _, _ = small
    model = BASELINES["popularity"]().fit(train, n_items)
    with pytest.raises(ValueError, match="out of range"):
        model.score(*pad([[n_items]]))


# ----------------------------------------------------------------------------------------------------
# means and popularity, by hand

#   user 0: item 0 -> 5, item 1 -> 3;  user 1: item 0 -> 4, item 2 -> 1;  user 2: item 0 -> 3
#   item 3 has no rating.  mu = 16 / 5 = 3.2
TINY = make_log([[0, 1], [0, 2], [0]], [[5.0, 3.0], [4.0, 1.0], [3.0]])


def test_global_mean_by_hand() -> None:
    s = BASELINES["global-mean"]().fit(TINY, 4).score(*pad([[1], []])).ratings
    np.testing.assert_allclose(s, np.full((2, 4), 3.2), rtol=1e-6)


def test_damped_item_mean_by_hand() -> None:
    s = BASELINES["item-mean"](beta=2.0).fit(TINY, 4).score(*pad([[1, 2], []])).ratings
    # (sum + 2 * 3.2) / (n + 2)
    expected = [(12 + 6.4) / 5, (3 + 6.4) / 3, (1 + 6.4) / 3, 6.4 / 2]
    np.testing.assert_allclose(s, [expected, expected], rtol=1e-6)
    raw = BASELINES["item-mean"](beta=0.0).fit(TINY, 4).score(*pad([[]])).ratings
    np.testing.assert_allclose(raw[0], [4.0, 3.0, 1.0, 3.2], rtol=1e-6)  # unrated item -> mu


def test_popularity_ranks_by_training_counts() -> None:
    log = make_log([[2, 0], [2, 1], [2, 0], [3]])
    s = BASELINES["popularity"]().fit(log, 5).score(*pad([[0], [4, 1]])).ranking
    np.testing.assert_array_equal(s, [[2, 1, 3, 1, 0]] * 2)
    assert np.argsort(-s[0], kind="stable").tolist() == [2, 0, 1, 3, 4]


# ----------------------------------------------------------------------------------------------------
# biased MF: fold-in recovers a planted user


def test_mf_als_fold_in_recovers_a_planted_user() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, k, mu = 150, 60, 3, 3.0
    q = rng.normal(0, 0.5, (n_items, k))
    b_i = rng.normal(0, 0.4, n_items)
    p = rng.normal(0, 0.5, (n_users, k))
    b_u = rng.normal(0, 0.3, n_users)
    full = mu + b_u[:, None] + b_i[None, :] + p @ q.T  # noise-free; every user rates 40 random items
    rated = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :40]
    log = make_log(rated.tolist(), np.take_along_axis(full, rated, 1).tolist())
    model = BiasedMF(factors=k, reg=1e-3, bias_reg=1e-3, iterations=40).fit(log, n_items)

    # new users: planted factor and bias, 15 support ratings, judged on the 45 other items
    n_new = 20
    p_new, b_new = rng.normal(0, 0.5, (n_new, k)), rng.normal(0, 0.3, n_new)
    truth = mu + b_new[:, None] + b_i[None, :] + p_new @ q.T
    order = np.argsort(rng.random((n_new, n_items)), axis=1)
    support, held = order[:, :15], order[:, 15:]
    pred = model.score(support, np.take_along_axis(truth, support, 1).astype(np.float32)).ratings
    err = np.abs(np.take_along_axis(pred - truth, held, 1))
    assert err.max() < 0.05, err.max()  # tolerance: 0.05 rating points on every held-out item

    item_mean = BASELINES["item-mean"](beta=0.0).fit(log, n_items).score(*pad([[]])).ratings[0]
    mean_err = np.abs(np.take_along_axis(item_mean[None, :] - truth, held, 1))
    assert err.mean() < 0.1 * mean_err.mean()

    # no support: the user part is zero (b_i itself is not identifiable: it absorbs q_i . mean(p))
    empty = model.score(*pad([[]])).ratings[0]
    np.testing.assert_allclose(empty, model.mu + model.item_bias, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------
# implicit-feedback methods on two clusters of co-occurring items


@pytest.fixture(scope="module")
def clusters() -> tuple[UserLog, int]:
    """Items 0-9 (cluster A) and 10-19 (cluster B); B is more popular, and 1 in 5 users strays once."""
    rng = np.random.default_rng(3)
    users = []
    for u in range(200):
        base = 0 if u < 70 else 10
        picks = (base + rng.choice(10, size=5, replace=False)).tolist()
        if u % 5 == 0:
            stray = int(rng.integers(0, 20))
            if stray not in picks:
                picks.append(stray)
        users.append(picks)
    return make_log(users), 20


def _assert_cluster_ranking(scores: np.ndarray) -> None:
    a_user, b_user = scores
    a_rest, b_rest = np.arange(3, 10), np.arange(13, 20)
    assert a_user[a_rest].min() > a_user[10:].max(), a_user
    assert b_user[b_rest].min() > b_user[:10].max(), b_user


SUPPORT = pad([[0, 1, 2], [10, 11, 12]])


@pytest.mark.filterwarnings("ignore:Method expects CSR input")  # implicit's own fit, called directly
def test_item_knn_ranks_the_support_cluster_first(clusters) -> None:
    log, n_items = clusters
    model = ItemKNN(K=50).fit(log, n_items)
    scores = model.score(*SUPPORT).ranking
    _assert_cluster_ranking(scores)
    # the same scores as implicit's own recommend for these user rows
    from implicit.nearest_neighbours import CosineRecommender

    x = sp.csr_matrix(
        (np.ones(6, np.float32), ([0, 0, 0, 1, 1, 1], [0, 1, 2, 10, 11, 12])), shape=(2, n_items)
    )
    ref = CosineRecommender(K=50)
    ref.fit(log.to_csr(n_items, values="ones"), show_progress=False)
    ids, vals = ref.recommend(np.arange(2), x, N=n_items, filter_already_liked_items=False)
    for u in range(2):
        keep = vals[u] > 0
        np.testing.assert_allclose(scores[u, ids[u][keep]], vals[u][keep], rtol=1e-5)
        assert (scores[u, np.setdiff1d(np.arange(n_items), ids[u][keep])] == 0).all()


def test_ease_ranks_the_support_cluster_first_with_zero_diagonal(clusters) -> None:
    log, n_items = clusters
    lam = 10.0
    model = EASE(lam=lam).fit(log, n_items)
    _assert_cluster_ranking(model.score(*SUPPORT).ranking)
    assert (np.diag(model.B) == 0).all()
    # closed form: (X^T X + lam I)(I - B) is diagonal
    x = log.to_csr(n_items, values="ones").toarray().astype(np.float64)
    lhs = (x.T @ x + lam * np.eye(n_items)) @ (np.eye(n_items) - model.B.astype(np.float64))
    off = lhs - np.diag(np.diag(lhs))
    assert np.abs(off).max() < 1e-3 * np.abs(np.diag(lhs)).min()


def test_implicit_als_fold_in_ranks_the_support_cluster_first(clusters) -> None:
    log, n_items = clusters
    model = ImplicitALS(factors=4, regularization=0.1, alpha=4.0, iterations=20).fit(log, n_items)
    scores = model.score(*SUPPORT).ranking
    _assert_cluster_ranking(scores)
    # the fold-in is implicit's recalculate_user, as recommend(..., recalculate_user=True) uses it
    x = sp.csr_matrix(
        (np.ones(6, np.float32), ([0, 0, 0, 1, 1, 1], [0, 1, 2, 10, 11, 12])), shape=(2, n_items)
    )
    ids, vals = model.model.recommend(
        np.arange(2), x, N=n_items, recalculate_user=True, filter_already_liked_items=False
    )
    for u in range(2):
        np.testing.assert_allclose(scores[u, ids[u]], vals[u], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mf-als", "implicit-als"])
def test_seed_is_a_signature_parameter_and_is_used(name: str, small) -> None:
    import inspect

    train, n_items, items, ratings = small
    cls = BASELINES[name]
    assert "seed" in inspect.signature(cls.__init__).parameters  # the runner looks for it there
    a = cls(seed=1).fit(train, n_items).score(items, ratings).ranking
    b = cls(seed=1).fit(train, n_items).score(items, ratings).ranking
    c = cls(seed=2).fit(train, n_items).score(items, ratings).ranking
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("outer_max_width", [12, 0])
@pytest.mark.parametrize("chunk_values", [2**24, 16, 40])
def test_ridge_rows_solve_only_observed_rows_and_give_empty_rows_zero(
    chunk_values: int, outer_max_width: int, monkeypatch
) -> None:
    """The ALS step skips rows without observations (a large catalogue's long tail); every row still
    equals its own ridge solve, and an empty row's solution is 0 — also when the Gram matrices are built
    in blocks of rows and columns (one or two rows, one or four columns at a time here; a 1M-item
    catalogue's Gram matrices would take 8.7 GB at once, its items' outer products 4.5 GB), by the
    columns' outer products (narrow rows) or by each block's gathered features."""
    import scipy.sparse as sp

    from recsys.models.classical import mf
    from recsys.models.classical.mf import _ridge_rows

    monkeypatch.setattr(mf, "RIDGE_CHUNK_VALUES", chunk_values)
    monkeypatch.setattr(mf, "OUTER_MAX_WIDTH", outer_max_width)

    rng = np.random.default_rng(0)
    counts = sp.random(30, 12, density=0.2, random_state=1, format="csr")
    counts.data[:] = 1.0
    counts = counts.multiply(np.arange(30)[:, None] % 3 != 0).tocsr()  # every third row empty
    counts.eliminate_zeros()
    residuals = counts.multiply(rng.normal(size=(30, 12))).tocsr()
    features = rng.normal(size=(12, 4))
    reg = np.array([1.0, 2.0, 2.0, 2.0])
    got = _ridge_rows(counts, residuals, features, reg)
    for r in range(30):
        cols = counts[r].indices
        f = features[cols]
        want = np.linalg.solve(f.T @ f + np.diag(reg), f.T @ residuals[r, cols].toarray().ravel())
        np.testing.assert_allclose(got[r], want, atol=1e-10)
    assert not got[::3].any()


@pytest.mark.parametrize("chunk_values", [2**24, 24])
def test_ridge_rows_with_fewer_observations_than_factors_equal_the_direct_solve(
    chunk_values, monkeypatch
) -> None:
    """Rows with fewer observations than unknowns take the dual m x m system (Woodbury) instead of
    the d x d normal equations; their solutions equal the direct weighted ridge solve, with repeated
    observations (multiplicities > 1) and with a residual pattern that differs from the counts'
    (an explicit zero target dropped from the sparse matrix: the primal path is used then)."""
    import scipy.sparse as sp

    from recsys.models.classical import mf
    from recsys.models.classical.mf import _ridge_rows

    monkeypatch.setattr(mf, "RIDGE_CHUNK_VALUES", chunk_values)
    rng = np.random.default_rng(3)
    n_rows, n_cols, d = 14, 20, 9
    rows, cols = [], []
    for r in range(n_rows):  # row r observes r + 1 distinct columns: 1..14 against d = 9
        rows += [r] * (r + 1)
        cols += list(rng.choice(n_cols, size=r + 1, replace=False))
    mult = rng.integers(1, 4, size=len(rows)).astype(float)
    counts = sp.csr_matrix((mult, (rows, cols)), shape=(n_rows, n_cols))
    residuals = sp.csr_matrix((mult * rng.normal(size=len(rows)), (rows, cols)), shape=(n_rows, n_cols))
    features = rng.normal(size=(n_cols, d))
    reg = np.linspace(0.5, 3.0, d)

    def direct(res: sp.csr_matrix) -> np.ndarray:
        want = np.zeros((n_rows, d))
        for r in range(n_rows):
            c, w = counts[r].indices, counts[r].data
            f = features[c]
            s = res[r].toarray().ravel()[c]
            want[r] = np.linalg.solve(f.T @ (w[:, None] * f) + np.diag(reg), f.T @ s)
        return want

    np.testing.assert_allclose(_ridge_rows(counts, residuals, features, reg), direct(residuals), atol=1e-10)
    zeroed = residuals.copy()
    zeroed.data[0] = 0.0
    zeroed.eliminate_zeros()  # row 0's only target is 0: no longer the counts' pattern
    assert zeroed.nnz == residuals.nnz - 1
    np.testing.assert_allclose(_ridge_rows(counts, zeroed, features, reg), direct(zeroed), atol=1e-10)


def test_als_observation_pattern_is_scipys_canonical_csr_and_its_slots_sum_duplicate_targets() -> None:
    """Biased MF builds each side's CSR pattern once and refills only its values each ALS half-step;
    that must be exactly what ``sp.csr_matrix((values, (rows, cols)))`` builds: sorted columns,
    repeated (row, column) observations summed, an explicit zero target kept in the pattern."""
    import scipy.sparse as sp

    from recsys.models.classical.mf import _csr_pattern, _with_targets

    rng = np.random.default_rng(5)
    rows, cols = rng.integers(0, 7, size=60), rng.integers(0, 9, size=60)  # many repeats
    values = rng.normal(size=60)
    values[3] = 0.0
    counts, slot = _csr_pattern(rows, cols, (7, 9))
    want_counts = sp.csr_matrix((np.ones(60), (rows, cols)), shape=(7, 9))
    want = sp.csr_matrix((values, (rows, cols)), shape=(7, 9))
    got = _with_targets(counts, slot, values)
    for a, b in ((counts, want_counts), (got, want)):
        assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
        np.testing.assert_allclose(a.data, b.data, atol=1e-12)
    assert counts.data.max() > 1  # duplicates were there to be summed
