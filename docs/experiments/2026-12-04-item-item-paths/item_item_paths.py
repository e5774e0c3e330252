"""Diagnostic (the accuracy issue): usage ``python item_item_paths.py [temporal|random] [random|as-training]``.

On NESTED temporal pseudo-new users of ML-100k (training users only), how the
model's item-item path compares with plain liked-only EASE over the same B matrix, by K.

Variants (re-scored, same trained model):
  default; no trend; item-item path alone (learned weights) + trend; item-item alone no trend;
  plain liked sum (weight 1 on support items rated >= 4, 0 otherwise; rank_mix (0,1), no trend);
  plain liked sum + encoder (rank_mix (1,1)) + trend."""

import copy
import sys

from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.evaluation.report import write_report
from recsys.evaluation.runner import EvalSettings, Evaluation, MetaScorer, Method

protocol = sys.argv[1] if len(sys.argv) > 1 else "temporal"
tasks_option = sys.argv[2] if len(sys.argv) > 2 else "random"  # model.hybrid.item_item_tasks


def variant(rec, ds, mix=None, trend=True, plain=False, threshold=4.0):
    r = copy.deepcopy(rec)
    h = r.learner.head
    if mix is not None:
        h.set_rank_mix(*mix)
    if not trend:
        h.trend_weight.zero_()
    if plain:

        def weights(p, z, sy, sm, h=h):
            return (sy >= threshold).to(sy.dtype) * sm.to(sy.dtype)

        h.item_item_weights = weights
    r._cache = None
    return MetaScorer(r, ds)


class Diag(Evaluation):
    def _meta_methods(self, ds, split, seed):
        methods, space = super()._meta_methods(ds, split, seed)
        rec = methods[0].scorer.rec
        ii = rec.learner.head.rank_mix.tolist()[1]
        extra = {
            "no trend": variant(rec, ds, trend=False),
            "item-item alone": variant(rec, ds, mix=(0.0, ii)),
            "item-item alone, no trend": variant(rec, ds, mix=(0.0, ii), trend=False),
            "plain liked EASE sum, no trend": variant(rec, ds, mix=(0.0, 1.0), trend=False, plain=True),
            "plain liked EASE sum + encoder + trend": variant(rec, ds, plain=True),
        }
        for name, sc in extra.items():
            methods.append(Method(f"meta-learner ({name})", sc, "ablation"))
        return methods, space


ds = load_dataset("ml-100k")
s = EvalSettings(
    protocols=[protocol],
    shots=[3, 10, 20],
    seeds=1,
    baselines=["ease", "item-knn", "trending"],
    ablations=[],
    nested=True,
    n_boot=200,
)
config = RecommenderConfig().override(**{"model.hybrid.item_item_tasks": tasks_option})
ev = Diag(ds, s, config=config).run()
rep = write_report(ev, f"reports/item-item-paths-{protocol}-{tasks_option}")
print("model choices:", rep["model_choices"])
for k in ("3", "10", "20"):
    rows = {r["method"]: r for r in rep["results"] if r["k"] == k}
    print(f"K={k}")
    for m, r in rows.items():
        print(f"  {m[:60]:60s} R@20 {r['recall@20']['mean']:.3f} nDCG@10 {r['ndcg@10']['mean']:.3f}")
