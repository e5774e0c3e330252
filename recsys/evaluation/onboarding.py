"""Evaluate onboarding strategies on new users, simulating their answers.

Each strategy gives one question order (the same for every user, as in a sign-up flow without user
features). Every new user's ratings are split once, at random, into an *answerable* half and a
*held-out* half. A simulated user walks down the question order and answers the items of their
answerable half, until they have given K answers; the answers become the support set, the model
adapts to it and ranks the catalogue without the answerable half. Relevant = the held-out items
rated at or above the threshold, so every strategy is scored against the same items: without the
split, a strategy that asks about popular items would also remove the easiest hits from the target
and look worse than it is. Reported per strategy and K: catalogue Recall@20 and nDCG@10 and how
many questions it took to collect K answers. New users come from the protocol's test split, so
nothing here was seen in training or model selection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.data.protocols import QUERY_SIZE, split_protocol
from recsys.data.tasks import UserLog
from recsys.errors import SpecError
from recsys.evaluation.runner import MetaScorer, UserRef
from recsys.metrics import core as M
from recsys.metrics.topk import top_n
from recsys.onboarding import STRATEGIES, onboarding_order

if TYPE_CHECKING:
    from recsys.data.dataset import Dataset
    from recsys.recommender import ColdStartRecommender


def simulate_answers(
    order: np.ndarray, log: UserLog, users: np.ndarray, k: int, answerable: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(support items [n, k], support ratings [n, k], questions asked [n]) when each user answers the
    items of ``order`` they rated, until ``k`` answers. ``answerable``: bool per interaction of
    ``log``, the ratings a user may give (default all). Users who cannot give ``k`` answers from
    ``order`` get -1 padding and ``questions = len(order)``."""
    n = len(users)
    size = int(max(order.max(initial=-1), log.items.max(initial=-1))) + 1
    position = np.full(size, -1, dtype=np.int64)
    position[order] = np.arange(len(order))
    rated = np.full((n, len(order)), np.nan, dtype=np.float32)  # ratings in question order
    owner, pos = log.positions(users)
    asked = position[log.items[pos]]
    hit = asked >= 0
    if answerable is not None:
        hit &= answerable[pos]
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
    questions: tuple[int, ...] = (10, 25, 50),
    strategies: tuple[str, ...] = STRATEGIES,
    threshold: float = 4.0,
    n_boot: int = 1000,
) -> list[dict[str, Any]]:
    """One row per (mode, budget, strategy): Recall@20, nDCG@10 (mean and bootstrap interval over
    users), questions asked and answers given (means; median questions).

    Two budgets: ``answers`` (users answer until they gave K ratings, however many questions it takes)
    and ``questions`` (users see the first N questions and answer those they can; none answered is
    pure cold start). ``rec`` must be trained on this protocol's split
    (``recsys.workflows.train_model``); new users need 2 x 10 ratings, so that the held-out half holds
    at least 10.

    Long on purpose: the simulation loop (strategies x budgets x seeds) and its bookkeeping are kept together
    so the order of the seeded draws is visible in one place."""

    split = split_protocol(ds, protocol, seed=seed, validation_fraction=rec.config.train.validation_fraction)
    holdout = rec.info.get("holdout") or {}
    if holdout.get("fingerprint") != split.fingerprint():
        raise SpecError(
            f"the model was not trained on the {protocol} split with seed {seed}: its new users would "
            "include training users (train with recsys.workflows.train_model(..., protocol, seed))"
        )
    space = rec.space
    test = pl.concat(list(split.test.values()))
    log = UserLog.from_frame(test, space.items)
    scorer = MetaScorer(rec, ds)
    # one random split of every new user's ratings: answerable half / held-out half (the target)
    rng = np.random.default_rng([seed, 97])
    owner = log.user_of
    shuffled = np.lexsort((rng.random(len(owner)), owner))  # a random order within each user
    rank_in_user = np.empty(len(owner), dtype=np.int64)
    rank_in_user[shuffled] = np.arange(len(owner)) - log.indptr[owner]  # owner is sorted
    answerable = rank_in_user < log.counts[owner] // 2
    # every strategy orders the whole seen catalogue, so the same users can give K answers under each
    n_seen = int((space.popularity > 0).sum())
    orders = {s: onboarding_order(rec, n_seen, strategy=s, seed=seed) for s in strategies}
    eligible = np.nonzero(log.counts >= 2 * QUERY_SIZE)[0]
    rows = []
    for mode, budgets in (("answers", answers), ("questions", questions)):
        for k in budgets:
            if mode == "answers":  # walk the whole order until K answers
                results = {s: simulate_answers(o, log, eligible, k, answerable) for s, o in orders.items()}
                ok = np.logical_and.reduce([(si >= 0).all(axis=1) for si, _, _ in results.values()])
            else:  # the first N questions, answered where the user can
                results = {
                    s: simulate_answers(o[:k], log, eligible, k, answerable) for s, o in orders.items()
                }
                ok = np.ones(len(eligible), dtype=bool)
            u = eligible[ok]
            known = np.zeros((len(u), space.n_items), dtype=bool)  # the answerable half: not ranked
            o, p = log.positions(u)
            keep = answerable[p]
            known[o[keep], log.items[p[keep]]] = True
            relevant = _liked(log, u, space.n_items, threshold, space.implicit) & ~known
            for strategy, (si, sr, asked) in results.items():
                si, sr, asked = si[ok], sr[ok], asked[ok]
                ranks = scorer.score(si, sr, UserRef(log, u)).ranking
                top, _ = top_n(ranks, 20, known)
                m = M.catalogue_metrics(top, relevant, ~known, ks=(10, 20))
                row: dict[str, Any] = {
                    "protocol": protocol,
                    "seed": seed,
                    "mode": mode,
                    "k": k,
                    "strategy": strategy,
                    "users": len(u),
                }
                for name in ("recall@20", "ndcg@10"):
                    mean, lo, hi = M.bootstrap_ci(m[name], n_boot=n_boot, seed=seed)
                    row[name] = {"mean": mean, "low": lo, "high": hi}
                nan = float("nan")
                row["questions_mean"] = float(asked.mean()) if len(u) else nan
                row["questions_median"] = float(np.median(asked)) if len(u) else nan
                row["answers_mean"] = float((si >= 0).sum(1).mean()) if len(u) else nan
                rows.append(row)
    return rows


