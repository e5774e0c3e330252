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

from recsys.config import RecommenderConfig
from recsys.data.dataset import Dataset
from recsys.data.frames import to_polars
from recsys.data.ids import coerce_ids
from recsys.data.log_checks import (
    check_trainable,
    choose_validation_users,
    drop_constant_timestamps,
    single_rating_value,
)
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.data.spec import FieldKind, FieldSpec
from recsys.data.tables import dedupe_interactions
from recsys.data.tasks import UserLog
from recsys.errors import (
    DataError,
    FeatureMismatchError,
    ModelFileError,
    RecsysError,
    ScoringInputError,
    UnknownItemError,
    shown,
)
from recsys.features.space import ITEM_ID_FIELD, FeatureSpace, check_feature_arrays
from recsys.meta.maml import MetaLearner
from recsys.meta.scoring import CatalogueCache, clamp_to_scale, score_catalogue
from recsys.meta.trainer import MetaTrainer
from recsys.meta.validation import (
    catalogue_quality,
    catalogue_scores,
    evaluate_rating_tasks,
    validation_tasks,
)
from recsys.metrics.core import mae
from recsys.metrics.topk import exclusion_mask, top_n
from recsys.models import trend
from recsys.models.item_init import init_item_ids_from_als
from recsys.models.item_item import fit_item_item
from recsys.models.network import ColdStartNet
from recsys.onboarding import onboarding_order
from recsys.requests import recommend_frame
from recsys.utils.checkpoint import load_tensors, save_tensors
from recsys.utils.io import (
    MAX_CONFIG_BYTES,
    MAX_FEATURES_BYTES,
    MAX_HISTORY_BYTES,
    MAX_MANIFEST_BYTES,
    atomic_write_json,
    check_input_file,
    read_json_bounded,
    sha256_file,
)
from recsys.utils.locations import resolve_model_location
from recsys.version import __version__

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL_FILES = ("config.json", "features.json", "model.safetensors", "history.json")


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


