"""The rating combiner: how far one user's rating prediction trusts each base predictor, read from
the user's support.

Four base predictors of a rating of item ``i``, all fitted on the training users:

* the item's baseline ``b_i`` (the global mean plus the item's damped offset: a damped item mean);
* the head's meta-learned ridge fold-in ``b_i + f_ui``;
* a biased MF's ridge fold-in ``m_ui`` (the MF fallback's buffers, :mod:`recsys.models.path_weights`);
* a rating item-kNN of the support's residuals ``k_ui`` (:mod:`recsys.models.rating_knn`).

For an item the MF saw rated the combined prediction is
``b_i + a_u[0] f_ui + a_u[1] (m_ui - b_i) + a_u[2] k_ui`` with the user's weights ``a_u = C g(support)``:
a [3, :data:`N_FEATURES`] matrix ``C`` (rows: :data:`PARTS`) times the
support's features :func:`support_features` (a constant, the number of ratings (log-scaled) and its
square, the ratings' spread, how far their mean lies from the global mean). How far to trust the
meta-learned fold-in against the classical one depends on how much, and how typically, the user rated:
with two ratings the learned prior knows more, with fifty the MF's solve has the evidence. Items the
MF never saw rated keep the head's own prediction (``b_i`` plus the fold-in at its chosen weight).

The post-training choices it generalises are special cases: ``C = [[w, 0, …], [0, 0, …], [0, 0, …]]``
is the fold-in weight ``w``; ``C = [[(1 - m) w, 0, …], [m, 0, …], [0, 0, …]]`` adds the MF fallback at
weight ``m``. That
choice is the combiner's start; :func:`fit_rating_mix` fits ``C`` on validation users' query ratings by
least absolute deviations (the evaluation's per-user MAE), and :mod:`recsys.post_training` keeps it
only where a cross-fit over two halves of the validation users (:func:`cross_fit_task_mae`) shows a
lower MAE than the start by more than the noise (:func:`clears_noise`).

The fit and the cross-fit read ``parts``, the combiner's inputs one entry per validation query rating
(:func:`recsys.post_training.rating_parts`): ``task`` (its task), ``y`` (the rating minus the item's
baseline), ``features`` [n, N_FEATURES], the terms ``fold``, ``mf``, ``knn``, ``seen`` (the MF saw the
item rated) and ``now`` (the prediction minus the baseline with the combiner off).
"""

from __future__ import annotations

import math

import numpy as np
import torch

N_FEATURES = 5
PARTS = ("fold-in", "MF fold-in", "item-kNN")
"""The base predictors' terms the combiner weighs, in the order of ``C``'s rows."""
FEATURES = ("constant", "log support size", "its square", "rating spread", "distance of mean from global")
"""What :func:`support_features` returns, in order (how reports name the columns of ``C``)."""
SIZE_SCALE = math.log1p(20.0)
"""The support size is read as ``log(1 + n) / log(21)``: 1 at 20 ratings (the trained range's end)."""
SIZE_CAP = 100.0
"""Supports longer than this are read as this long: the longest validation supports the combiner is
fitted on (:data:`recsys.added_paths.LONG_SUPPORT`), so a known user with 500 ratings gets the weights
of a 100-rating support rather than an extrapolation of the size's square."""


