"""Validation during meta-training: the fixed validation tasks and their rating and catalogue metrics."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator

import numpy as np
import torch

from recsys.config import TrainConfig
from recsys.data.tasks import TaskSet, UserLog, sample_tasks
from recsys.features.space import FeatureSpace
from recsys.meta.maml import MetaLearner
from recsys.meta.scoring import CatalogueCache, predict_tasks, score_catalogue
from recsys.metrics import core as M
from recsys.metrics.task_metrics import catalogue_truth, support_arrays, user_metrics
from recsys.metrics.topk import exclusion_entries, top_n_masked
from recsys.models.scorer import Scores


def validation_tasks(log: UserLog, cfg: TrainConfig, rng: np.random.Generator) -> TaskSet:
    """Fixed validation tasks: a support drawn from ``rng`` (``validation_support`` ratings, or sizes
    drawn like the training supports) and a query of up to ``validation_query`` others, for every
    validation user with enough ratings: the smallest support plus a query of at least 5 (a user with
    fewer would get an empty support, and a task with no support is not one of the K-shot tasks being
    selected for). A drawn support larger than a user's ratings allow shrinks so that the query keeps
    5. Where no validation user has that many (a log of very short histories), every user with at least
    one rating beyond the smallest support gives a task whose query keeps at least 1 rating; no task
    (an empty set) where none has even that. Training draws them from the ``validation-tasks`` stream
    of :class:`recsys.utils.seeds.Seeds` (see :func:`recsys.meta.trainer.MetaTrainer.fit`)."""
    fixed = cfg.validation_support
    smallest = max(fixed if fixed is not None else cfg.support_min, 1)
    min_query = min(cfg.validation_query, 5)
    eligible = np.nonzero(log.counts >= smallest + min_query)[0]
    if len(eligible) == 0:  # short histories only: keep the support, shrink the query
        min_query = 1
        eligible = np.nonzero(log.counts >= smallest + 1)[0]
    return sample_tasks(
        log,
        eligible,
        rng,
        support_size=fixed if fixed is not None else (cfg.support_min, cfg.support_max),
        query_size=cfg.validation_query,
        support_order=cfg.support_order if cfg.validation_order == "auto" else cfg.validation_order,
        query_order=cfg.query_order,
        log_uniform=cfg.support_distribution == "log-uniform",
        min_query=min_query,
    )


def evaluate_rating_tasks(
    learner: MetaLearner,
    space: FeatureSpace,
    log: UserLog,
    tasks: TaskSet,
    *,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    catalogue: bool = False,
    threshold: float | None = 4.0,
    ignore_support: bool = False,
) -> dict[str, float]:
    """Mean per-user MAE, RMSE and query nDCG@3 of adapted predictions on fixed tasks; with
    ``catalogue=True`` also catalogue Recall@20 and nDCG@10 (support excluded)."""
    out: dict[str, float] = {}
    if not space.implicit:
        preds = predict_tasks(
            learner, space, log, tasks, device=device, steps=steps, ignore_support=ignore_support
        )
        mask = tasks.query >= 0
        target = np.where(mask, log.ratings[np.maximum(tasks.query, 0)], 0.0)
        out |= {
            "mae": float(np.nanmean(M.mae(preds, target, mask))),
            "rmse": float(np.nanmean(M.rmse(preds, target, mask))),
            "ndcg@3": float(np.nanmean(M.query_ndcg(preds, target, mask, 3))),
        }
    if catalogue or space.implicit:  # a chunk of users at a time: bounded memory on large catalogues
        cache = CatalogueCache(learner, space, torch.device(device))  # the catalogue's side, once
        kw = {"device": device, "steps": steps, "ignore_support": ignore_support, "cache": cache}

        def score(chunk: TaskSet) -> list[np.ndarray]:
            return [catalogue_scores(learner, space, log, chunk, **kw)]

        out |= catalogue_values(
            score, {0: lambda paths, out: out.copy_(paths[0])}, space, log, tasks, threshold
        )[0]
    return out


def catalogue_scores(
    learner: MetaLearner,
    space: FeatureSpace,
    log: UserLog,
    tasks: TaskSet,
    *,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    ignore_support: bool = False,
    cache: CatalogueCache | None = None,
) -> np.ndarray:
    """Catalogue ranking scores [n_tasks, n_items] of each task's user adapted to its support
    (``ignore_support``: scored as if the support were empty; the metrics still exclude it). ``cache``:
    the catalogue's item side under the head as it is (:class:`~recsys.meta.scoring.CatalogueCache`),
    to share between the chunks of one scoring pass; made here when None."""

    si, sr = support_arrays(log, tasks)
    if ignore_support:
        si, sr = si[:, :0], sr[:, :0]
    rows = space.user_rows(log.user_ids.gather(tasks.users))
    return score_catalogue(
        learner,
        space,
        si,
        sr,
        space.user_table.gather(rows),
        cache=cache,
        device=device,
        steps=steps,
        ratings=False,
    ).ranking


def catalogue_quality(
    scores: np.ndarray, space: FeatureSpace, log: UserLog, tasks: TaskSet, threshold: float | None
) -> dict[str, float]:
    """Mean catalogue Recall@20 and nDCG@10 of ranking ``scores`` (support excluded); relevant = the
    user's other items rated at or above ``threshold`` (every interaction for implicit feedback), as the
    evaluation's :func:`~recsys.metrics.task_metrics.user_metrics` computes them: the reference
    :func:`catalogue_values` matches."""
    m = user_metrics(
        Scores.of_ranking(scores),
        log,
        tasks,
        predicts_ratings=False,
        implicit=space.implicit,
        threshold=threshold if threshold is not None else -np.inf,
        scale=space.rating_scale,
    )
    return {"recall@20": float(np.nanmean(m["recall@20"])), "cat_ndcg@10": float(np.nanmean(m["ndcg@10"]))}


CATALOGUE_CHUNK_VALUES = 2**25
"""The most catalogue scores of one path :func:`catalogue_values` holds at once (32M float32: 128 MB): the
validation users go in chunks, so 16k validation users of a 62k-item catalogue never take a [users,
n_items] array (4 GB a path)."""


def task_chunks(tasks: TaskSet, n_items: int) -> Iterator[TaskSet]:
    """``tasks`` in consecutive chunks of at most :data:`CATALOGUE_CHUNK_VALUES` // ``n_items`` tasks."""
    step = max(1, CATALOGUE_CHUNK_VALUES // max(1, n_items))
    for start in range(0, len(tasks), step):
        yield tasks.take(np.arange(start, min(len(tasks), start + step)))


Combine = Callable[[list[torch.Tensor], torch.Tensor], object]
"""A candidate ranking of :func:`catalogue_values`: ``combine(paths, out)`` writes the candidate's scores
of a chunk of tasks into ``out`` (float32 [chunk, n_items]) from the chunk's path scores (float32
tensors of the same shape, read only), e.g. ``torch.add(paths[0], prior, alpha=w, out=out)``."""


def catalogue_values(
    score: Callable[[TaskSet], list[np.ndarray]],
    candidates: dict[Hashable, Combine],
    space: FeatureSpace,
    log: UserLog,
    tasks: TaskSet,
    threshold: float | None,
) -> dict[Hashable, dict[str, float]]:
    """:func:`catalogue_quality` of each candidate ranking, a chunk of tasks at a time (:func:`task_chunks`):
    ``score(chunk)`` gives the chunk's scores of each path the candidates read (scored once a chunk),
    ``candidates[key](paths, out)`` writes that candidate's scores from them (:data:`Combine`). Means
    over all tasks, as at once; :func:`catalogue_task_values` gives each task's."""
    per = catalogue_task_values(score, candidates, space, log, tasks, threshold)
    return {key: {name: float(np.nanmean(v)) for name, v in values.items()} for key, values in per.items()}


def catalogue_task_values(
    score: Callable[[TaskSet], list[np.ndarray]],
    candidates: dict[Hashable, Combine],
    space: FeatureSpace,
    log: UserLog,
    tasks: TaskSet,
    threshold: float | None,
) -> dict[Hashable, dict[str, np.ndarray]]:
    """Each task's catalogue Recall@20 and nDCG@10 ([n_tasks], NaN for a task without relevant items)
    under each candidate ranking (see :func:`catalogue_values`).

    What the candidates share is made once a chunk: the excluded and relevant items, and one scratch
    array every candidate writes into, masks in place and ranks (no copy, no fresh [chunk, n_items]
    array per candidate: on 16k validation users of a 62k-item catalogue a candidate cost ~0.4 s a chunk
    of 541 users that way, most of it page faults and copies)."""
    per: dict[Hashable, tuple[list[np.ndarray], list[np.ndarray]]] = {key: ([], []) for key in candidates}
    threshold = threshold if threshold is not None else -np.inf
    scratch = torch.empty(0)
    for chunk in task_chunks(tasks, space.n_items):
        paths = [torch.from_numpy(np.asarray(p, dtype=np.float32)) for p in score(chunk)]
        exclude, relevant = catalogue_truth(
            log, chunk, space.n_items, implicit=space.implicit, threshold=threshold
        )
        candidates_mask = ~exclude
        excluded = exclusion_entries(support_arrays(log, chunk)[0])
        if scratch.shape[0] < len(chunk):
            scratch = torch.empty(len(chunk), space.n_items)
        out = scratch[: len(chunk)]
        for key, combine in candidates.items():
            combine(paths, out)
            ranked = out.numpy()
            ranked[excluded] = -np.inf
            m = M.catalogue_metrics(top_n_masked(ranked, 20), relevant, candidates_mask, ks=(10, 20))
            per[key][0].append(m["recall@20"])
            per[key][1].append(m["ndcg@10"])
    empty = np.zeros(0)
    return {
        key: {
            "recall@20": np.concatenate(recall) if recall else empty,
            "cat_ndcg@10": np.concatenate(ndcg) if ndcg else empty,
        }
        for key, (recall, ndcg) in per.items()
    }