def _is_list_like(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _feature_number(user: int, name: str, value: Any) -> Any:
    """A numeric user feature as a float: NaN is missing, infinite or overflowing values are errors,
    values that are not numbers are left for the encoder (which maps them to unknown)."""
    if value is None:
        return None
    try:
        x = float(value)
    except OverflowError:
        raise ScoringInputError(f"user {user}: user feature '{name}' is too large: {shown(value)}") from None
    except (TypeError, ValueError):
        return value
    if math.isnan(x):
        return None
    if math.isinf(x):
        raise ScoringInputError(f"user {user}: user feature '{name}' is not finite: {shown(value)}")
    return x


def check_rating(user: Any, item: Any, value: Any, scale: tuple[float, float] | None) -> float:
    """The API's rule for one rating of a new user: a number (not a boolean, not a string), finite, on
    the model's scale. Returns it as a float; anything else is a ScoringInputError naming the user and
    the item. The REST gateway (recsys.tracking.gateway) applies it to the raw JSON values."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScoringInputError(
            f"user {shown(user)}: rating of item {shown(item)} is not a number: {shown(value)}"
        )
    try:
        v = float(value)
    except OverflowError:
        raise ScoringInputError(f"user {shown(user)}: rating of item {shown(item)} is too large") from None
    if not math.isfinite(v):
        raise ScoringInputError(f"user {shown(user)}: rating of item {shown(item)} is not finite: {v}")
    if scale is not None and not scale[0] <= v <= scale[1]:
        raise ScoringInputError(
            f"user {shown(user)}: rating {v:g} of item {shown(item)} is outside the scale "
            f"[{scale[0]:g}, {scale[1]:g}]"
        )
    return v


def _check_timestamps(ts: pl.Series) -> None:
    """Timestamps of a frame given to ``fit``: numbers (seconds), integer strings, dates or datetimes;
    finite where present. Anything else is a DataError naming the column and the first bad row. No
    timestamp at all (every value missing) is a log without timestamps; some missing is an error."""
    missing = ts.is_null()
    if missing.any() and not missing.all():
        row = int(missing.arg_true()[0])
        raise DataError(
            f"interactions: {int(missing.sum())} timestamp(s) missing",
            field=TIMESTAMP,
            expected="a timestamp on every row (or none at all)",
            got=f"null at row {row}",
        )
    if ts.dtype.is_temporal() and not isinstance(ts.dtype, (pl.Duration, pl.Time)):
        return
    if ts.dtype.is_numeric() and ts.dtype != pl.Boolean:
        if not ts.dtype.is_float():
            return
        values = ts.cast(pl.Float64)
        bad, what = values.is_nan() | values.is_infinite(), "not finite"
    elif ts.dtype == pl.String:
        bad = ts.str.strip_chars().cast(pl.Int64, strict=False).is_null() & ts.is_not_null()
        what = "not whole seconds"
    else:
        raise DataError(
            "interactions: timestamps are not numbers or dates",
            field=TIMESTAMP,
            expected="seconds since 1970 (integers) or dates",
            got=str(ts.dtype),
        )
    bad = bad.fill_null(False)
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataError(
            f"interactions: {int(bad.sum())} timestamp(s) {what}",
            field=TIMESTAMP,
            expected="seconds since 1970 (integers) or dates",
            got=f"{shown(ts[row])} at row {row}",
        )


def _check_training_frame(inter: pl.DataFrame, rating_scale: tuple[float, float] | None) -> None:
    """Interactions given to ``fit`` as a frame (not through the readers): ids present, ratings numbers,
    finite and on the scale. Errors name the first bad row."""
    for col in (USER, ITEM):
        nulls = inter[col].is_null()
        if nulls.any():
            raise DataError(
                f"interactions: {int(nulls.sum())} row(s) without {col}",
                field=col,
                expected="an id on every row",
                got=f"null at row {int(nulls.arg_true()[0])}",
            )
        if inter[col].dtype.is_nested() or inter[col].dtype in (pl.Binary, pl.Object):
            raise DataError(
                "interactions: unsupported id type",
                field=col,
                expected="integer or string ids",
                got=str(inter[col].dtype),
            )
        dtype = inter[col].dtype
        if dtype.is_float() or dtype.is_temporal() or dtype in (pl.Boolean, pl.Null) or dtype.is_decimal():
            raise DataError(
                "interactions: ids must be integers or strings (cast the column: "
                "integers are matched as integers, anything else as the exact string)",
                field=col,
                expected="integer or string ids",
                got=str(dtype),
            )
    if TIMESTAMP in inter.columns:
        _check_timestamps(inter[TIMESTAMP])
    if RATING not in inter.columns:
        return
    r = inter[RATING]
    if r.dtype == pl.Boolean or not r.dtype.is_numeric():
        raise DataError(
            "interactions: ratings are not numbers", field=RATING, expected="numbers", got=str(r.dtype)
        )
    values = r.cast(pl.Float64)
    bad = values.is_null() | values.is_nan() | values.is_infinite()
    if rating_scale is not None:
        bad = bad | (values < rating_scale[0]) | (values > rating_scale[1])
    bad = bad.fill_null(True)
    if bad.any():
        row = int(bad.arg_true()[0])
        scale = f" in [{rating_scale[0]:g}, {rating_scale[1]:g}]" if rating_scale else ""
        raise DataError(
            f"interactions: {int(bad.sum())} rating(s) missing, not finite or off the scale",
            field=RATING,
            expected=f"a finite rating{scale}",
            got=f"{shown(r[row])} at row {row}",
        )


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
    recall20_adapted: float = math.nan
    """Catalogue Recall@20 after adaptation (implicit feedback, where there are no ratings to predict)."""
    recall20_no_adaptation: float = math.nan

    def lines(self) -> list[str]:
        head = [
            f"validation users: {self.validation_users} (support "
            + (f"{self.support_size} ratings" if self.support_size else "sizes drawn as in training")
            + ", query up to 10)"
        ]
        if math.isnan(self.mae_adapted) and not math.isnan(self.recall20_adapted):  # implicit feedback
            body = [
                f"  Recall@20 adapted to the support           {self.recall20_adapted:.4f}",
                f"  Recall@20 no adaptation (support ignored)   {self.recall20_no_adaptation:.4f}",
            ]
        else:
            body = [
                f"  MAE adapted to the support           {self.mae_adapted:.4f}",
                f"  MAE no adaptation (support ignored)   {self.mae_no_adaptation:.4f}",
                f"  MAE item mean                         {self.mae_item_mean:.4f}",
            ]
        return head + body + [f"best epoch {self.best_epoch} of {self.epochs_run}, {self.seconds:.0f} s"]


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
        _check_training_frame(inter, rating_scale)
        rows = inter.height
        inter = dedupe_interactions(drop_constant_timestamps(inter))
        if inter.height < rows:
            log.warning(
                "interactions: %d duplicate (user, item) row(s) dropped, the latest kept", rows - inter.height
            )
        check_trainable(inter, min_user_ratings=cfg.train.min_user_ratings)
        only = single_rating_value(inter)
        if only is not None:
            log.warning(
                "interactions: every rating is %g, so there is no rating signal to learn; "
                "training on them as implicit feedback (every interaction a positive)",
                only,
            )
            inter, rating_scale = inter.drop(RATING), None
        implicit = RATING not in inter.columns
        if implicit:  # no ratings: train the ranking objective alone, every interaction a positive
            cfg = self.config = cfg.replace(
                meta={
                    "rating_weight": 0.0,
                    "rank_threshold": None,
                    "rank_weight": cfg.meta.rank_weight or 1.0,
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

        if validation_users is None:
            validation_users = choose_validation_users(
                inter,
                cfg.train.validation_fraction,
                np.random.default_rng([cfg.train.seed, 7]),
                min_ratings=cfg.train.min_user_ratings,
            )
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
        if cfg.model.item_id_init == "als" and not resume:
            self.info["item_id_init"] = init_item_ids_from_als(
                self.learner.net, space, train_log, seed=cfg.train.seed
            )
        if head.capabilities.item_offsets and not implicit:
            sums = np.bincount(train_log.items, weights=train_log.ratings, minlength=space.n_items)
            counts = np.bincount(train_log.items, minlength=space.n_items)
            damped = (sums + 5.0 * rating_mean) / (counts + 5.0) - rating_mean
            head.set_item_offsets(torch.from_numpy(damped.astype(np.float32)))
        if head.item_item_active:
            matrix, folds, chosen = fit_item_item(
                train_log,
                val_log,
                space.n_items,
                threshold=cfg.meta.rank_threshold,
                implicit=implicit,
                seed=cfg.train.seed,
                kinds=cfg.model.hybrid.item_item_kinds,
            )
            head.set_item_item(torch.from_numpy(matrix), torch.from_numpy(folds))
            self.info["item_item"] = chosen
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
        if (
            head.capabilities.trend_prior
            and cfg.model.hybrid.trend
            and val_log is not None
            and val_log.n_users
        ):
            self.info["trend"] = self._choose_trend(train_log, val_log)
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
        net = ColdStartNet.for_space(self.config.model, space, rating_mean=rating_mean)
        self.space = space
        self.learner = MetaLearner(net, self.config.meta)

    def _choose_trend(self, train_log: UserLog, val_log: UserLog) -> dict[str, Any]:
        """Pick the trend prior's half-life and weight (weight 0: none) on the validation users'
        catalogue Recall@20 + nDCG@10, and set it on the head."""

        head = self.learner.head
        tasks = validation_tasks(val_log, self.config.train)
        threshold = self.config.meta.rank_threshold
        n = self.space.n_items
        none = np.zeros(n, dtype=np.float32)
        # the prior adds weight * prior[item] to every user's ranking scores: score once without it
        head.set_trend(torch.from_numpy(none), 0.0)
        scores = catalogue_scores(self.learner, self.space, val_log, tasks)

        def value(prior: np.ndarray, weight: float) -> float:
            m = catalogue_quality(scores + weight * prior, self.space, val_log, tasks, threshold)
            return m["recall@20"] + m["cat_ndcg@10"]

        best = (value(none, 0.0), None, 0.0, none)
        baseline = best[0]
        for half_life in trend.candidates(train_log):
            prior = trend.trend_prior(train_log, n, half_life)
            for weight in trend.WEIGHTS:
                score = value(prior, weight)
                if score > best[0]:
                    best = (score, half_life, weight, prior)
        score, half_life, weight, prior = best
        head.set_trend(torch.from_numpy(prior), weight)
        log.info(
            "trend prior: %s (validation Recall@20 + nDCG@10 %.4f, without %.4f)",
            trend.describe(half_life, weight),
            score,
            baseline,
        )
        return {
            "half_life_days": half_life,
            "weight": weight,
            "chosen": trend.describe(half_life, weight),
            "validation_recall20_plus_ndcg10": round(score, 5),
            "validation_without": round(baseline, 5),
        }

    def _summarise(self, train_log: UserLog, val_log: UserLog, state, seconds: float) -> FitSummary:
        tasks = validation_tasks(val_log, self.config.train)
        adapted = evaluate_rating_tasks(self.learner, self.space, val_log, tasks)
        frozen = evaluate_rating_tasks(self.learner, self.space, val_log, tasks, ignore_support=True)
        nan = math.nan
        item_mean_mae = nan
        if not self.space.implicit:
            sums = np.bincount(train_log.items, weights=train_log.ratings, minlength=self.space.n_items)
            counts = np.bincount(train_log.items, minlength=self.space.n_items)
            mean = float(train_log.ratings.mean())
            item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), mean)
            mask = tasks.query >= 0
            target = val_log.ratings[np.maximum(tasks.query, 0)]
            pred = item_mean[val_log.items[np.maximum(tasks.query, 0)]]

            item_mean_mae = float(np.nanmean(mae(pred, target, mask)))

        return FitSummary(
            validation_users=len(tasks),
            support_size=self.config.train.validation_support,
            inner_steps=self.config.meta.inner_steps,
            mae_adapted=adapted.get("mae", nan),
            mae_no_adaptation=frozen.get("mae", nan),
            mae_item_mean=item_mean_mae,
            rmse_adapted=adapted.get("rmse", nan),
            ndcg3_adapted=adapted.get("ndcg@3", nan),
            recall20_adapted=adapted.get("recall@20", nan),
            recall20_no_adaptation=frozen.get("recall@20", nan),
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

        folder = resolve_model_location(path)
        manifest_path = folder / "manifest.json"
        if not (manifest_path.exists() or manifest_path.is_symlink()):
            raise ModelFileError(f"{folder}: no manifest.json; not a recsys model folder")
        manifest = read_json_bounded(manifest_path, MAX_MANIFEST_BYTES, what="manifest", inside=folder)
        if not isinstance(manifest, dict):
            raise ModelFileError(f"{manifest_path}: damaged (not a JSON object)")
        if manifest.get("format") != FORMAT_VERSION:
            shown = repr(manifest.get("format"))
            shown = shown if len(shown) <= 40 else shown[:40] + "..."
            raise ModelFileError(f"{folder}: model format {shown} unsupported (expected {FORMAT_VERSION})")
        files = manifest.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise ModelFileError(f"{manifest_path}: damaged (no table of file checksums)")
        unlisted = [name for name in MODEL_FILES if name not in files]
        if unlisted:
            raise ModelFileError(f"{manifest_path}: no checksum for {unlisted}; the model cannot be verified")
        for name, digest in files.items():
            if Path(name).name != name or name in (".", ".."):
                raise ModelFileError(f"{manifest_path}: unexpected file name {name!r}")
            file = folder / name
            if not (file.exists() or file.is_symlink()):
                raise ModelFileError(f"{file}: missing")
            # a regular file whose real path is inside the folder: no link out, no FIFO or device
            check_input_file(file, "model file", None, error=ModelFileError, inside=folder)
            if sha256_file(file) != digest:
                raise ModelFileError(f"{file}: checksum mismatch (truncated or modified since it was saved)")
        try:
            return cls._from_files(folder)
        except ModelFileError:
            raise
        except Exception as exc:  # consistent checksums but contents the engine cannot use
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ModelFileError(
                f"{folder}: damaged or inconsistent model files ({type(exc).__name__}: {first})"
            ) from None

    @classmethod
    def _from_files(cls, folder: Path) -> ColdStartRecommender:
        def read(name: str, max_bytes: int) -> Any:
            return read_json_bounded(folder / name, max_bytes, what="model file", inside=folder)

        try:
            config = RecommenderConfig.from_saved(read("config.json", MAX_CONFIG_BYTES))
        except (RecsysError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"{folder}: damaged model file ({exc})") from None
        features = read("features.json", MAX_FEATURES_BYTES)
        history = read("history.json", MAX_HISTORY_BYTES)
        tensors, _ = load_tensors(folder / "model.safetensors", inside=folder)
        rec = cls._from_parts(
            folder, config, features, tensors, float(history.get("info", {}).get("rating_mean", 0.0))
        )
        rec.history = list(history.get("history", []))
        rec.info = dict(history.get("info", {}))
        if history.get("summary"):
            rec.summary = FitSummary(**history["summary"])
        return rec

    @classmethod
    def _from_parts(
        cls,
        where: Path | str,
        config: RecommenderConfig,
        features: dict[str, Any],
        tensors: dict[str, torch.Tensor],
        rating_mean: float,
    ) -> ColdStartRecommender:
        """A recommender from a saved config, feature space and tensors, checked before any allocation
        the files alone decide: the feature arrays' types, sizes and index ranges against the encoders,
        then every weight's shape against the network the config describes (built on the ``meta``
        device, which allocates nothing); only then is the network built for real."""
        arrays = {k[len("features.") :]: v.numpy() for k, v in tensors.items() if k.startswith("features.")}
        problems = check_feature_arrays(arrays)
        if problems:
            raise ModelFileError(f"{where}: inconsistent feature files ({'; '.join(problems[:3])})")
        rec = cls(config)
        rec.space = FeatureSpace.from_json(features, arrays)
        rec._check_space(where)
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        rec._check_shapes(where, state, rating_mean)
        rec._build(rec.space, rating_mean)
        try:
            rec._load_weights(state)
        except RuntimeError as exc:
            raise ModelFileError(f"{where}: weights do not match the config ({exc})") from None
        return rec

    def _check_shapes(self, where: Path | str, state: dict[str, torch.Tensor], rating_mean: float) -> None:
        """Every saved weight has the shape the config and feature space call for (no weight missing
        or extra), checked on a network built on the ``meta`` device: no memory is allocated, so a
        config asking for huge layers costs nothing before it is refused."""
        with torch.device("meta"):
            net = ColdStartNet.for_space(self.config.model, self.space, rating_mean=rating_mean)
            expected = {k: tuple(v.shape) for k, v in MetaLearner(net, self.config.meta).state_dict().items()}
        # sorted: the message names the same weights whatever order the file holds them in
        missing = sorted(k for k in expected if k not in state and k not in self.OPTIONAL_WEIGHTS)
        extra = sorted(k for k in state if k not in expected)
        wrong = [
            f"{k}: saved {tuple(state[k].shape)}, config {expected[k]}"
            for k in sorted(state)
            if k in expected and tuple(state[k].shape) != expected[k]
        ]
        if missing or extra or wrong:
            parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else ""]
            detail = "; ".join([p for p in parts if p] + wrong[:3])
            raise ModelFileError(f"{where}: weights do not match the config ({detail})")

    OPTIONAL_WEIGHTS = ("net.head.trend", "net.head.trend_weight")
    """Buffers that models saved before they existed lack; they load as their defaults (no prior)."""

    def _load_weights(self, state: dict[str, torch.Tensor]) -> None:
        defaults = self.learner.state_dict()
        state = {k: defaults[k] for k in self.OPTIONAL_WEIGHTS if k in defaults and k not in state} | state
        self.learner.load_state_dict(state)

    def _check_space(self, where: Path | str) -> None:
        """The loaded feature space is self-consistent (an edited features.json is caught here)."""
        space = self.space
        n = space.n_items
        sizes = {
            "titles": len(space.titles),
            "popularity": len(space.popularity),
            "item_table": space.item_table.n_rows,
        }
        wrong = {k: v for k, v in sizes.items() if v != n}
        if space.user_table.n_rows != len(space.users) + 1:
            wrong["user_table"] = space.user_table.n_rows
        if wrong:
            raise ModelFileError(f"{where}: inconsistent feature files ({n} catalogue items, but {wrong})")
        problems = space.problems()  # index ranges of every array against the encoders' table sizes
        if problems:
            raise ModelFileError(f"{where}: inconsistent feature files ({'; '.join(problems[:3])})")
        scale = space.rating_scale
        if scale is not None and not (
            len(scale) == 2
            and all(isinstance(x, (int, float)) and math.isfinite(x) for x in scale)
            and scale[0] < scale[1]
        ):
            raise ModelFileError(f"{where}: invalid rating scale {scale!r}")

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ColdStartRecommender:
        """A recommender from a training checkpoint (its current weights)."""
        tensors, meta = load_tensors(path)
        if not isinstance(meta, dict) or meta.get("kind") != "recsys-checkpoint":
            raise ModelFileError(f"{path}: not a recsys checkpoint")
        try:
            config = RecommenderConfig.from_saved(meta["config"])
            rec = cls._from_parts(path, config, meta["features"], tensors, float(meta["info"]["rating_mean"]))
            rec.info = meta["info"]
            rec.history = meta["state"]["history"]
        except ModelFileError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ModelFileError(f"{path}: damaged checkpoint ({type(exc).__name__}: {first})") from None
        return rec

    def check_dataset(self, dataset: Dataset) -> None:
        """Refuse data whose feature spec differs from the model's: a user or item field the model was
        trained on that the dataset lacks, or declares with another kind, is a FeatureMismatchError
        naming it (fields the model does not use are ignored)."""
        self._require_fitted()
        sides = (
            ("user", self.space.user_encoder, dataset.spec.user_fields, dataset.users),
            ("item", self.space.item_encoder, dataset.spec.item_fields, dataset.items),
        )
        for side, encoder, fields, table in sides:
            declared = {f.name: f.kind for f in fields}
            for fe in encoder.fields:
                if fe.name == ITEM_ID_FIELD:
                    continue
                kind = fe.spec.kind.value
                if table is None or fe.name not in declared:
                    has = "no table" if table is None else f"the fields {sorted(declared)}"
                    raise FeatureMismatchError(
                        f"the model was trained with {side} field '{fe.name}' ({kind}); "
                        f"the data '{dataset.name}' has {side} {has}"
                    )
                if declared[fe.name] is not fe.spec.kind:
                    raise FeatureMismatchError(
                        f"{side} field '{fe.name}': the model was trained on {kind} values, "
                        f"the data '{dataset.name}' declares it {declared[fe.name].value}"
                    )

    # ---- scoring -------------------------------------------------------------------------------
    @property
    def item_ids(self) -> list:
        self._require_fitted()
        return self.space.items.to_list()

    def title(self, item_id: Any) -> str | None:
        self._require_fitted()
        idx = int(self._lookup([item_id])[0])
        return self.space.titles[idx] if idx >= 0 else None

    def _lookup(self, ids: Sequence[Any]) -> np.ndarray:
        """Catalogue indices of item ids given by a caller, -1 where unknown: the one id rule of
        :mod:`recsys.data.ids` (integers and canonical decimal strings for an integer catalogue,
        strings as given for a string catalogue, anything else unknown), for any number of ids."""
        if len(ids) == 0:
            return np.zeros(0, np.int64)
        return self.space.items.lookup(list(ids))

    @property
    def device(self) -> torch.device:
        return getattr(self, "_device", torch.device("cpu"))

    def to(self, device: str | torch.device) -> ColdStartRecommender:
        """Score on ``device`` (``cpu``, ``cuda``, ``cuda:N``); the catalogue cache is rebuilt there."""
        self._require_fitted()
        self._device = torch.device(device)
        self.learner.to(self._device)
        self._cache = None
        return self

    def _catalogue_cache(self) -> CatalogueCache:
        if self._cache is None:
            self._cache = CatalogueCache(self.learner, self.space, self.device)
        return self._cache

    def _encode_requests(
        self, requests: Sequence[dict[Any, float]], on_unknown: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Padded (items [n, S], ratings [n, S]) of users' rating dicts, validated."""
        if on_unknown not in ("error", "ignore"):
            raise ScoringInputError(f"on_unknown must be 'error' or 'ignore', got {shown(on_unknown)}")
        if not _is_list_like(requests):
            raise ScoringInputError(
                f"expected a list of rating dicts (one per user), got {type(requests).__name__}"
            )
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
                values.append(check_rating(n, key, ratings[key], scale))
            idx = self._lookup(keys)
            unknown = [k for k, i in zip(keys, idx, strict=True) if i < 0]
            if unknown:
                if on_unknown == "error":
                    raise UnknownItemError(
                        f"user {n}: {len(unknown)} unknown item id(s): {UnknownItemError.listing(unknown)}"
                        " (pass on_unknown='ignore' to skip them)"
                    )
                log.warning("user %d: ignoring %d unknown item id(s)", n, len(unknown))
            keep = idx >= 0
            kept_idx = idx[keep]
            kept_ratings = np.asarray(values, dtype=np.float32)[keep] if keys else np.zeros(0, np.float32)
            # the same item under two keys (1 and "1"): the last rating counts, as in a ratings table
            _, last_rev = np.unique(kept_idx[::-1], return_index=True)
            last = np.sort(len(kept_idx) - 1 - last_rev)
            rows_items.append(kept_idx[last])
            rows_ratings.append(kept_ratings[last])
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
        if _is_list_like(requests) and _is_list_like(user_features) and len(user_features) != len(requests):
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
        if isinstance(items, (str, bytes, dict)):
            raise ScoringInputError(f"items must be a list of item ids, got {type(items).__name__}")
        try:
            items = list(items)
        except TypeError:
            raise ScoringInputError(f"items must be a list of item ids, got {type(items).__name__}") from None
        scores, _ = self.score_users([ratings], [user_features], on_unknown=on_unknown)
        idx = self._lookup(items)
        if (idx < 0).any():
            bad = [i for i, j in zip(items, idx, strict=True) if j < 0]
            raise UnknownItemError(f"cannot predict unknown item id(s) {UnknownItemError.listing(bad)}")
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
            raise ScoringInputError(f"n must be a positive integer, got {shown(n)}")
        if not isinstance(exclude_rated, (bool, np.bool_)):
            raise ScoringInputError(f"exclude_rated must be True or False, got {shown(exclude_rated)}")
        scores, support = self.score_users(list_of_ratings, user_features, on_unknown=on_unknown, what="rank")

        exclude = exclusion_mask(support, scores.shape[1]) if exclude_rated else None
        top, top_scores = top_n(scores, int(n), exclude)
        keep = ~np.take_along_axis(exclude, top, axis=1) if exclude is not None else np.ones_like(top, bool)
        ids = self.space.items.ids
        return [
            [(ids[int(i)], float(v)) for i, v in zip(top[r][keep[r]], top_scores[r][keep[r]], strict=True)]
            for r in range(len(top))
        ]

    def onboarding_items(
        self,
        n: int = 10,
        user_features: dict[str, Any] | None = None,
        *,
        strategy: str = "evidence",
        seed: int = 0,
    ) -> list[Any]:
        """The ``n`` item ids to ask a new user to rate first, in order (see :mod:`recsys.onboarding`).

        ``strategy``: ``evidence`` (expected information about the user, weighted by how likely the
        user knows the item), ``popular`` or ``random``.
        """

        if user_features is not None and not isinstance(user_features, dict):
            raise ScoringInputError(
                f"user_features must be a dict feature name -> value, got {type(user_features).__name__}"
            )
        order = onboarding_order(self, n, user_features=user_features, strategy=strategy, seed=seed)
        ids = self.space.items.ids
        return [ids[int(i)] for i in order]

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
        :func:`recsys.requests.encode_frame` builds both from a ratings table without per-rating loops.
        ``what`` as in :meth:`score_users` (``"rank"`` orders recommendations).
        """
        self._require_fitted()
        if what not in ("rating", "rank"):
            raise ScoringInputError(f"what must be 'rating' or 'rank', got {shown(what)}")
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0
        ):
            raise ScoringInputError(f"steps must be a non-negative integer, got {shown(steps)}")
        items, ratings = self._check_padded(items, ratings)
        users = self._encode_user_features(user_features, len(items))
        scores = score_catalogue(
            self.learner,
            self.space,
            np.asarray(items, dtype=np.int64),
            np.asarray(ratings, dtype=np.float32),
            users,
            cache=self._catalogue_cache(),
            device=self.device,
            steps=steps,
            ratings=what == "rating",
        )
        if what == "rank":
            ranks = scores.ranking
            return ranks if self.learner.head.has_rank else clamp_to_scale(ranks, self.space.rating_scale)
        return clamp_to_scale(scores.ratings, self.space.rating_scale)

    def _check_padded(self, items: Any, ratings: Any) -> tuple[np.ndarray, np.ndarray]:
        try:
            items = np.asarray(items)
            ratings = np.asarray(ratings, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ScoringInputError(f"support arrays: {exc}") from None
        if items.ndim != 2 or ratings.shape != items.shape or not np.issubdtype(items.dtype, np.integer):
            raise ScoringInputError(
                f"support arrays must be integer items [n, S] and ratings of the same shape, "
                f"got {items.dtype} {items.shape} and {ratings.shape}"
            )
        if items.size and (items.min() < -1 or items.max() >= self.space.n_items):
            raise ScoringInputError(f"support item indices must be in [-1, {self.space.n_items})")
        if not np.isfinite(ratings[items >= 0]).all():
            raise ScoringInputError("support ratings must be finite")
        return items.astype(np.int64, copy=False), ratings

    def _user_feature_dicts(self, user_features: Any, n: int) -> list[dict[str, Any] | None]:
        """Validated per-user feature dicts: a list of dicts (or None), numeric fields as floats."""
        if user_features is None:
            return [None] * n
        if not _is_list_like(user_features):
            raise ScoringInputError(
                f"user_features must be a list with one dict (or None) per user, got {type(user_features).__name__}"
            )
        if len(user_features) != n:
            raise ScoringInputError(f"{n} users but {len(user_features)} user-feature dicts")
        numeric = {
            f.name
            for f in self.space.user_encoder.fields
            if f.spec.kind in (FieldKind.NUMERIC, FieldKind.DENSE)
        }
        out: list[dict[str, Any] | None] = []
        for u, feats in enumerate(user_features):
            if feats is None:
                out.append(None)
                continue
            if not isinstance(feats, dict):
                raise ScoringInputError(
                    f"user {u}: user features must be a dict feature name -> value, got {type(feats).__name__}"
                )
            out.append({k: _feature_number(u, k, v) if k in numeric else v for k, v in feats.items()})
        return out

    def _encode_user_features(self, user_features: Any, n: int):
        with np.errstate(over="ignore", invalid="ignore"):
            users = self.space.encode_user_features(self._user_feature_dicts(user_features, n))
        if users.dense.size and not np.isfinite(users.dense).all():
            row = int(np.nonzero(~np.isfinite(users.dense).all(axis=1))[0][0])
            raise ScoringInputError(f"user {row}: a numeric user feature is too large to encode")
        return users

    def recommend_frame(self, ratings: Any, n: int = 20, **kwargs: Any) -> pl.DataFrame:
        """Top-``n`` for every user of a ratings table (polars or pandas; see :mod:`recsys.requests`)."""

        return recommend_frame(self, ratings, n=n, **kwargs)
