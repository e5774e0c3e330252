"""Evaluate onboarding strategies on new users, simulating their answers.

Each strategy gives one question order (the same for every user, as in a sign-up flow without user
features). A simulated new user walks down it and answers the items they rated in the data, until
they have given K answers; their answers become the support set, the model adapts to it and ranks
the catalogue. Reported per strategy and K: catalogue Recall@20 and nDCG@10 (relevant = the user's
other items rated at or above the threshold, as in :mod:`recsys.evaluation.task_metrics`), and how
many questions it took to collect K answers. New users come from the protocol's test split, so
nothing here was seen in training or model selection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.data.tasks import UserLog
from recsys.evaluation import metrics as M
from recsys.evaluation.protocols import QUERY_SIZE, split_protocol
from recsys.onboarding import STRATEGIES, onboarding_order

if TYPE_CHECKING:
    from recsys.data.dataset import Dataset
    from recsys.recommender import ColdStartRecommender


def simulate_answers(
    order: np.ndarray, log: UserLog, users: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(support items [n, k], support ratings [n, k], questions asked [n]) when each user answers the
    items of ``order`` they rated, until ``k`` answers. Users who cannot give ``k`` answers from
    ``order`` get -1 padding and ``questions = len(order)``."""
    n = len(users)
    size = int(max(order.max(initial=-1), log.items.max(initial=-1))) + 1
    position = np.full(size, -1, dtype=np.int64)
    position[order] = np.arange(len(order))
    rated = np.full((n, len(order)), np.nan, dtype=np.float32)  # ratings in question order
    owner, pos = _rows_of(log, users)
    asked = position[log.items[pos]]
    hit = asked >= 0
    rated[owner[hit], asked[hit]] = log.ratings[pos[hit]]
    answered = ~np.isnan(rated)
    count = np.cumsum(answered, axis=1)
    take = answered & (count <= k)
    items = np.full((n, k), -1, dtype=np.int64)
    ratings = np.zeros((n, k), dtype=np.float32)
    rows, cols = np.nonzero(take)
    slot = count[rows, cols] - 1
    items[rows, slot] = order[cols]
    ratings[rows, slot] = rated[rows, cols]
    done = count[:, -1] >= k if len(order) else np.zeros(n, dtype=bool)
    questions = np.where(done, np.argmax(count >= k, axis=1) + 1, len(order))
    return items, ratings, questions


def evaluate_onboarding(
    rec: ColdStartRecommender,
    ds: Dataset,
    *,
    protocol: str = "random",
    seed: int = 0,
    answers: tuple[int, ...] = (3, 5, 10),
    strategies: tuple[str, ...] = STRATEGIES,
    threshold: float = 4.0,
    n_boot: int = 1000,
) -> list[dict[str, Any]]:
    """One row per (strategy, K): Recall@20, nDCG@10 (mean and bootstrap interval over users), the
    mean and median number of questions asked, and how many users answered K.

    ``rec`` must be trained on this protocol's split (``recsys.workflows.train_model``); test users
    need at least K + 10 ratings, as in the evaluation protocols.
    """
    from recsys.evaluation.runner import meta_scorer

    split = split_protocol(ds, protocol, seed=seed, validation_fraction=rec.config.train.validation_fraction)
    holdout = rec.info.get("holdout") or {}
    if holdout.get("fingerprint") != split.fingerprint():
        from recsys.errors import SpecError

        raise SpecError(
            f"the model was not trained on the {protocol} split with seed {seed}: its new users would "
            "include training users (train with recsys.workflows.train_model(..., protocol, seed))"
        )
    space = rec.space
    test = pl.concat(list(split.test.values()))
    log = UserLog.from_frame(test, space.items)
    ids = log.user_ids
    score = meta_scorer(rec, ds)
    rows = []
    # every strategy orders the whole seen catalogue, so every user can eventually give K answers
    n_seen = int((space.popularity > 0).sum())
    orders = {s: onboarding_order(rec, n_seen, strategy=s, seed=seed) for s in strategies}
    for k in answers:
        users = np.nonzero(log.counts >= k + QUERY_SIZE)[0]
        for strategy, order in orders.items():
            si, sr, questions = simulate_answers(order, log, users, k)
            ok = (si >= 0).all(axis=1)
            si, sr, questions, u = si[ok], sr[ok], questions[ok], users[ok]
            _, ranks = score(si, sr, _Users(ids, u))
            exclude = np.zeros(ranks.shape, dtype=bool)
            r, c = np.nonzero(si >= 0)
            exclude[r, si[r, c]] = True
            relevant = _liked(log, u, ranks.shape[1], threshold, space.implicit) & ~exclude
            m = M.catalogue_metrics(M.top_k(ranks, 20, exclude), relevant, ~exclude, ks=(10, 20))
            row: dict[str, Any] = {"protocol": protocol, "seed": seed, "k": k, "strategy": strategy}
            row["users"] = len(u)
            for name in ("recall@20", "ndcg@10"):
                mean, lo, hi = M.bootstrap_ci(m[name], n_boot=n_boot, seed=seed)
                row[name] = {"mean": mean, "low": lo, "high": hi}
            row["questions_mean"] = float(questions.mean()) if len(u) else float("nan")
            row["questions_median"] = float(np.median(questions)) if len(u) else float("nan")
            rows.append(row)
    return rows


class _Users:
    def __init__(self, ids: pl.Series, rows: np.ndarray) -> None:
        self.ids = ids.gather(rows)


def _rows_of(log: UserLog, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner row, position in ``log``) of every interaction of ``users``, without a loop over users."""
    starts = log.indptr[users]
    lengths = log.indptr[users + 1] - starts
    owner = np.repeat(np.arange(len(users)), lengths)
    offset = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, np.repeat(starts, lengths) + offset


def _liked(log: UserLog, users: np.ndarray, n_items: int, threshold: float, implicit: bool) -> np.ndarray:
    out = np.zeros((len(users), n_items), dtype=bool)
    owner, pos = _rows_of(log, users)
    keep = np.ones(len(pos), dtype=bool) if implicit else log.ratings[pos] >= threshold
    out[owner[keep], log.items[pos[keep]]] = True
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`evaluate_onboarding` as a markdown table."""
    lines = [
        "| protocol | K answers | strategy | users | Recall@20 | nDCG@10 | questions asked (mean / median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r[m]['mean']:.4f} [{r[m]['low']:.3f}, {r[m]['high']:.3f}]" for m in ("recall@20", "ndcg@10")
        ]
        lines.append(
            f"| {r['protocol']} | {r['k']} | {r['strategy']} | {r['users']} | {cells[0]} | {cells[1]} | "
            f"{r['questions_mean']:.1f} / {r['questions_median']:.0f} |"
        )
    return "\n".join(lines)
