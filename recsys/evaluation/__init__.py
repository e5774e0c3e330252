"""Cold-start evaluation: metrics, protocols, baselines, reports and plots."""
