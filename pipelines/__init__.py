"""Batch pipelines as plain Python entry points (``python -m pipelines.<name> --help``).

- ``train_and_register``: ingest, meta-train, evaluate against the baselines, register, and promote to
  ``champion`` only if the new version beats the current champion on validation users.
- ``demo``: the whole story on MovieLens-100k with the local MLflow store (``make demo``).
"""