def _liked(log: UserLog, users: np.ndarray, n_items: int, threshold: float, implicit: bool) -> np.ndarray:
    out = np.zeros((len(users), n_items), dtype=bool)
    owner, pos = log.positions(users)
    keep = np.ones(len(pos), dtype=bool) if implicit else log.ratings[pos] >= threshold
    out[owner[keep], log.items[pos[keep]]] = True
    return out


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several seeds averaged per (protocol, mode, budget, strategy): the mean over seeds of
    each figure, and for Recall@20 / nDCG@10 the lowest and highest seed mean."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["protocol"], r["mode"], r["k"], r["strategy"]), []).append(r)
    out = []
    for (protocol, mode, k, strategy), rs in groups.items():
        row: dict[str, Any] = {"protocol": protocol, "mode": mode, "k": k, "strategy": strategy}
        row["seeds"] = len(rs)
        row["users"] = int(np.mean([r["users"] for r in rs]))
        for name in ("recall@20", "ndcg@10"):
            means = [r[name]["mean"] for r in rs]
            row[name] = {"mean": float(np.mean(means)), "low": min(means), "high": max(means)}
        for name in ("questions_mean", "questions_median", "answers_mean"):
            row[name] = float(np.mean([r[name] for r in rs]))
        out.append(row)
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`evaluate_onboarding` or :func:`summarise` as a markdown table (the bracket is the
    bootstrap interval of one seed, or the range of the seed means of a summary)."""
    lines = [
        "| protocol | budget | strategy | users | Recall@20 | nDCG@10 | questions asked (mean / median) "
        "| answers (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r[m]['mean']:.4f} [{r[m]['low']:.3f}, {r[m]['high']:.3f}]" for m in ("recall@20", "ndcg@10")
        ]
        budget = f"{r['k']} answers" if r["mode"] == "answers" else f"{r['k']} questions"
        lines.append(
            f"| {r['protocol']} | {budget} | {r['strategy']} | {r['users']} | {cells[0]} | {cells[1]} | "
            f"{r['questions_mean']:.1f} / {r['questions_median']:.0f} | {r['answers_mean']:.1f} |"
        )
    return "\n".join(lines)
