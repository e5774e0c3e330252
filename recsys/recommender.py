"""The public API: :class:`ColdStartRecommender`.

.. code-block:: python

    from recsys import ColdStartRecommender
    rec = ColdStartRecommender()                       # or ColdStartRecommender(config) / .load(path)
    rec.fit(interactions, users=users, items=items)    # pandas or polars frames, canonical schema
    rec.save("model/")
    rec.recommend({50: 5.0, 181: 4.0, 1: 3.0}, n=10)   # [(item_id, score), ...]
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys import __version__
from recsys.config import RecommenderConfig
from recsys.data.dataset import Dataset
from recsys.data.schema import ITEM, RATING, USER
from recsys.data.spec import FieldKind, FieldSpec
from recsys.data.tasks import UserLog
from recsys.errors import (
    FeatureMismatchError,
    ModelFileError,
    RecsysError,
    ScoringInputError,
    UnknownItemError,
)
from recsys.features.space import FeatureSpace, coerce_ids
from recsys.meta.maml import MetaLearner
from recsys.meta.scoring import CatalogueCache, clamp_to_scale, score_catalogue
from recsys.meta.trainer import MetaTrainer, evaluate_rating_tasks, validation_tasks
from recsys.models.network import ColdStartNet
from recsys.utils.checkpoint import load_tensors, save_tensors
from recsys.utils.io import atomic_write_json, sha256_file

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_FILES = ("config.json", "features.json", "model.safetensors", "history.json")


def to_polars(frame: Any) -> pl.DataFrame | None:
    """Accept polars or pandas frames (pandas only at the edges)."""
    if frame is None or isinstance(frame, pl.DataFrame):
        return frame
    try:
        import pandas as pd

        if isinstance(frame, pd.DataFrame):
            return pl.from_pandas(frame)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")


def infer_fields(frame: pl.DataFrame, key: str) -> list[FieldSpec]:
    """Field kinds from column types: lists -> multi, strings -> categorical, numbers -> numeric."""
    out = []
    for name, dtype in frame.schema.items():
        if name == key:
            continue
        if isinstance(dtype, pl.List):
            out.append(FieldSpec(name, FieldKind.MULTI))
        elif dtype.is_numeric():
            out.append(FieldSpec(name, FieldKind.NUMERIC))
        else:
            out.append(FieldSpec(name, FieldKind.CATEGORICAL))
    return out


@dataclass
class FitSummary:
    """Validation-user figures printed at the end of training."""

    validation_users: int
    support_size: int | None
    inner_steps: int
    mae_adapted: float
    mae_no_adaptation: float
    mae_item_mean: float
    rmse_adapted: float
    ndcg3_adapted: float
    best_epoch: int
    epochs_run: int
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"validation users: {self.validation_users} (support "
            + (f"{self.support_size} ratings" if self.support_size else "sizes drawn as in training")
            + ", query up to 10)",
            f"  MAE adapted to the support           {self.mae_adapted:.4f}",
            f"  MAE no adaptation (support ignored)   {self.mae_no_adaptation:.4f}",
            f"  MAE item mean                         {self.mae_item_mean:.4f}",
            f"best epoch {self.best_epoch} of {self.epochs_run}, {self.seconds:.0f} s",
        ]


class ColdStartRecommender:
    """Meta-learned cold-start recommender: adapt to a new user's few ratings, score the catalogue."""

    def __init__(self, config: RecommenderConfig | dict | None = None, **overrides: Any) -> None:
        if isinstance(config, dict) or config is None:
            config = RecommenderConfig.from_dict(config)
        self.config = config.override(**overrides) if overrides else config
        self.space: FeatureSpace | None = None
        self.learner: MetaLearner | None = None
        self.history: list[dict[str, float]] = []
        self.summary: FitSummary | None = None
        self.info: dict[str, Any] = {}
        self._cache: CatalogueCache | None = None

    # ---- training ------------------------------------------------------------------------------
    def fit(
        self,
        interactions: Any,
        users: Any = None,
        items: Any = None,
        *,
        user_fields: list[FieldSpec] | None = None,
        item_fields: list[FieldSpec] | None = None,
        title_field: str | None = None,
        rating_scale: tuple[float, float] | None = None,
        validation_users: Sequence | pl.Series | None = None,
        checkpoint: str | Path | None = None,
        resume: bool = False,
        callbacks: list | None = None,
    ) -> ColdStartRecommender:
        """Meta-train on an interaction log (one task per user).

        ``validation_users`` are held out of training for model selection (default: a seeded random
        ``train.validation_fraction`` of the users). ``checkpoint`` is written atomically during
        training; with ``resume=True`` training continues from it.
        """
        t0 = time.perf_counter()
        cfg = self.config
        inter = to_polars(interactions)
        users = to_polars(users)
        items = to_polars(items)
        if inter is None or inter.height == 0:
            raise ScoringInputError("no interactions to train on")
        for col in (USER, ITEM):
            if col not in inter.columns:
                raise FeatureMismatchError(f"interactions need a '{col}' column; got {inter.columns}")
        implicit = RATING not in inter.columns
        if implicit:  # no ratings: train the ranking objective alone, every interaction a positive
            cfg = self.config = cfg.override(
                **{
                    "meta.rating_weight": 0.0,
                    "meta.rank_threshold": None,
                    "meta.rank_weight": cfg.meta.rank_weight or 1.0,
                }
            )
        if users is not None and user_fields is None:
            user_fields = infer_fields(users, USER)
        if items is not None and item_fields is None:
            item_fields = infer_fields(items, ITEM)
        if not cfg.model.use_user_features:
            user_fields = []
        if not cfg.model.use_item_features:
            item_fields = []
        if rating_scale is None and not implicit:
            rating_scale = (float(inter[RATING].min()), float(inter[RATING].max()))

        all_users = inter[USER].unique().sort()
        if validation_users is None:
            rng = np.random.default_rng([cfg.train.seed, 7])
            n_val = round(cfg.train.validation_fraction * len(all_users))
            validation_users = all_users.gather(np.sort(rng.permutation(len(all_users))[:n_val]))
        val_ids = pl.Series(
            list(validation_users) if not isinstance(validation_users, pl.Series) else validation_users
        )
        val_ids = coerce_ids(val_ids, inter[USER].dtype)
        is_val = inter[USER].is_in(val_ids.implode())
        train_inter, val_inter = inter.filter(~is_val), inter.filter(is_val)

        space = FeatureSpace.fit(
            train_inter,
            users=users,
            items=items,
            user_fields=user_fields,
            item_fields=item_fields,
            use_item_id=cfg.model.use_item_id,
            item_id_min_count=cfg.model.item_id_min_count,
            title_field=title_field,
            rating_scale=rating_scale,
            implicit=implicit,
        )
        train_log = UserLog.from_frame(train_inter, space.items)
        val_log = UserLog.from_frame(val_inter, space.items) if val_inter.height else None
        rating_mean = float(train_log.ratings.mean()) if len(train_log.ratings) else 0.0
        self._build(space, rating_mean)
        self.info = {
            "rating_mean": rating_mean,
            "train_users": train_log.n_users,
            "validation_users": val_log.n_users if val_log else 0,
            "train_interactions": len(train_log.items),
        }
        head = self.learner.head
        if hasattr(head, "set_item_offsets") and not implicit:
            sums = np.bincount(train_log.items, weights=train_log.ratings, minlength=space.n_items)
            counts = np.bincount(train_log.items, minlength=space.n_items)
            damped = (sums + 5.0 * rating_mean) / (counts + 5.0) - rating_mean
            head.set_item_offsets(torch.from_numpy(damped.astype(np.float32)))
        if getattr(head, "uses_item_item", False):
            from recsys.models.item_item import fit_item_item

            matrix, folds, lam = fit_item_item(
                train_log,
                val_log,
                space.n_items,
                threshold=cfg.meta.rank_threshold,
                implicit=implicit,
                seed=cfg.train.seed,
            )
            head.set_item_item(torch.from_numpy(matrix), torch.from_numpy(folds))
            self.info["item_item_lambda"] = lam
        trainer = MetaTrainer(
            self.learner,
            space,
            cfg.train,
            checkpoint=checkpoint,
            checkpoint_meta={"config": cfg.to_dict(), "features": space.to_json(), "info": self.info},
            checkpoint_tensors={f"features.{k}": torch.from_numpy(v) for k, v in space.arrays().items()},
            on_epoch_end=callbacks,
        )
        state = trainer.fit(train_log, val_log, resume_from=checkpoint if resume else None)
        self.history = state.history
        self.learner.to("cpu")
        self._cache = None
        if val_log is not None and val_log.n_users:
            self.summary = self._summarise(train_log, val_log, state, time.perf_counter() - t0)
        return self

    def fit_dataset(self, dataset: Dataset, **kwargs: Any) -> ColdStartRecommender:
        """Fit on a loaded :class:`Dataset` with its declared fields and rating scale."""
        return self.fit(
            dataset.interactions,
            dataset.users,
            dataset.items,
            user_fields=dataset.spec.user_fields,
            item_fields=dataset.spec.item_fields,
            title_field=dataset.spec.title_field,
            rating_scale=dataset.rating_scale,
            **kwargs,
        )

    def _build(self, space: FeatureSpace, rating_mean: float) -> None:
        torch.manual_seed(self.config.train.seed)
        if self.config.train.num_threads:
            torch.set_num_threads(self.config.train.num_threads)
        ie, ue = space.item_encoder, space.user_encoder
        net = ColdStartNet(
            self.config.model,
            item_vocab=ie.num_embeddings,
            item_token_fields=ie.n_token_fields,
            item_dense=ie.n_dense,
            user_vocab=ue.num_embeddings,
            user_token_fields=ue.n_token_fields,
            user_dense=ue.n_dense,
            rating_mean=rating_mean,
            n_items=space.n_items,
        )
        self.space = space
        self.learner = MetaLearner(net, self.config.meta)

    def _summarise(self, train_log: UserLog, val_log: UserLog, state, seconds: float) -> FitSummary:
        tasks = validation_tasks(val_log, self.config.train)
        adapted = evaluate_rating_tasks(self.learner, self.space, val_log, tasks)
        frozen = evaluate_rating_tasks(self.learner, self.space, val_log, tasks, ignore_support=True)
        sums = np.bincount(train_log.items, weights=train_log.ratings, minlength=self.space.n_items)
        counts = np.bincount(train_log.items, minlength=self.space.n_items)
        mean = float(train_log.ratings.mean())
        item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), mean)
        mask = tasks.query >= 0
        target = val_log.ratings[np.maximum(tasks.query, 0)]
        pred = item_mean[val_log.items[np.maximum(tasks.query, 0)]]
        from recsys.evaluation.metrics import mae

        return FitSummary(
            validation_users=len(tasks),
            support_size=self.config.train.validation_support,
            inner_steps=self.config.meta.inner_steps,
            mae_adapted=adapted["mae"],
            mae_no_adaptation=frozen["mae"],
            mae_item_mean=float(np.nanmean(mae(pred, target, mask))),
            rmse_adapted=adapted["rmse"],
            ndcg3_adapted=adapted["ndcg@3"],
            best_epoch=state.best_epoch,
            epochs_run=len(state.history),
            seconds=seconds,
        )

    # ---- persistence ---------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.learner is None or self.space is None:
            raise RecsysError("the recommender is not trained: call fit() or load()")

    def save(self, path: str | Path) -> Path:
        """Write the model folder: config, features, weights (safetensors), history, manifest."""
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / "config.json", self.config.to_dict())
        atomic_write_json(path / "features.json", self.space.to_json())
        tensors = {f"model.{k}": v for k, v in self.learner.state_dict().items()}
        tensors.update(
            {
                f"features.{k}": torch.from_numpy(np.ascontiguousarray(v))
                for k, v in self.space.arrays().items()
            }
        )
        save_tensors(path / "model.safetensors", tensors, {"kind": "recsys-model", "format": FORMAT_VERSION})
        atomic_write_json(
            path / "history.json",
            {
                "history": self.history,
                "summary": self.summary.__dict__ if self.summary else None,
                "info": self.info,
            },
        )
        manifest = {
            "format": FORMAT_VERSION,
            "recsys": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "signature": self.space.signature(),
            "files": {name: sha256_file(path / name) for name in MODEL_FILES},
        }
        atomic_write_json(path / "manifest.json", manifest)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ColdStartRecommender:
        """Load a model folder (or an MLflow ``runs:/`` / ``models:/`` URI), verifying checksums."""
        from recsys.tracking.uris import resolve_model_location

        folder = resolve_model_location(path)
        import json

        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise ModelFileError(f"{folder}: no manifest.json; not a recsys model folder")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{manifest_path}: damaged ({exc})") from None
        if manifest.get("format") != FORMAT_VERSION:
            raise ModelFileError(
                f"{folder}: model format {manifest.get('format')} unsupported (expected {FORMAT_VERSION})"
            )
        for name, digest in manifest.get("files", {}).items():
            file = folder / name
            if not file.exists():
                raise ModelFileError(f"{file}: missing")
            if sha256_file(file) != digest:
                raise ModelFileError(f"{file}: checksum mismatch (truncated or modified since it was saved)")
        try:
            config = RecommenderConfig.from_dict(json.loads((folder / "config.json").read_text()))
            features = json.loads((folder / "features.json").read_text())
            history = json.loads((folder / "history.json").read_text())
        except (json.JSONDecodeError, RecsysError) as exc:
            raise ModelFileError(f"{folder}: damaged model file ({exc})") from None
        tensors, _ = load_tensors(folder / "model.safetensors")
        arrays = {k[len("features.") :]: v.numpy() for k, v in tensors.items() if k.startswith("features.")}
        rec = cls(config)
        space = FeatureSpace.from_json(features, arrays)
        rec._build(space, float(history.get("info", {}).get("rating_mean", 0.0)))
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            rec.learner.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFileError(f"{folder}: weights do not match the config ({exc})") from None
        rec.history = history.get("history", [])
        rec.info = history.get("info", {})
        if history.get("summary"):
            rec.summary = FitSummary(**history["summary"])
        return rec

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ColdStartRecommender:
        """A recommender from a training checkpoint (its current weights)."""
        tensors, meta = load_tensors(path)
        if meta.get("kind") != "recsys-checkpoint":
            raise ModelFileError(f"{path}: not a recsys checkpoint")
        rec = cls(RecommenderConfig.from_dict(meta["config"]))
        arrays = {k[len("features.") :]: v.numpy() for k, v in tensors.items() if k.startswith("features.")}
        rec._build(FeatureSpace.from_json(meta["features"], arrays), float(meta["info"]["rating_mean"]))
        rec.learner.load_state_dict(
            {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        rec.info = meta["info"]
        rec.history = meta["state"]["history"]
        return rec

    # ---- scoring -------------------------------------------------------------------------------
    @property
    def item_ids(self) -> list:
        self._require_fitted()
        return self.space.items.to_list()

    def title(self, item_id: Any) -> str | None:
        self._require_fitted()
        idx = int(self.space.items.lookup([item_id])[0])
        return self.space.titles[idx] if idx >= 0 else None

    def _catalogue_cache(self) -> CatalogueCache:
        if self._cache is None:
            self._cache = CatalogueCache(self.learner, self.space, torch.device("cpu"))
        return self._cache

    def _encode_requests(
        self, requests: Sequence[dict[Any, float]], on_unknown: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Padded (items [n, S], ratings [n, S]) of users' rating dicts, validated."""
        if on_unknown not in ("error", "ignore"):
            raise ScoringInputError(f"on_unknown must be 'error' or 'ignore', got {on_unknown!r}")
        scale = self.space.rating_scale
        rows_items, rows_ratings = [], []
        for n, ratings in enumerate(requests):
            if ratings is None:
                ratings = {}
            if not isinstance(ratings, dict):
                raise ScoringInputError(
                    f"user {n}: ratings must be a dict item_id -> rating, got {type(ratings).__name__}"
                )
            keys = list(ratings.keys())
            values = []
            for key in keys:
                v = ratings[key]
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                    raise ScoringInputError(f"user {n}: rating of item {key!r} is not a number: {v!r}")
                v = float(v)
                if not math.isfinite(v):
                    raise ScoringInputError(f"user {n}: rating of item {key!r} is not finite: {v}")
                if scale is not None and not scale[0] <= v <= scale[1]:
                    raise ScoringInputError(
                        f"user {n}: rating {v:g} of item {key!r} is outside the scale [{scale[0]:g}, {scale[1]:g}]"
                    )
                values.append(v)
            idx = self.space.items.lookup(keys) if keys else np.zeros(0, np.int64)
            unknown = [k for k, i in zip(keys, idx, strict=True) if i < 0]
            if unknown:
                if on_unknown == "error":
                    shown = ", ".join(repr(u) for u in unknown[:5])
                    raise UnknownItemError(
                        f"user {n}: {len(unknown)} unknown item id(s): {shown}"
                        f"{' ...' if len(unknown) > 5 else ''} (pass on_unknown='ignore' to skip them)"
                    )
                log.warning("user %d: ignoring %d unknown item id(s)", n, len(unknown))
            keep = idx >= 0
            rows_items.append(idx[keep])
            rows_ratings.append(
                np.asarray(values, dtype=np.float32)[keep] if keys else np.zeros(0, np.float32)
            )
        width = max([len(r) for r in rows_items] + [1])
        items = np.full((len(requests), width), -1, dtype=np.int64)
        ratings_arr = np.zeros((len(requests), width), dtype=np.float32)
        for i, (it, rt) in enumerate(zip(rows_items, rows_ratings, strict=True)):
            items[i, : len(it)] = it
            ratings_arr[i, : len(rt)] = rt
        return items, ratings_arr

    def score_users(
        self,
        requests: Sequence[dict[Any, float]],
        user_features: Sequence[dict[str, Any] | None] | None = None,
        *,
        on_unknown: str = "error",
        steps: int | None = None,
        what: str = "rating",
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores [n, n_items], support items [n, S]) for many new users at once.

        ``what="rating"``: predicted ratings on the data's scale. ``what="rank"``: the scores that order
        recommendations (the ranking head's where the model has one, else the predicted ratings).
        """
        self._require_fitted()
        if user_features is not None and len(user_features) != len(requests):
            raise ScoringInputError(
                f"{len(requests)} rating dicts but {len(user_features)} user-feature dicts"
            )
        items, ratings = self._encode_requests(requests, on_unknown)
        return self.score_padded(items, ratings, user_features, steps=steps, what=what), items

    def predict(
        self,
        ratings: dict[Any, float],
        items: Sequence[Any],
        user_features: dict[str, Any] | None = None,
        *,
        on_unknown: str = "error",
    ) -> np.ndarray:
        """Predicted ratings (on the data's scale) of ``items`` for a new user with ``ratings``."""
        scores, _ = self.score_users([ratings], [user_features], on_unknown=on_unknown)
        idx = self.space.items.lookup(list(items))
        if (idx < 0).any():
            bad = [i for i, j in zip(items, idx, strict=True) if j < 0][:5]
            raise UnknownItemError(f"cannot predict unknown item id(s) {bad}")
        return scores[0, idx]

    def recommend(
        self,
        ratings: dict[Any, float],
        n: int = 20,
        user_features: dict[str, Any] | None = None,
        exclude_rated: bool = True,
        *,
        on_unknown: str = "error",
    ) -> list[tuple[Any, float]]:
        """Top-``n`` (item id, score) for a new user; rated items excluded by default.

        The score orders the recommendations: the predicted rating for rating heads, the ranking
        score (a logit) for heads with a ranking output (``hybrid``); :meth:`predict` gives ratings.

        An empty ``ratings`` dict is pure cold start: the meta-learned initialisation (with the user's
        features when given).
        """
        return self.recommend_batch([ratings], n, [user_features], exclude_rated, on_unknown=on_unknown)[0]

    def recommend_batch(
        self,
        list_of_ratings: Sequence[dict[Any, float]],
        n: int = 20,
        user_features: Sequence[dict[str, Any] | None] | None = None,
        exclude_rated: bool = True,
        *,
        on_unknown: str = "error",
    ) -> list[list[tuple[Any, float]]]:
        """:meth:`recommend` for many new users in one vectorised pass."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ScoringInputError(f"n must be a positive integer, got {n!r}")
        scores, support = self.score_users(list_of_ratings, user_features, on_unknown=on_unknown, what="rank")
        from recsys.evaluation.metrics import top_k

        exclude = None
        if exclude_rated:
            exclude = np.zeros_like(scores, dtype=bool)
            rows, cols = np.nonzero(support >= 0)
            exclude[rows, support[rows, cols]] = True
        top = top_k(scores, min(int(n), scores.shape[1]), exclude)
        ids = self.space.items.ids
        out = []
        for r in range(len(top)):
            row = top[r]
            if exclude is not None:
                row = row[~exclude[r, row]]
            out.append([(ids[int(i)], float(scores[r, i])) for i in row])
        return out

    # ---- vectorised scoring from padded arrays and tables (batch scoring, MLflow pyfunc) -----------
    def score_padded(
        self,
        items: np.ndarray,
        ratings: np.ndarray,
        user_features: Sequence[dict[str, Any] | None] | None = None,
        *,
        steps: int | None = None,
        what: str = "rating",
    ) -> np.ndarray:
        """:meth:`score_users` for already validated padded support arrays: scores [n, n_items].

        ``items`` [n, S] are catalogue indices (-1 = padding), ``ratings`` [n, S] the matching ratings;
        :func:`recsys.batch.encode_frame` builds both from a ratings table without per-rating loops.
        ``what`` as in :meth:`score_users` (``"rank"`` orders recommendations).
        """
        self._require_fitted()
        if user_features is not None and len(user_features) != len(items):
            raise ScoringInputError(f"{len(items)} users but {len(user_features)} user-feature dicts")
        users = self.space.encode_user_features(list(user_features or [None] * len(items)))
        scores, ranks = score_catalogue(
            self.learner,
            self.space,
            np.asarray(items, dtype=np.int64),
            np.asarray(ratings, dtype=np.float32),
            users,
            cache=self._catalogue_cache(),
            steps=steps,
            rank=True,
        )
        if what == "rank" and self.learner.head.has_rank:
            return ranks
        return clamp_to_scale(scores, self.space.rating_scale)

    def recommend_frame(self, ratings: Any, n: int = 20, **kwargs: Any) -> pl.DataFrame:
        """Top-``n`` for every user of a ratings table (polars or pandas; see :mod:`recsys.batch`)."""
        from recsys.batch import recommend_frame

        return recommend_frame(self, ratings, n=n, **kwargs)