def support_features(sy: torch.Tensor, m: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """[N_FEATURES] features of one user's support ratings ``sy`` [S] (mask ``m`` [S]) around the
    global mean ``mu`` (see :data:`FEATURES`); written without data-dependent control flow (runs
    under vmap). An empty support gives ``[1, 0, 0, 0, |mu|]``-like values: no evidence."""
    mask = m.to(sy.dtype)
    n = mask.sum()
    size = torch.log1p(n.clamp_max(SIZE_CAP)) / SIZE_SCALE
    mean = (sy * mask).sum() / n.clamp_min(1.0)
    spread = ((((sy - mean) * mask) ** 2).sum() / n.clamp_min(1.0)).clamp_min(0.0).sqrt()
    return torch.stack([torch.ones_like(n), size, size * size, spread, (mean - mu).abs() * (n > 0)])


def user_weights(coef: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """A user's weights ``a_u`` [len(PARTS)] from ``coef`` [len(PARTS), N_FEATURES] and the features."""
    return coef @ features


def start_coef(fold_in_weight: float, mf_weight: float) -> np.ndarray:
    """The ``C`` that reproduces the fold-in weight and MF fallback as chosen (see the module doc)."""
    coef = np.zeros((len(PARTS), N_FEATURES))
    coef[0, 0] = (1.0 - mf_weight) * fold_in_weight
    coef[1, 0] = mf_weight
    return coef


def design(features: np.ndarray, fold: np.ndarray, mf: np.ndarray, knn: np.ndarray) -> np.ndarray:
    """Rows [n, len(PARTS) * N_FEATURES] of the linear model of ``y - b``: each rating's user features
    times its fold-in term ``f``, its MF term ``m - b`` and its kNN term ``k`` (``features``
    [n, N_FEATURES], one row a rating)."""
    return np.concatenate([features * t[:, None] for t in (fold, mf, knn)], axis=1)


def fit_rating_mix(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    start: np.ndarray,
    *,
    ridge: float = 1e-3,
    iterations: int = 50,
) -> np.ndarray:
    """``C`` (shaped like ``start``: [len(PARTS), N_FEATURES] for :func:`design`'s columns) minimising
    ``sum weight * |y - x . vec(C)|`` (least absolute deviations by iteratively reweighted least
    squares) plus ``ridge * |vec(C) - vec(start)|^2`` (relative to the weights' sum): the start keeps
    directions the data do not pin down. ``x`` from :func:`design`, ``y``
    the ratings minus their item baseline, ``weight`` each rating's (1 / its user's query size: the
    per-user mean the evaluation averages). No ratings: the start."""
    if not len(y):
        return start.copy()
    beta0 = start.reshape(-1)
    w = weight / max(float(weight.sum()), 1e-12)
    beta = beta0.copy()
    eye = np.eye(len(beta0))
    for _ in range(iterations):
        v = w / np.maximum(np.abs(y - x @ beta), 1e-3)
        scale = float(v.sum())
        a = (x * v[:, None]).T @ x + ridge * scale * eye
        b = (x * v[:, None]).T @ y + ridge * scale * beta0
        new = np.linalg.solve(a, b)
        if np.max(np.abs(new - beta)) < 1e-6:
            beta = new
            break
        beta = new
    return beta.reshape(start.shape)


def per_user_mae(pred: np.ndarray, y: np.ndarray, task: np.ndarray, n_tasks: int) -> np.ndarray:
    """Each task's mean absolute error [n_tasks] (NaN for a task without ratings) from flat ratings of
    tasks ``task``."""
    sums = np.bincount(task, weights=np.abs(pred - y), minlength=n_tasks)
    counts = np.bincount(task, minlength=n_tasks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


MARGIN_SE = 1.0
"""How many standard errors (of the mean per-task difference) the cross-fitted MAE must lie below the
start's for the combiner to be kept: a combiner fitted to ratings the start already explains fits their
noise, and its cross-fit can still come out a hair lower."""


def clears_noise(difference: np.ndarray, margin_se: float = MARGIN_SE) -> bool:
    """Whether per-task differences (candidate minus start, lower is better; NaN: a task without
    ratings) are below 0 by more than ``margin_se`` (default :data:`MARGIN_SE`) standard errors of their
    mean."""
    d = difference[np.isfinite(difference)]
    if len(d) < 2:
        return False
    return bool(d.mean() + margin_se * d.std(ddof=1) / np.sqrt(len(d)) < 0)


def parts_design(parts: dict[str, np.ndarray]) -> np.ndarray:
    """:func:`design` of every rating of ``parts`` (see the module)."""
    return design(*(parts[k] for k in ("features", "fold", "mf", "knn")))


def fit_parts(
    parts: dict[str, np.ndarray], rows: np.ndarray, start: np.ndarray, x: np.ndarray | None = None
) -> np.ndarray:
    """:func:`fit_rating_mix` on the ratings ``rows`` of ``parts`` whose item the MF saw rated, each
    weighted 1 / its task's query size; ``x``: each rating's design row (default :func:`parts_design`)."""
    rows = rows & parts["seen"]
    x = (parts_design(parts) if x is None else x)[rows]
    counts = np.bincount(parts["task"])
    return fit_rating_mix(x, parts["y"][rows], 1.0 / counts[parts["task"][rows]], start)


def combine_parts(parts: dict[str, np.ndarray], coef: np.ndarray) -> np.ndarray:
    """The combiner's term (prediction minus the item baseline) of every rating of ``parts`` under ``coef``."""
    return parts_design(parts) @ coef.reshape(-1)


def cross_fit_predictions(
    parts: dict[str, np.ndarray], users: np.ndarray, start: np.ndarray, seed: int, x: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each rating's prediction minus its item baseline when each half of the validation ``users`` (the
    tasks' users; halves drawn from ``seed``) is predicted by a combiner fitted on the other half (items
    the MF never saw keep ``now``), and whether each rating's user is in the first half. ``x``: each
    rating's design row (default :func:`parts_design`; an experiment may add columns, ``start`` shaped
    to match)."""
    x = parts_design(parts) if x is None else x
    halves = np.random.default_rng(seed).permutation(np.unique(users))
    held = np.isin(users[parts["task"]], halves[: len(halves) // 2])
    pred = parts["now"].copy()
    for fit_on in (~held, held):
        coef = fit_parts(parts, fit_on, start, x)
        apply = ~fit_on & parts["seen"]
        pred[apply] = (x @ coef.reshape(-1))[apply]
    return pred, held


def cross_fit_task_mae(
    parts: dict[str, np.ndarray], users: np.ndarray, start: np.ndarray, seed: int, x: np.ndarray | None = None
) -> np.ndarray:
    """Each task's MAE [n_tasks] under :func:`cross_fit_predictions`: an estimate free of the fit's own
    noise, to compare with the start's (:func:`clears_noise`)."""
    pred, _ = cross_fit_predictions(parts, users, start, seed, x)
    return per_user_mae(pred, parts["y"], parts["task"], len(users))
