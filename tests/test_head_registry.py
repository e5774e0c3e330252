"""Heads declare what they do: a registry of heads by ``model.head`` name, each a :class:`Head` with its
capabilities declared on the class, and no code that probes a head with ``hasattr`` / ``getattr``."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import torch

from recsys.config import ModelConfig
from recsys.errors import SpecError
from recsys.models.heads import HEADS, Head, HeadCapabilities, HybridHead, head_class, register_head
from recsys.models.network import ColdStartNet

RECSYS = Path(__file__).resolve().parents[1] / "recsys"

# capability -> the hooks a head declaring it must implement itself (not inherit the base no-ops)
HOOKS = {
    "ranking_output": ("rank",),
    "item_offsets": ("set_item_offsets",),
    "item_item_blend": ("set_item_item", "item_item_rows", "item_item_active"),
    "trend_prior": ("set_trend",),
    "two_paths": ("param_groups",),
}


def _net(head: str, n_items: int = 6, **overrides) -> ColdStartNet:
    cfg = ModelConfig(head=head, embedding_dim=4, hidden=(8,), factor_dim=4, **overrides)
    return ColdStartNet(
        cfg,
        item_vocab=10,
        item_token_fields=1,
        item_dense=0,
        user_vocab=5,
        user_token_fields=1,
        user_dense=0,
        n_items=n_items,
    )


def test_every_registered_head_subclasses_head_and_declares_its_own_capabilities():
    assert set(HEADS) == {"melu", "factorized", "hybrid"}
    for name, cls in HEADS.items():
        assert issubclass(cls, Head)
        assert cls.name == name
        assert isinstance(cls.__dict__.get("capabilities"), HeadCapabilities), name


def test_config_head_names_are_exactly_the_registered_heads():
    allowed = typing.get_args(typing.get_type_hints(ModelConfig)["head"])
    assert sorted(allowed) == sorted(HEADS)
    assert ModelConfig().head in HEADS


def test_a_declared_capability_comes_with_the_heads_own_hooks():
    for name, cls in HEADS.items():
        for capability, hooks in HOOKS.items():
            for hook in hooks:
                own = getattr(cls, hook) is not getattr(Head, hook)
                assert own == getattr(cls.capabilities, capability), (name, capability, hook)


def test_hybrid_head_declares_two_paths_a_ranking_output_and_its_data_driven_buffers():
    caps = HEADS["hybrid"].capabilities
    assert caps == HeadCapabilities(
        predicts_ratings=True,
        ranking_output=True,
        closed_form_adaptation=True,
        item_offsets=True,
        item_item_blend=True,
        trend_prior=True,
        path_weights=True,
        two_paths=True,
    )
    assert HEADS["melu"].capabilities == HEADS["factorized"].capabilities == HeadCapabilities()


def test_unknown_head_name_is_a_spec_error_listing_the_registered_heads():
    with pytest.raises(SpecError, match=r"model\.head.*'hybird'.*registered: factorized, hybrid, melu"):
        head_class("hybird")


def test_network_built_with_an_unregistered_head_name_raises_spec_error():
    cfg = ModelConfig(embedding_dim=4, hidden=(8,), factor_dim=4)
    cfg.head = "hybird"  # edited after it was built
    with pytest.raises(SpecError, match=r"model\.head"):
        ColdStartNet(
            cfg,
            item_vocab=10,
            item_token_fields=1,
            item_dense=0,
            user_vocab=5,
            user_token_fields=1,
            user_dense=0,
        )


@pytest.mark.parametrize("name", ["melu", "factorized", "hybrid"])
def test_network_builds_the_registered_head_and_its_paths_from_the_declared_capabilities(name):
    net = _net(name)
    assert type(net.head) is HEADS[name]
    assert net.two_paths == HEADS[name].capabilities.two_paths
    assert hasattr(net, "rank_item_embedding") == net.two_paths
    assert net.head.has_rank == HEADS[name].capabilities.ranking_output
    assert (net.param_groups() is not None) == net.two_paths


def test_item_item_is_active_only_when_the_config_and_catalogue_size_allow_it():
    assert _net("hybrid", n_items=6).head.item_item_active
    assert not _net("hybrid", n_items=6, hybrid={"item_item": False}).head.item_item_active
    assert not _net("hybrid", n_items=6, hybrid={"item_item_max_items": 5}).head.item_item_active
    assert not _net("melu").head.item_item_active
    assert not _net("factorized").head.item_item_active


def test_hooks_of_undeclared_capabilities_are_no_ops_and_leave_the_weights_alone():
    head = _net("melu").head
    before = {k: v.clone() for k, v in head.state_dict().items()}
    head.set_item_offsets(torch.ones(6))
    head.set_trend(torch.ones(6), 1.0)
    head.set_item_item(torch.ones(6, 6))
    assert head.param_groups() == {}
    after = head.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_registering_a_head_without_its_own_capabilities_is_refused():
    class Undeclared(HybridHead):
        pass

    with pytest.raises(TypeError, match="does not declare its capabilities"):
        register_head("undeclared")(Undeclared)
    with pytest.raises(TypeError, match="not a Head subclass"):
        register_head("module")(torch.nn.Linear)
    assert "undeclared" not in HEADS and "module" not in HEADS


def test_recsys_source_never_probes_a_head_with_hasattr_or_getattr():
    probe = re.compile(r"\b(hasattr|getattr)\(\s*[\w.]*head\b")
    hits = [
        f"{path.relative_to(RECSYS.parent)}:{n}: {line.strip()}"
        for path in sorted(RECSYS.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line)
    ]
    assert hits == []
    assert probe.search('x = getattr(rec.learner.head, "trend_weight", None)')  # the pattern can fail


def test_no_code_outside_the_heads_module_asks_for_the_hybrid_head_by_name():
    by_name = re.compile(r"head\s*[!=]=\s*[\"']\w+[\"']")
    hits = [
        f"{path.relative_to(RECSYS.parent)}:{n}: {line.strip()}"
        for path in sorted(RECSYS.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if by_name.search(line)
    ]
    assert hits == []
    assert by_name.search('self.two_paths = cfg.head == "hybrid"')
