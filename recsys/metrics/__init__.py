"""Metrics shared by training, the front and evaluation: per-user metrics and top-k (:mod:`.core`), and the
metrics of one scorer on one set of tasks (:mod:`.task_metrics`)."""
