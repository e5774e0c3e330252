"""Classical cold-start recommenders (the evaluation's baselines, and the meta-learner's item-side starts).

Importing this package registers every method in :data:`BASELINES` (name -> class), in this order.
"""

# The import order is the registration order, i.e. the order of BASELINES (and of the reports' rows).
# isort: off
from recsys.models.classical.base import BASELINES, Baseline, RankingBaseline
from recsys.models.classical.means import GlobalMean, ItemMean, Popularity, Trending
from recsys.models.classical.mf import BiasedMF
from recsys.models.classical.implicit_als import ImplicitALS
from recsys.models.classical.item_item import EASE, ItemKNN
from recsys.models.classical.rating_knn import RatingKNN

# isort: on

__all__ = [
    "BASELINES",
    "EASE",
    "Baseline",
    "BiasedMF",
    "GlobalMean",
    "ImplicitALS",
    "ItemKNN",
    "ItemMean",
    "Popularity",
    "RankingBaseline",
    "RatingKNN",
    "Trending",
]
