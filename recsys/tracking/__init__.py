"""MLflow integration: tracked runs, pyfunc packaging, registry, model URIs.

- :mod:`recsys.utils.locations` (below the front, which loads models from these locations): tracking URI resolution (default: ``sqlite:///mlflow.db`` here) and model
  locations (folders, ``runs:/``, ``models:/``), without importing MLflow until needed;
- :mod:`recsys.tracking.mlflow_run`: :class:`~recsys.tracking.mlflow_run.Tracker`, one MLflow run with
  params, per-epoch metrics, artifacts and the model, resilient to a tracking server going away;
- :mod:`recsys.tracking.pyfunc`: the recommender as an MLflow pyfunc model (models-from-code);
- :mod:`recsys.tracking.registry`: aliases and the champion/challenger gate.
"""
