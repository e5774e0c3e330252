"""Memory discipline of the default model on a large catalogue: no dense n_items x n_items array.

A 100,000-item catalogue trained with the default config (one short epoch) in a subprocess whose
address space is capped at 6 GB: one dense 100k x 100k float32 matrix alone would be 40 GB, so the
run only finishes if the item-item blend (and everything else on the default path) stays sparse.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

CAP_BYTES = 6 * 1024**3

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
    from recsys import ColdStartRecommender
    from recsys.data.synthetic import make_synthetic

    ds = make_synthetic(n_users=400, n_items=100_000, n_interactions=10_000, seed=3)
    rec = ColdStartRecommender(**{{"train.epochs": 1, "train.patience": 0}}).fit_dataset(ds)
    head = rec.learner.head
    print(json.dumps({{
        "n_items": rec.space.n_items,
        "item_item": rec.info.get("item_item"),
        "sparse": bool(head.item_item_sparse),
        "dense_numel": head.item_item.numel(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }}))
    """
)


@pytest.mark.slow
def test_a_100k_item_catalogue_trains_with_the_default_config_under_a_6_gb_address_space_cap() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(cap=CAP_BYTES)], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["n_items"] == 100_000
    assert out["sparse"] and out["dense_numel"] == 0
    assert "sparse, 100,000 items > dense limit" in out["item_item"]
    assert out["peak_rss_mb"] < 4096
