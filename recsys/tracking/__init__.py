"""MLflow integration: tracked runs, pyfunc packaging, registry, model URIs."""
