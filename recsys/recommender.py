"""The public API: :class:`ColdStartRecommender`.

.. code-block:: python

    from recsys import ColdStartRecommender
    rec = ColdStartRecommender()                       # or ColdStartRecommender(config) / .load(path)
    rec.fit(interactions, users=users, items=items)    # pandas or polars frames, canonical schema
    rec.save("model/")
    rec.recommend({50: 5.0, 181: 4.0, 1: 3.0}, n=10)   # [(item_id, score), ...]
    rec.recommend_rows({50: 5.0}, n=5, where={"genre": "Comedy"})  # [{"rank", "item_id", "score", ...}]
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys import candidates, catalogue, known_users, persistence, post_training, training
from recsys.config import RecommenderConfig
from recsys.data.dataset import Dataset
from recsys.data.spec import FieldKind, FieldSpec
from recsys.errors import RecsysError, ScoringInputError, UnknownItemError, shown
from recsys.explain import explain as explain_items
from recsys.features.space import FeatureSpace
from recsys.meta.maml import MetaLearner
from recsys.meta.scoring import CatalogueCache, clamp_to_scale, score_catalogue
from recsys.models.classical.mf import FittedMFs
from recsys.onboarding import onboarding_order
from recsys.requests import encode_dicts, is_list_like, rank_requests, recommend_frame
from recsys.similar import SimilarItems, similar_items
from recsys.training import FitSummary
from recsys.utils.seeds import VALIDATION_USERS, Seeds

log = logging.getLogger(__name__)


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
        self._available: np.ndarray | None = None  # bool [n_items], True = may be recommended; None: all
        self.user_log: known_users.KnownUsers | None = None  # the training users (recsys.known_users)

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
        """Meta-train on an interaction log (one task per user): the steps of :mod:`recsys.training`.

        ``validation_users`` are held out of training for model selection (default: a seeded random
        ``train.validation_fraction`` of the users). ``checkpoint`` is written atomically during
        training; with ``resume=True`` training continues from it.
        """
        t0 = time.perf_counter()
        seeds = Seeds(self.config.train.seed)  # every random draw of the recipe: a named stream of it
        data = training.prepare_log(
            interactions,
            users,
            items,
            self.config,
            user_fields=user_fields,
            item_fields=item_fields,
            rating_scale=rating_scale,
        )
        cfg = self.config = data.config
        train_inter, val_inter = training.split_validation(
            data.interactions, validation_users, cfg.train, seeds.rng(VALIDATION_USERS)
        )
        space = training.fit_space(train_inter, data, cfg.model, title_field)
        self.user_log = known_users.record(data.interactions, space.items, cfg.train.keep_user_log)
        train_log, val_log = training.user_logs(train_inter, val_inter, space)
        self.info = training.log_info(train_log, val_log)
        mean, mfs = self.info["rating_mean"], FittedMFs(train_log, space.n_items, cfg.train.seed)
        self._build(space, mean)
        self.info |= training.prepare_head(  # mfs: the ALS start's biased MF, reused by step 7
            self.learner, space, train_log, val_log, cfg, seeds, rating_mean=mean, resume=resume, mfs=mfs
        )
        tasks = training.validation_tasks_of(val_log, cfg.train, seeds)
        state = training.meta_train(
            self.learner, space, cfg, self.info, train_log, val_log, tasks, checkpoint, resume, callbacks
        )
        self.history, self._cache = state.history, None
        if tasks is not None:
            self.info |= post_training.choose_after_training(
                self.learner, space, cfg, train_log, val_log, tasks, mfs
            )
            seconds = time.perf_counter() - t0
            self.summary = training.summarise(
                self.learner, space, cfg, train_log, val_log, tasks, state, seconds
            )
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
        """The network of the config for ``space`` (:func:`recsys.training.build_learner`)."""
        self.space = space
        self.learner = training.build_learner(self.config, space, rating_mean)

    # ---- persistence (recsys.persistence) ------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.learner is None or self.space is None:
            raise RecsysError("the recommender is not trained: call fit() or load()")

    def save(self, path: str | Path) -> Path:
        """Write the model folder: config, features, weights (safetensors), history, manifest."""
        self._require_fitted()
        return persistence.save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> ColdStartRecommender:
        """Load a model folder (or an MLflow ``runs:/`` / ``models:/`` URI), verifying checksums."""
        return persistence.load(cls, path)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ColdStartRecommender:
        """A recommender from a training checkpoint (its current weights)."""
        return persistence.from_checkpoint(cls, path)

    def check_dataset(self, dataset: Dataset) -> None:
        """Refuse data whose feature spec differs from the model's: a user or item field the model was
        trained on that the dataset lacks, or declares with another kind, is a FeatureMismatchError
        naming it (fields the model does not use are ignored)."""
        self._require_fitted()
        persistence.check_dataset(self.space, dataset)

    # ---- catalogue updates without retraining (recsys.catalogue) -----------------------------------
    def add_items(self, items: Any, *, id_column: str = "item_id", title_column: str | None = "title") -> int:
        """Add items from a table (polars or pandas: the id column and the model's item feature columns,
        as the training item table had them); scored from their content, like held-out new items."""
        self._require_fitted()
        return catalogue.add_items(self, items, id_column=id_column, title_column=title_column)

    def set_available(self, ids: Sequence[Any], available: bool = True) -> int:
        """Hide (``False``) or show again (``True``) items: hidden items are never recommended."""
        self._require_fitted()
        return catalogue.set_available(self, ids, available)

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
        """Padded (items [n, S], ratings [n, S]) of users' rating dicts, validated (the request encoder
        shared with tables and the pyfunc: :mod:`recsys.requests`)."""
        return encode_dicts(self, requests, on_unknown)

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
        if is_list_like(requests) and is_list_like(user_features) and len(user_features) != len(requests):
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
        items: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[tuple[Any, float]]:
        """Top-``n`` (item id, score) for a new user; rated items excluded by default.

        The score orders the recommendations: the predicted rating for rating heads, the ranking
        score (a logit) for heads with a ranking output (``hybrid``); :meth:`predict` gives ratings,
        :meth:`recommend_rows` both.

        An empty ``ratings`` dict is pure cold start: the meta-learned initialisation (with the user's
        features when given). ``items`` (allow-list), ``exclude`` (deny-list) and ``where``
        (``{item field: value | [values]}``) narrow the candidates before top-N (:mod:`recsys.candidates`).
        """
        cand = {"items": items, "exclude": exclude, "where": where}
        return self.recommend_batch(
            [ratings], n, [user_features], exclude_rated, on_unknown=on_unknown, **cand
        )[0]

    def recommend_rows(
        self,
        ratings: dict[Any, float],
        n: int = 20,
        user_features: dict[str, Any] | None = None,
        exclude_rated: bool = True,
        *,
        on_unknown: str = "error",
        items: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`recommend` as rows: ``rank``, ``item_id``, ``score``, ``predicted_rating`` (when the model
        predicts ratings), ``title`` (when the catalogue has titles); what ``recsys recommend`` prints."""
        cand = {"items": items, "exclude": exclude, "where": where}
        ranked = rank_requests(self, [ratings], n, [user_features], exclude_rated, on_unknown, **cand)
        return candidates.row_dicts(self, ranked, 1)[0]

    def recommend_batch(
        self,
        list_of_ratings: Sequence[dict[Any, float]],
        n: int = 20,
        user_features: Sequence[dict[str, Any] | None] | None = None,
        exclude_rated: bool = True,
        *,
        on_unknown: str = "error",
        items: Sequence[Any] | None = None,
        exclude: Sequence[Any] | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[list[tuple[Any, float]]]:
        """:meth:`recommend` for many new users in one vectorised pass (the same candidates for all)."""
        cand = {"items": items, "exclude": exclude, "where": where}
        ranked = rank_requests(  # pairs hold no predicted rating: the catalogue's are not computed
            self, list_of_ratings, n, user_features, exclude_rated, on_unknown, **cand, with_predictions=False
        )
        return candidates.pairs(self, ranked, len(list_of_ratings))

    def recommend_user(self, user_id: Any, n: int = 20, **kwargs: Any) -> list[tuple[Any, float]]:
        """Top-``n`` (item id, score) for a user the model was trained on: :meth:`recommend` with their
        logged ratings (keywords: :func:`recsys.known_users.recommend_user`)."""
        return known_users.recommend_user(self, user_id, n, **kwargs)

    def recommend_users(self, user_ids: Sequence[Any], n: int = 20, **kwargs: Any) -> list[list[tuple]]:
        """:meth:`recommend_user` for many users, one vectorised pass (:mod:`recsys.known_users`)."""
        return known_users.recommend_users(self, user_ids, n, **kwargs)

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

    def similar_items(self, item_id: Any, n: int = 10, *, by: str = "auto") -> SimilarItems:
        """The ``n`` items most similar to ``item_id``, most similar first: ``[(item_id, similarity)]``
        with ``.source``, ``item_item`` or ``factors`` (``by="auto"``: the item-item matrix when the model
        has one). See :mod:`recsys.similar`."""
        self._require_fitted()
        return similar_items(self, item_id, n, by)

    def explain(
        self,
        ratings: dict[Any, float],
        item_id: Any,
        user_features: dict[str, Any] | None = None,
        *,
        on_unknown: str = "error",
        top: int = 5,
    ) -> dict[str, Any]:
        """Why ``item_id`` scores as it does for a new user with ``ratings``: the score, the predicted
        rating, the score's parts by path and the ``top`` support items behind it (:mod:`recsys.explain`)."""
        self._require_fitted()
        return explain_items(self, ratings, [item_id], user_features, on_unknown=on_unknown, top=top)[0]

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
        ``what`` as in :meth:`score_users` (``"rank"`` orders recommendations); ``"both"`` returns the
        pair (rank scores, ratings) from one adaptation.
        """
        self._require_fitted()
        if what not in ("rating", "rank", "both"):
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
            ratings=what != "rank",
        )
        ranks = scores.ranking
        ranks = ranks if self.learner.head.has_rank else clamp_to_scale(ranks, self.space.rating_scale)
        if what == "rank":
            return ranks
        rated = clamp_to_scale(scores.ratings, self.space.rating_scale)
        return (ranks, rated) if what == "both" else rated

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
        if not is_list_like(user_features):
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
