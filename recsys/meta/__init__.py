"""Meta-learning: the functional MAML inner loop (vectorised over users) and the outer trainer."""

from recsys.meta.maml import MetaLearner, TaskTensors

__all__ = ["MetaLearner", "TaskTensors"]
