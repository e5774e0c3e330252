"""recsys: a cold-start recommender engine.

A MAML-style meta-learner in the spirit of MeLU (Lee et al., KDD 2019) learns a shared initialisation
from many users' ratings; a new user's handful of ratings adapts it in a few gradient steps, then the
whole catalogue is scored.
"""

from recsys.version import __version__

__all__ = ["ColdStartRecommender", "RecommenderConfig", "__version__"]


def __getattr__(name: str):
    # imported lazily so that `recsys --help` and the data commands start without loading torch
    if name == "ColdStartRecommender":
        from recsys.recommender import ColdStartRecommender  # lazy: torch

        return ColdStartRecommender
    if name == "RecommenderConfig":
        from recsys.config import RecommenderConfig  # lazy, like the recommender

        return RecommenderConfig
    raise AttributeError(f"module 'recsys' has no attribute {name!r}")
