"""recsys: a cold-start recommender engine.

A MAML-style meta-learner in the spirit of MeLU (Lee et al., KDD 2019) learns a shared initialisation
from many users' ratings; a new user's handful of ratings adapts it in a few gradient steps, then the
whole catalogue is scored.
"""

__version__ = "0.1.0"
