"""Item-id embeddings initialised from ALS factors (``model.item_id_init="als"``)."""

from __future__ import annotations

import numpy as np
import torch

from recsys import ColdStartRecommender
from recsys.config import ModelConfig
from recsys.features.space import ITEM_ID_FIELD, FeatureSpace
from recsys.models.embedding import INIT_STD
from recsys.models.item_init import als_item_factors, init_item_ids_from_als, item_id_tokens
from recsys.models.network import ColdStartNet
from tests.helpers import space_and_log


def test_item_id_tokens_decode_to_each_items_own_id(synthetic_small) -> None:
    space = FeatureSpace.fit_dataset(synthetic_small, item_id_min_count=80)
    tokens = item_id_tokens(space)
    enc = space.item_encoder
    j = [f.name for f in enc.token_fields].index(ITEM_ID_FIELD)
    vocab = enc.token_fields[j].vocab
    ids = space.items.to_list()
    assert (tokens == -1).any() and (tokens >= 0).any()  # rare items map to unknown
    for i in range(space.n_items):
        local = vocab.lookup(str(ids[i]))
        expected = -1 if local == 0 else int(enc.field_offsets[j] + local)
        assert tokens[i] == expected


def test_no_item_id_field_means_nothing_to_initialise(synthetic_small) -> None:
    space = FeatureSpace.fit_dataset(synthetic_small, use_item_id=False)
    assert (item_id_tokens(space) == -1).all()


def test_als_factors_land_in_both_paths_rows_rescaled(synthetic_small) -> None:
    space, log = space_and_log(synthetic_small)
    torch.manual_seed(0)
    net = ColdStartNet.for_space(ModelConfig(embedding_dim=8, hidden=(16,)), space, rating_mean=3.5)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    n = init_item_ids_from_als(net, space, log, seed=0)
    tokens = item_id_tokens(space)
    known = np.nonzero(tokens >= 0)[0]
    assert n == len(known) > 0
    factors = als_item_factors(log, space.n_items, 8, implicit=False, seed=0)
    for path, emb in (("rating", net.item_embedding), ("ranking", net.rank_item_embedding)):
        rows = emb.bag.weight.detach()[torch.from_numpy(tokens[known])].numpy()
        expected = factors[path][known]
        # the same directions, scaled to the table's initial spread
        np.testing.assert_allclose(rows, expected * (INIT_STD / expected.std()), rtol=1e-5, atol=1e-6)
    assert not np.allclose(factors["rating"][known], factors["ranking"][known])
    # every other parameter (feature tokens, user tables, the head) is untouched
    changed = {name for name, p in net.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"item_embedding.bag.weight", "rank_item_embedding.bag.weight"}
    other = np.setdiff1d(np.arange(net.item_embedding.bag.weight.shape[0]), tokens[known])
    assert torch.equal(net.item_embedding.bag.weight[other], before["item_embedding.bag.weight"][other])


def test_fit_with_als_init_records_how_many_items_it_initialised(synthetic_small) -> None:
    ds = synthetic_small
    rec = ColdStartRecommender(
        **{
            "model.item_id_init": "als",
            "model.embedding_dim": 8,
            "model.hidden": (16,),
            "train.epochs": 1,
            "train.meta_batch_size": 32,
        }
    ).fit_dataset(ds)
    assert rec.info["item_id_init"] == int((item_id_tokens(rec.space) >= 0).sum()) > 0
    plain = {
        "model.item_id_init": "random",
        "model.embedding_dim": 8,
        "model.hidden": (16,),
        "train.epochs": 1,
    }
    assert "item_id_init" not in ColdStartRecommender(**plain).fit_dataset(ds).info


def test_als_start_ranks_a_drifting_log_better_than_a_random_start() -> None:
    """Each user of this log rates 10 of the 12 items around their join date; ALS factors already
    place neighbouring items together, so after 3 epochs the validation users' catalogue ranking
    (Recall@20 + nDCG@10, out of 2) is better than from a random start: 1.758 vs 1.590 (1.794 vs 1.619
    on the log's seed 1); the margin asked for is half of that. The added classical paths are off: the
    model's own ranking is what the start changes, and an ALS ranking path tuned over the implicit-als
    baseline's whole grid (tried on 2026-12-06) made up most of a random start's loss on this log (1.813
    vs 1.799 with the paths). When written it was 1.71 vs 1.34, with 15 of the 40 validation users (their items
    mostly past the training catalogue's end) given tasks with an empty support; validation tasks now
    leave such users out."""
    from tests.test_trend import _drifting_log, _fit

    frame, validation = _drifting_log()
    paths_off = {
        "model.hybrid.trend": True,
        "model.hybrid.als_path": False,
        "model.hybrid.classical_item_item": False,
    }
    quality = {
        init: _fit(frame, validation, **{"model.item_id_init": init} | paths_off).info["trend"][
            "validation_without"
        ]
        for init in ("als", "random")
    }
    assert quality["als"] > quality["random"] + 0.08
