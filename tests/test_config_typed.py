"""Typed config (issue 17, item 4): code derives changed configs with ``RecommenderConfig.replace``
(validated like any config), the dotted form (``meta.inner_steps``) is only the CLI/JSON edge, and the
hybrid head's options live in their own section, ``model.hybrid``. Configs, saved models and
checkpoints written with those options flat in ``model`` (``{"model": {"trend": false}}``) keep
their meaning: saved files silently, a user's config with a FutureWarning."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from recsys import ColdStartRecommender
from recsys.config import (
    HYBRID_KEYS,
    HybridConfig,
    MetaConfig,
    ModelConfig,
    RecommenderConfig,
    TrainConfig,
)
from recsys.data.synthetic import make_synthetic
from recsys.errors import SpecError
from recsys.evaluation.ablations import RETRAINED_ABLATIONS
from recsys.tracking.params import flatten_params, run_params
from recsys.utils.checkpoint import load_tensors, save_tensors
from recsys.utils.io import sha256_file

REPO = Path(__file__).resolve().parents[1]

# non-default hybrid options, each visible in the network or the fit: item_item off drops the
# item-item buffer, the support trust adds parameters a "global" model lacks, trend off skips the prior
HYBRID = {"fold_in_trust": "support", "item_item": False, "item_item_kinds": "ease+cosine", "trend": False}
NESTED = {"model": {"embedding_dim": 4, "hidden": [8], "factor_dim": 8, "hybrid": HYBRID}}
FLAT = {"model": {"embedding_dim": 4, "hidden": [8], "factor_dim": 8, **HYBRID}}
TINY_TRAIN = {"epochs": 1, "meta_batch_size": 16, "num_threads": 1}


def _flatten_saved(raw: dict) -> dict:
    """A saved config as versions before ``model.hybrid`` wrote it."""
    raw = json.loads(json.dumps(raw))
    raw["model"].update(raw["model"].pop("hybrid"))
    return raw


# ---- flat hybrid keys ----------------------------------------------------------------------------


def test_a_config_json_with_the_old_flat_hybrid_keys_loads_with_the_same_meaning(tmp_path) -> None:
    (tmp_path / "old.json").write_text(json.dumps(FLAT))
    with pytest.warns(FutureWarning, match=r"model\.trend.*model\.hybrid"):
        old = RecommenderConfig.from_file(tmp_path / "old.json")
    assert old == RecommenderConfig.from_dict(NESTED)
    assert old.model.hybrid == HybridConfig(**HYBRID)
    assert "trend" not in old.to_dict()["model"] and old.to_dict()["model"]["hybrid"]["trend"] is False


def test_a_toml_config_with_a_flat_hybrid_key_loads_with_the_same_meaning(tmp_path) -> None:
    (tmp_path / "old.toml").write_text("[model]\nitem_item = false\n")
    (tmp_path / "new.toml").write_text("[model.hybrid]\nitem_item = false\n")
    with pytest.warns(FutureWarning, match=r"model\.item_item"):
        old = RecommenderConfig.from_file(tmp_path / "old.toml")
    assert old == RecommenderConfig.from_file(tmp_path / "new.toml")
    assert old.model.hybrid.item_item is False


def test_the_flat_dotted_form_and_keyword_form_are_read_as_the_hybrid_section() -> None:
    with pytest.warns(FutureWarning, match=r"model\.trend"):
        dotted = RecommenderConfig().override(**{"model.trend": False})
    assert dotted == RecommenderConfig().override(**{"model.hybrid.trend": False})
    assert dotted.model.hybrid.trend is False
    with pytest.warns(FutureWarning, match=r"model\.fold_in_trust"):
        direct = ModelConfig(fold_in_trust="global")
    assert direct == ModelConfig(hybrid=HybridConfig(fold_in_trust="global"))
    with pytest.warns(FutureWarning):
        rec = ColdStartRecommender(**{"model.item_item_max_items": 10})
    assert rec.config.model.hybrid.item_item_max_items == 10


def test_the_nested_form_gives_no_warning(recwarn) -> None:
    cfg = RecommenderConfig.from_dict(NESTED).override(**{"model.hybrid.item_item_kinds": "ease"})
    assert ModelConfig(hybrid={"trend": False}).hybrid.trend is False
    assert cfg.model.hybrid.item_item_kinds == "ease"
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_a_hybrid_key_given_both_flat_and_in_the_section_is_refused() -> None:
    with pytest.raises(SpecError, match=r"model\.trend is also given as model\.hybrid\.trend"):
        RecommenderConfig.from_dict({"model": {"trend": False, "hybrid": {"trend": True}}})


def test_a_bad_flat_hybrid_value_names_its_key_in_the_hybrid_section() -> None:
    with pytest.warns(FutureWarning), pytest.raises(SpecError, match=r"config key model\.hybrid\.trend"):
        RecommenderConfig.from_dict({"model": {"trend": "yes"}})
    with pytest.raises(SpecError, match=r"\[model\.hybrid\]: unknown key"):
        RecommenderConfig.from_dict({"model": {"hybrid": {"tren": False}}})


def test_every_hybrid_key_left_the_model_section() -> None:
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(HYBRID_KEYS) == {
        "fold_in_trust",
        "item_item",
        "item_item_kinds",
        "item_item_tasks",
        "trend",
        "rank_mix",
        "fold_in_weight",
        "mf_fallback",
        "rating_mix",
        "als_path",
        "classical_item_item",
        "item_item_max_items",
        "item_item_dense_items",
        "item_item_neighbours",
    }
    assert not set(HYBRID_KEYS) & model_keys and "hybrid" in model_keys
    assert "factor_dim" in model_keys  # shared by the factorized and hybrid heads


# ---- saved models and checkpoints with flat keys ---------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3)
    folder = tmp_path_factory.mktemp("typed")
    rec = ColdStartRecommender(NESTED | {"train": TINY_TRAIN})
    rec.fit_dataset(ds, checkpoint=folder / "checkpoint.safetensors")
    rec.save(folder / "model")
    return rec, ds, folder


def test_a_model_saved_with_flat_hybrid_keys_loads_and_scores_identically(trained, tmp_path, recwarn) -> None:
    rec, ds, folder = trained
    saved = tmp_path / "model"
    saved.mkdir()
    for f in (folder / "model").iterdir():
        (saved / f.name).write_bytes(f.read_bytes())
    raw = json.loads((saved / "config.json").read_text())
    assert raw["model"]["hybrid"]["item_item"] is False  # written nested now
    (saved / "config.json").write_text(json.dumps(_flatten_saved(raw)))
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["config.json"] = sha256_file(saved / "config.json")  # as the older version wrote it
    (saved / "manifest.json").write_text(json.dumps(manifest))

    loaded = ColdStartRecommender.load(saved)
    assert loaded.config == rec.config
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]  # a saved file is not a mistake
    first = ds.interactions.filter(ds.interactions["user_id"] == ds.interactions["user_id"][0])
    ratings = dict(zip(first["item_id"].to_list()[:4], first["rating"].to_list()[:4], strict=True))
    assert loaded.recommend(ratings, n=10) == rec.recommend(ratings, n=10)
    items = first["item_id"].to_list()[4:9]
    np.testing.assert_array_equal(loaded.predict(ratings, items), rec.predict(ratings, items))


def test_a_model_saved_before_fold_in_trust_existed_still_gets_the_global_shrinkage() -> None:
    raw = {"model": {"trend": False}}  # flat and without fold_in_trust: an older file
    cfg = RecommenderConfig.from_saved(raw)
    assert cfg.model.hybrid.fold_in_trust == "global" and cfg.model.hybrid.trend is False
    assert raw == {"model": {"trend": False}}  # the caller's dict is left as it was
    assert RecommenderConfig.from_saved({"model": {}}).model.hybrid.fold_in_trust == "global"
    assert RecommenderConfig.from_saved(RecommenderConfig().to_dict()).model.hybrid.fold_in_trust == "support"


def test_a_checkpoint_with_flat_hybrid_keys_loads_with_the_same_config(trained, tmp_path) -> None:
    rec, _, folder = trained
    tensors, meta = load_tensors(folder / "checkpoint.safetensors")
    meta["config"] = _flatten_saved(meta["config"])
    save_tensors(tmp_path / "old.safetensors", tensors, meta)
    resumed = ColdStartRecommender.from_checkpoint(tmp_path / "old.safetensors")
    assert resumed.config == rec.config


# ---- replace -------------------------------------------------------------------------------------


def test_replace_changes_only_the_given_keys() -> None:
    base = RecommenderConfig.from_dict(NESTED)
    cfg = base.replace(meta={"inner_steps": 5, "first_order": True}, model={"hybrid": {"trend": True}})
    assert (cfg.meta.inner_steps, cfg.meta.first_order, cfg.model.hybrid.trend) == (5, True, True)
    assert cfg.model.hybrid.item_item is False and cfg.model.embedding_dim == 4  # merged, not reset
    assert cfg.train == base.train and base.meta.inner_steps == 0  # the original is untouched
    whole = base.replace(meta=dataclasses.replace(base.meta, inner_steps=5))
    assert whole.meta == dataclasses.replace(base.meta, inner_steps=5)
    assert base.replace(model={"hybrid": HybridConfig(trend=False)}).model.hybrid == HybridConfig(trend=False)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"meta": {"inner_steps": -1}}, r"config key meta\.inner_steps: expected an integer >= 0"),
        ({"train": {"epochs": "ten"}}, r"config key train\.epochs"),
        ({"model": {"head": "hybird"}}, r"config key model\.head"),
        ({"model": {"hybrid": {"trend": 3}}}, r"config key model\.hybrid\.trend"),
        ({"model": {"hybrid": {"tren": False}}}, r"\[model\.hybrid\]: unknown key"),
        ({"meta": {"inner_step": 5}}, r"\[meta\]: unknown key"),
        ({"train": {"support_min": 9, "support_max": 3}}, r"support_min <= support_max"),
        ({"trian": {"epochs": 2}}, r"unknown config section 'trian'"),
        ({"meta": TrainConfig()}, r"config section meta: expected a MetaConfig, got TrainConfig"),
        ({"meta": 5}, r"config section meta: expected an object of keys or a MetaConfig"),
    ],
)
def test_replace_validates_like_any_config(changes, words) -> None:
    with pytest.raises(SpecError, match=words):
        RecommenderConfig().replace(**changes)


def test_every_retrained_ablation_is_a_valid_typed_change_with_its_report_label() -> None:
    labels = {key: label for key, (label, _) in RETRAINED_ABLATIONS.items()}
    assert labels == {
        "second-order": "MAML 5 steps, second-order",
        "first-order": "MAML 5 steps, first-order",
        "meta-sgd": "Meta-SGD 5 steps, second-order",
        "melu": "MeLU architecture, 5 steps",
        "no-item-item": "without item-item blend",
        "no-als-init": "item ids not initialised from ALS",
        "random-query": "random query for temporal-support tasks",
        "global-trust": "one global fold-in shrinkage",
    }
    base = RecommenderConfig()
    for key, (_, changes) in RETRAINED_ABLATIONS.items():
        assert all(isinstance(v, dict) for v in changes.values()), key
        assert base.replace(**changes) != base, key
    assert base.replace(**RETRAINED_ABLATIONS["no-item-item"][1]).model.hybrid.item_item is False
    assert base.replace(**RETRAINED_ABLATIONS["global-trust"][1]).model.hybrid.fold_in_trust == "global"
    melu = base.replace(**RETRAINED_ABLATIONS["melu"][1])
    assert (melu.model.head, melu.meta.inner_steps, melu.meta.rank_weight, melu.meta.inner_lr) == (
        "melu",
        5,
        0.0,
        0.005,
    )


# ---- the dotted form stays at the edge -------------------------------------------------------------


def _dotted_keys() -> set[str]:
    """Every dotted config key, the flat hybrid ones included (``model.trend``)."""
    keys = set()
    for section, klass in (("model", ModelConfig), ("meta", MetaConfig), ("train", TrainConfig)):
        keys |= {f"{section}.{f.name}" for f in dataclasses.fields(klass)}
    keys |= {f"model.hybrid.{k}" for k in HYBRID_KEYS} | {f"model.{k}" for k in HYBRID_KEYS}
    return keys


def _dotted_literals(path: Path, keys: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in keys
    ]


EDGE_MODULES = {"recsys/config"}
"""Where a dotted config key may be written by hand: the config package itself (the command line
overrides the training keys through ``recsys.workflows.build_config``'s arguments; MLflow param names
are produced from ``to_dict()``, not written)."""


def _is_edge(path: Path) -> bool:
    name = str(path.relative_to(REPO))
    return any(name == edge or name.startswith(edge + "/") for edge in EDGE_MODULES)


def test_no_dotted_config_strings_remain_in_code_outside_the_edge_modules() -> None:
    keys = _dotted_keys()
    files = [
        p for folder in ("recsys", "pipelines", "benchmarks") for p in sorted((REPO / folder).rglob("*.py"))
    ]
    found = [hit for p in files if not _is_edge(p) for hit in _dotted_literals(p, keys)]
    assert found == []
    # the detector does find the edge's own dotted keys (it is not vacuous)
    assert any("'model.hybrid'" in hit for hit in _dotted_literals(REPO / "recsys/config/sections.py", keys))


def test_tracked_params_name_the_hybrid_keys_by_their_section() -> None:
    params = flatten_params(run_params(config=RecommenderConfig.from_dict(NESTED)))
    assert params["model.hybrid.trend"] == "False" and params["model.hybrid.item_item_kinds"] == "ease+cosine"
    assert params["model.embedding_dim"] == "4" and params["meta.inner_steps"] == "0"
    assert not {f"model.{k}" for k in HYBRID_KEYS} & set(params)
    assert all(re.fullmatch(r"[\w./ -]+", k) for k in params)
