"""The steps the CLI, the pipelines and the demo share: load data, build the config, hold out new users,
train."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from recsys.config import RecommenderConfig
from recsys.data.dataset import Dataset, load_dataset, load_files
from recsys.data.log_checks import check_trainable
from recsys.data.protocols import ProtocolSplit, split_protocol, task_order
from recsys.data.schema import USER
from recsys.errors import SpecError
from recsys.recommender import ColdStartRecommender

log = logging.getLogger(__name__)


def load_data(
    dataset: str | None = None,
    *,
    interactions: str | Path | None = None,
    users: str | Path | None = None,
    items: str | Path | None = None,
    spec: str | Path | None = None,
    columns: dict[str, str] | None = None,
    rating_scale: tuple[float, float] | None = None,
    implicit: bool = False,
) -> Dataset:
    """A dataset by built-in name / spec / folder, or from loose files."""
    if spec is not None:
        return load_dataset(spec)
    if dataset is not None:
        return load_dataset(dataset, columns=columns, rating_scale=rating_scale, implicit=implicit)
    if interactions is None:
        raise SpecError("give a dataset (--dataset NAME) or an interaction file (--interactions FILE)")
    return load_files(
        interactions, users=users, items=items, columns=columns, rating_scale=rating_scale, implicit=implicit
    )


def build_config(
    config_file: str | Path | None = None,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> RecommenderConfig:
    """The config of a run: ``config_file`` (TOML or JSON) or the defaults, with the training keys the
    command line and the pipelines override (None: the file's value). ``epochs`` given: exactly that
    many are planned (early stopping aside), so the task budget ``train.max_tasks`` is lifted."""
    cfg = RecommenderConfig.from_file(config_file) if config_file else RecommenderConfig()
    changed = {k: v for k, v in {"epochs": epochs, "seed": seed, "device": device}.items() if v is not None}
    if epochs is not None:
        changed["max_tasks"] = None
    return cfg.replace(train=changed) if changed else cfg


HOLDOUTS = ("none", "temporal", "random", "melu")
"""``recsys train --holdout`` values: ``none`` (the production default: learn from every user) or an
evaluation protocol whose new users are held out of training."""


def default_protocol(ds: Dataset) -> str:
    """The evaluation protocol a dataset calls for (``recsys evaluate``'s default)."""
    if "state" in ds.interactions.columns:
        return "melu"
    return "temporal" if ds.has_timestamps else "random"


def protocol_validation(config: RecommenderConfig, protocol: str | None) -> RecommenderConfig:
    """``config`` with its validation tasks drawn in the order the holdout ``protocol`` draws its new
    users' tasks (:func:`~recsys.data.protocols.task_order`: ``temporal``, a support of first ratings
    by time and the latest as query; ``random`` under ``random`` and ``melu``), where
    ``train.validation_order`` is ``auto``. Under a holdout the model is being evaluated, and the
    baselines it is compared with are tuned on tasks of that order
    (:meth:`recsys.evaluation.runner.Evaluation.tuning_tasks`): the meta-learner's choices (best epoch,
    the choices after training) get the same. Without a holdout (``none``, the production default) the
    config is returned as it is (``auto``: the training order)."""
    order = task_order(protocol)
    if order is None or config.train.validation_order != "auto":
        return config
    return config.replace(train={"validation_order": order})


def train_model(
    ds: Dataset,
    config: RecommenderConfig,
    *,
    protocol: str | None = None,
    seed: int | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    callbacks: list | None = None,
) -> tuple[ColdStartRecommender, ProtocolSplit | None]:
    """Train on the training users of ``protocol`` (``none``: every user, validation carved out); under
    a holdout protocol the validation tasks follow it (:func:`protocol_validation`).

    The model records the protocol, seed and a fingerprint of the held-out new users, so evaluation
    can tell when a model has seen them.
    """
    seed = config.train.seed if seed is None else seed
    if seed != config.train.seed:
        config = config.replace(train={"seed": seed})
    config = protocol_validation(config, protocol)
    rec = ColdStartRecommender(config)
    split = None
    if protocol and protocol != "none":
        split = split_protocol(ds, protocol, seed=seed, validation_fraction=config.train.validation_fraction)
        train, val_users = split.train, split.validation_users
        check_trainable(
            train,
            min_user_ratings=config.train.min_user_ratings,
            context=f"left for training by the {protocol} holdout",
        )
    else:
        train, val_users = ds.interactions, None
    users = ds.users
    if users is not None and split is not None:
        users = users.filter(pl.col(USER).is_in(train[USER].unique().implode()))
    rec.fit(
        train,
        users,
        ds.items,
        user_fields=ds.spec.user_fields,
        item_fields=ds.spec.item_fields,
        title_field=ds.spec.title_field,
        rating_scale=ds.rating_scale,
        validation_users=val_users,
        checkpoint=checkpoint,
        resume=resume,
        callbacks=callbacks,
    )
    rec.info["dataset"] = ds.name
    rec.info["holdout"] = split.describe() if split else {"protocol": "none"}
    return rec, split


def summary_text(rec: ColdStartRecommender) -> str:
    """What the model was trained on, then the validation users' figures."""
    info = rec.info
    holdout = (info.get("holdout") or {}).get("protocol", "none")
    used = (
        f"trained on {info.get('train_users', 0):,} users ({info.get('train_interactions', 0):,} "
        f"interactions); {info.get('validation_users', 0):,} validation users carved out for model "
        "selection; "
        + ("no new users held out" if holdout == "none" else f"new users held out by the {holdout} holdout")
    )
    if info.get("item_item"):
        used += f"\nitem-item blend: {info['item_item']}"
    if info.get("fold_in_weight"):
        used += f"\nrating fold-in weight chosen on validation users: {info['fold_in_weight']['weight']:g}"
    if info.get("mf_fallback"):
        used += f"\nrating MF fallback chosen on validation users: {info['mf_fallback']['chosen']}"
    if info.get("rating_mix"):
        used += f"\nrating combiner chosen on validation users: {info['rating_mix']['chosen']}"
    if info.get("rank_mix"):
        mix = info["rank_mix"]
        used += (
            f"\nranking paths chosen on validation users: support encoder x {mix['support_encoder']:g}, "
            f"item-item x {mix['item_item']:g}"
        )
    for key, title in (("classical_item_item", "classical item-item path"), ("als_path", "ALS ranking path")):
        if info.get(key):
            used += f"\n{title} chosen on validation users: {info[key]['chosen']}"
    return used + "\n" + ("\n".join(rec.summary.lines()) if rec.summary else "(no validation users)")


def saved_size_text(path: str | Path) -> str:
    """The size of a saved model folder (every file in it), e.g. ``12.4 MB``."""
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    size = sum(p.stat().st_size for p in files if p.name != "checkpoint.safetensors")
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size / 1e3:,.1f} kB"


def model_info(rec: ColdStartRecommender) -> dict[str, Any]:
    return dict(rec.info)
