"""`recsys evaluate`: every method through the same protocol, tasks and metrics.

For each protocol and seed: split users (train / validation / new), tune each baseline's small grid
on the validation users, train (or reuse) the meta-learner on the same training users, then score
every new user's task for every K with every method. Per-user metrics are averaged over users with
bootstrap intervals.
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from recsys.config import RecommenderConfig
from recsys.data.dataset import Dataset
from recsys.data.protocols import (
    MELU_MAX,
    MELU_MIN,
    QUERY_SIZE,
    ProtocolSplit,
    new_user_tasks,
    split_protocol,
    task_order,
)
from recsys.data.schema import USER
from recsys.data.tasks import UserLog
from recsys.errors import DataError, SpecError
from recsys.evaluation.ablations import (
    ADDED_PATH_ABLATIONS,
    PATH_ABLATIONS,
    RANKING_PATH_BUFFERS,
    RETRAINED_ABLATIONS,
    SEED0_LABEL,
    check_ablations,
    path_mix,
    reference_of,
)
from recsys.evaluation.cells import Cell, cell_results, paired_differences
from recsys.features.encoders import EncodedTable
from recsys.features.space import FeatureSpace
from recsys.meta.scoring import score_catalogue
from recsys.metrics.task_metrics import support_arrays as _support_arrays
from recsys.metrics.task_metrics import user_metrics
from recsys.models.classical import BASELINES, Baseline, RankingBaseline
from recsys.models.scorer import Scorer, Scores
from recsys.recommender import ColdStartRecommender
from recsys.utils.progress import progress
from recsys.workflows import train_model

log = logging.getLogger(__name__)

RATING_METRICS = ("mae", "rmse")
QUERY_METRICS = ("query_ndcg@1", "query_ndcg@3", "query_ndcg@5")
CATALOGUE_METRICS = ("recall@10", "recall@20", "ndcg@10", "map@20", "hit@10")


@dataclass
class EvalSettings:
    """What `recsys evaluate` runs."""

    protocols: list[str] = field(default_factory=lambda: ["temporal", "random"])
    """Protocols to run (temporal, random, melu)."""
    shots: list[int] = field(default_factory=lambda: [1, 3, 5, 10, 20])
    """Support sizes K (ignored by melu, whose support is all but the query)."""
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    """Baselines to run, by registry name."""
    seeds: int = 3
    """Seeds (random splits, model initialisations and task draws) to average over."""
    threshold: float = 4.0
    """Catalogue relevance: items rated at or above this (every interaction for implicit feedback)."""
    melu_draws: int = 3
    """Query draws averaged in the melu protocol."""
    ablations: list[str] = field(default_factory=lambda: ["no-adaptation", "5-steps", "second-order"])
    """Meta-learner variants. Re-scoring the trained model: ``no-adaptation`` (support ignored: the
    meta-learned prior alone), ``no-trend`` (the trend prior's weight set to 0), ``no-als-path`` /
    ``no-classical-item-item`` (the added ALS / classical item-item path's weight set to 0), ``1-step`` /
    ``5-steps`` (gradient steps added at scoring time), ``item-item-only`` / ``encoder-only`` (one
    ranking path kept at its chosen weight, the other's and the added paths' set to 0). Retrained on the first seed only (to bound
    the run time): ``second-order`` / ``first-order`` (5 MAML steps in training), ``meta-sgd`` (5
    second-order steps with learned per-parameter inner rates), ``melu`` (MeLU's architecture),
    ``no-item-item``, ``no-als-init`` (random item-id initialisation), ``random-query`` (training
    tasks with a temporal support get a random query, not the latest ratings), ``global-trust`` (one
    fold-in shrinkage for every user, not conditioned on the support)."""
    tune: bool = True
    """Tune baselines' grids on validation users (else their defaults)."""
    tune_shots: int = 5
    """Support size of the validation tasks used for tuning."""
    n_boot: int = 1000
    """Bootstrap resamples for the intervals."""
    nested: bool = False
    """Model selection mode: apply each protocol again *inside* its training users and report on those
    pseudo-new users, so configs can be compared without touching the split's new users (temporal
    and random protocols only)."""


@dataclass
class Method:
    name: str
    scorer: Scorer
    """The method's :class:`~recsys.models.scorer.Scorer` (the meta-learner's is :class:`MetaScorer`)."""
    kind: str = "baseline"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def predicts_ratings(self) -> bool:
        return self.scorer.predicts_ratings


def _rescored(rec: ColdStartRecommender, ds: Dataset, change: Any) -> MetaScorer:
    """A scorer for a copy of ``rec`` whose head ``change(head)`` edits (a post-training path weight)."""
    plain = copy.deepcopy(rec)
    change(plain.learner.head)
    plain._cache = None
    return MetaScorer(plain, ds)


def _only_rank_paths(head: Any, mix: list[float]) -> None:
    """A path ablation's head: the ranking paths at ``mix``, the added classical paths off."""
    head.set_rank_mix(*mix)
    for buffer in RANKING_PATH_BUFFERS:
        head.get_buffer(buffer).zero_()


def model_choices(info: dict[str, Any]) -> dict[str, Any]:
    """What a trained model's recipe chose on its validation users (for the report): the item-item
    kind, the ranking paths' weights, the added classical item-item and ALS paths, the rating fold-in's
    weight, the MF fallback, the trend prior."""
    out: dict[str, Any] = {}
    if info.get("item_item"):
        out["item_item"] = info["item_item"]
    if info.get("rank_mix"):
        out["ranking paths"] = (
            f"support encoder x {info['rank_mix']['support_encoder']:g}, item-item x {info['rank_mix']['item_item']:g}"
        )
    if info.get("classical_item_item"):
        out["classical item-item path"] = info["classical_item_item"]["chosen"]
    if info.get("als_path"):
        out["ALS ranking path"] = info["als_path"]["chosen"]
    if info.get("fold_in_weight"):
        out["rating fold-in weight"] = info["fold_in_weight"]["weight"]
    if info.get("mf_fallback"):
        out["rating MF fallback"] = info["mf_fallback"]["chosen"]
    if info.get("rating_mix"):
        out["rating combiner"] = info["rating_mix"]["chosen"]
    if info.get("trend"):
        out["trend prior"] = info["trend"].get("chosen")
    return out


class Evaluation:
    """Runs the protocols and collects per-user metrics into cells."""

    def __init__(
        self,
        ds: Dataset,
        settings: EvalSettings,
        *,
        config: RecommenderConfig | None = None,
        model: ColdStartRecommender | None = None,
        model_name: str = "meta-learner",
    ) -> None:
        self.ds = ds
        self.s = settings
        self.config = config or (model.config if model else RecommenderConfig())
        self.model = model
        if model is not None:
            model.check_dataset(ds)  # a model trained on another feature spec fails here, clearly
        check_ablations(settings.ablations)
        self.model_name = model_name
        self.cells: dict[tuple[str, str, str, str], Cell] = {}
        self.tuning: dict[str, dict[str, Any]] = {}
        """Baseline -> ``"PROTOCOL seed N"`` -> the hyperparameters chosen on validation users."""
        self.tuning_protocols: dict[str, str] = {}
        self.model_choices: dict[str, dict[str, Any]] = {}
        """``"PROTOCOL seed N"`` -> what the meta-learner's recipe chose on its validation users."""
        """Protocol -> how the baselines' validation tasks were drawn."""
        self.timings: dict[str, float] = {}
        self.splits: dict[str, list[dict]] = {}
        self.skipped: dict[str, str] = {}
        """``protocol / scenario, K = k`` -> why no new user could be evaluated there."""
        self.n_items = 0

    # ---- methods ---------------------------------------------------------------------------------
    def _baseline_methods(
        self, train_log: UserLog, val_log: UserLog | None, n_items: int, seed: int, scale, protocol: str
    ) -> list[Method]:
        methods = []
        for name in self.s.baselines:
            if name not in BASELINES:
                raise SpecError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
            cls = BASELINES[name]
            t0 = time.perf_counter()
            params = (
                self._tune(cls, train_log, val_log, n_items, seed, scale, protocol) if self.s.tune else {}
            )
            model = cls(**params, **self._fixed_params(cls, seed)).fit(train_log, n_items)
            self.timings[f"fit {name}"] = self.timings.get(f"fit {name}", 0.0) + time.perf_counter() - t0
            methods.append(Method(name, model, "baseline", params))
        return methods

    def _fixed_params(self, cls: type[Baseline], seed: int) -> dict[str, Any]:
        """What every fit of a baseline is given: the seed, and the relevance threshold that the
        ``liked`` positives of a ranking baseline use."""
        extra: dict[str, Any] = {"seed": seed} if "seed" in _init_params(cls) else {}
        if issubclass(cls, RankingBaseline):
            extra["threshold"] = self.s.threshold
        return extra

    def tuning_tasks(self, protocol: str) -> str:
        """How baselines' validation tasks are drawn under ``protocol`` (they follow the protocol)."""
        k, q = self.s.tune_shots, QUERY_SIZE
        if protocol == "temporal":
            return f"validation users' first {k} ratings by time as support, their last {q} as query"
        return f"{k} random ratings of each validation user as support, {q} other random ones as query"

    def _tune(
        self, cls: type[Baseline], train_log, val_log, n_items, seed, scale, protocol: str
    ) -> dict[str, Any]:
        grid = cls.grid_for(train_log, self.ds.implicit)
        if not grid or val_log is None or val_log.n_users == 0:
            return {}
        tune_protocol = task_order(protocol) or "random"
        tasks = new_user_tasks(tune_protocol, val_log, self.s.tune_shots, seed=seed)
        if len(tasks) == 0:
            return {}
        best, best_params = None, {}
        keys = list(grid)
        si, sr = _support_arrays(val_log, tasks)
        for combo in itertools.product(*(grid[k] for k in keys)):
            params = dict(zip(keys, combo, strict=True))
            model = cls(**params, **self._fixed_params(cls, seed)).fit(train_log, n_items)
            m = user_metrics(
                model.score(si, sr),
                val_log,
                tasks,
                predicts_ratings=cls.predicts_ratings,
                implicit=self.ds.implicit,
                threshold=self.s.threshold,
                scale=scale,
            )
            # rating predictors are tuned on MAE, rankers on Recall@20
            value = np.nanmean(m["mae"]) if "mae" in m else -np.nanmean(m["recall@20"])
            if best is None or value < best:
                best, best_params = value, params
        key = f"{protocol}{' (nested)' if self.s.nested else ''} seed {seed}"
        self.tuning.setdefault(cls.name, {})[key] = best_params
        self.tuning_protocols[protocol] = self.tuning_tasks(tune_protocol)
        return best_params

    def _meta_methods(
        self, ds: Dataset, split: ProtocolSplit, seed: int
    ) -> tuple[list[Method], FeatureSpace]:

        rec = self.model
        holdout = (rec.info.get("holdout") or {}) if rec else {}
        if rec is None or holdout.get("fingerprint") != split.fingerprint():
            if rec is not None:
                log.info(
                    "the given model was not trained on this split (%s seed %d): training one",
                    split.protocol,
                    seed,
                )
            t0 = time.perf_counter()
            rec, _ = train_model(ds, self.config, protocol=split.protocol, seed=seed)
            self.timings["train meta-learner"] = (
                self.timings.get("train meta-learner", 0.0) + time.perf_counter() - t0
            )
        key = f"{split.protocol}{' (nested)' if self.s.nested else ''} seed {seed}"
        self.model_choices[key] = model_choices(rec.info)
        variants = [Method(self.model_name, MetaScorer(rec, ds), "meta")]
        name = self.model_name
        if "no-adaptation" in self.s.ablations:  # the meta-learned prior alone: the support is ignored
            variants.append(
                Method(f"{name} (no adaptation)", MetaScorer(rec, ds, ignore_support=True), "ablation")
            )
        # re-scored variants: every seed contributes a row, so a variant pools the same users as the
        # default; where validation already chose its setting it scores exactly as the default
        head = rec.learner.head
        if "no-trend" in self.s.ablations and head.capabilities.trend_prior:
            scorer = variants[0].scorer
            if float(head.trend_weight) != 0:
                scorer = _rescored(rec, ds, lambda h: h.trend_weight.zero_())
            variants.append(Method(f"{name} (without trend prior)", scorer, "ablation"))
        for label, (
            title,
            buffer,
        ) in ADDED_PATH_ABLATIONS.items():  # the classical paths added after training
            if label in self.s.ablations and head.capabilities.path_weights:
                scorer = variants[0].scorer
                if head.get_buffer(buffer).any():
                    scorer = _rescored(rec, ds, lambda h, b=buffer: h.get_buffer(b).zero_())
                variants.append(Method(f"{name} ({title})", scorer, "ablation"))
        for label, (title, keep) in PATH_ABLATIONS.items():
            if label in self.s.ablations and head.capabilities.path_weights and head.item_item_active:
                mix = path_mix(head.rank_mix.tolist(), keep)
                scorer = _rescored(rec, ds, lambda h, mix=mix: _only_rank_paths(h, mix))
                variants.append(Method(f"{name} ({title})", scorer, "ablation"))
        for label, steps in (("1-step", 1), ("5-steps", 5)):
            if label in self.s.ablations and steps != rec.config.meta.inner_steps:
                variants.append(
                    Method(
                        f"{name} (+{steps} gradient step{'s' * (steps > 1)} at scoring)",
                        MetaScorer(rec, ds, steps),
                        "ablation",
                    )
                )
        if seed == 0 and self.s.seeds > 1 and any(key in self.s.ablations for key in RETRAINED_ABLATIONS):
            # retrained variants run on the first seed only: the default's own seed-0 row is their
            # like-for-like reference (a seed's new users can be easier or harder than the average)
            variants.append(Method(f"{name} ({SEED0_LABEL})", variants[0].scorer, "ablation"))
        for key, (label, changes) in RETRAINED_ABLATIONS.items():
            if key not in self.s.ablations or seed != 0:
                continue  # retrained variants run on the first seed only, to bound the run time
            t0 = time.perf_counter()
            variant, _ = train_model(ds, rec.config.replace(**changes), protocol=split.protocol, seed=seed)
            self.timings["train ablations"] = (
                self.timings.get("train ablations", 0.0) + time.perf_counter() - t0
            )
            variants.append(Method(f"{name} ({label})", MetaScorer(variant, ds), "ablation"))
        return variants, rec.space

    # ---- run -------------------------------------------------------------------------------------
    def run(self) -> Evaluation:
        for protocol in self.s.protocols:
            for seed in range(self.s.seeds):
                self._run_one(protocol, seed)
        if not self.cells:
            why = "; ".join(f"{where}: {reason}" for where, reason in self.skipped.items())
            raise DataError(f"no new user could be evaluated at any support size K ({why})")
        return self

    def _split(self, protocol: str, seed: int) -> tuple[Dataset, ProtocolSplit]:
        """The dataset and split to run: the protocol's own, or (``nested``) the protocol applied again
        to the split's training interactions, whose new users are then pseudo-new training users."""
        if self.s.nested and protocol not in ("temporal", "random"):
            raise SpecError(f"nested evaluation supports the temporal and random protocols, not {protocol}")
        fraction = self.config.train.validation_fraction
        split = split_protocol(self.ds, protocol, seed=seed, validation_fraction=fraction)
        if not self.s.nested:
            return self.ds, split
        inner = replace(self.ds, interactions=split.train)
        return inner, split_protocol(inner, protocol, seed=seed, validation_fraction=fraction)

    def _run_one(self, protocol: str, seed: int) -> None:
        t0 = time.perf_counter()
        ds, split = self._split(protocol, seed)
        self.splits.setdefault(protocol, []).append(split.describe() | {"nested": self.s.nested})
        methods, space = self._meta_methods(ds, split, seed)
        self.n_items = space.n_items
        val = split.validation_users.implode()
        train_log = UserLog.from_frame(split.train.filter(~pl.col(USER).is_in(val)), space.items)
        val_log = UserLog.from_frame(split.train.filter(pl.col(USER).is_in(val)), space.items)
        methods = (
            self._baseline_methods(train_log, val_log, space.n_items, seed, space.rating_scale, protocol)
            + methods
        )
        scale = space.rating_scale
        for scenario, frame in split.test.items():
            test_log = UserLog.from_frame(frame, space.items)
            user_rows = np.arange(test_log.n_users)
            shots: list[int | None] = [None] if protocol == "melu" else list(self.s.shots)
            draws = self.s.melu_draws if protocol == "melu" else 1
            for k in shots:
                for draw in range(draws):
                    tasks = new_user_tasks(protocol, test_log, k, seed=seed, draw=draw)
                    if len(tasks) == 0:
                        self._skip(protocol, scenario, k, test_log)
                        continue
                    si, sr = _support_arrays(test_log, tasks)
                    ur = user_rows[tasks.users]
                    for method in progress(methods, desc=f"{protocol} s{seed} {scenario} K={k or 'all'}"):
                        t1 = time.perf_counter()
                        scores = method.scorer.score(si, sr, UserRef(test_log, ur))
                        self.timings[f"score {method.name}"] = self.timings.get(
                            f"score {method.name}", 0.0
                        ) + (time.perf_counter() - t1)
                        m = user_metrics(
                            scores,
                            test_log,
                            tasks,
                            predicts_ratings=method.predicts_ratings,
                            implicit=self.ds.implicit,
                            threshold=self.s.threshold,
                            scale=scale,
                        )
                        key = (protocol, scenario, "all" if k is None else str(k), method.name)
                        ids = test_log.user_ids.gather(tasks.users).to_numpy()
                        self.cells.setdefault(key, Cell()).add(m, ids, seed)
        self.timings[f"{protocol} seed {seed}"] = time.perf_counter() - t0
        # every seed's methods: rows retrained on the first seed only are not among the later seeds'
        self.methods_meta = getattr(self, "methods_meta", {}) | {
            m.name: {"kind": m.kind, "predicts_ratings": m.predicts_ratings} for m in methods
        }

    def _skip(self, protocol: str, scenario: str, k: int | None, test_log: UserLog) -> None:
        where = protocol if scenario == "new_users" else f"{protocol} / {scenario}"
        key = f"{where}, K = {'all' if k is None else k}"
        if key in self.skipped:
            return
        most = int(test_log.counts.max()) if test_log.n_users else 0
        if k is None:
            why = f"no new user has {MELU_MIN} to {MELU_MAX} ratings"
        else:
            why = (
                f"no new user has the K + {QUERY_SIZE} = {k + QUERY_SIZE} ratings a task needs "
                f"({test_log.n_users} new users, the most ratings any has is {most})"
            )
        self.skipped[key] = why
        log.warning("skipped %s: %s", key, why)

    # ---- summary ---------------------------------------------------------------------------------
    def results(self) -> list[dict[str, Any]]:
        return cell_results(self.cells, self.n_items, self.s.n_boot)

    def paired(self) -> list[dict[str, Any]]:
        """The meta-learner minus each baseline, paired over the users both were tested on."""
        meta = getattr(self, "methods_meta", {})
        baselines = [name for name, m in meta.items() if m["kind"] == "baseline"]
        return paired_differences(self.cells, self.model_name, baselines, self.s.n_boot)

    def paired_ablations(self) -> list[dict[str, Any]]:
        """Each ablation row minus its reference (``variant`` minus ``reference``), paired over the users
        both were tested on: the default, or for variants retrained on the first seed only, the
        default's own first-seed row where one exists (the same users, the same training seed)."""
        meta = getattr(self, "methods_meta", {})
        rows = []
        for name, m in meta.items():
            if m["kind"] != "ablation" or name == f"{self.model_name} ({SEED0_LABEL})":
                continue
            ref = reference_of(name, meta, self.model_name)
            for d in paired_differences(self.cells, name, [ref], self.s.n_boot):
                rows.append({"variant": name, "reference": d.pop("baseline")} | d)
        return rows


class UserRef:
    """Which test users a scorer is asked about (for user features)."""

    def __init__(self, log: UserLog, rows: np.ndarray) -> None:
        self.log, self.rows = log, rows

    @property
    def ids(self) -> pl.Series:
        return self.log.user_ids.gather(self.rows)


def _init_params(cls: type) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


class MetaScorer:
    """The meta-learner's :class:`~recsys.models.scorer.Scorer` for evaluation tasks: a trained
    recommender's predicted ratings and ranking scores; user features come from ``ds`` (users given as a
    :class:`UserRef`; none given: unknown features); ``ignore_support`` scores with the meta-learned
    prior alone."""

    predicts_ratings = True

    def __init__(
        self,
        rec: ColdStartRecommender,
        ds: Dataset,
        steps: int | None = None,
        *,
        ignore_support: bool = False,
    ) -> None:
        self.rec, self.features, self.steps, self.ignore_support = rec, ds.users, steps, ignore_support

    def score(self, support_items: np.ndarray, support_ratings: np.ndarray, users: Any = None) -> Scores:
        space = self.rec.space
        if users is not None and self.features is not None and space.user_encoder.fields:
            frame = pl.DataFrame({USER: users.ids}).join(
                self.features, on=USER, how="left", maintain_order="left"
            )
            encoded: EncodedTable = space.user_encoder.encode(frame)
        else:
            encoded = space.user_encoder.encode_unknown(len(support_items))
        if self.ignore_support:
            support_items = np.full_like(support_items, -1)
        return score_catalogue(
            self.rec.learner,
            space,
            support_items,
            support_ratings,
            encoded,
            cache=self.rec._catalogue_cache(),
            steps=self.steps,
        )
