"""MLflow models-from-code entry point: the pyfunc is built from the installed ``recsys`` package.

MLflow copies this file into every logged model and runs it at load time (instead of unpickling an
object); the recommender's weights are restored from the ``recsys_model`` artifact (safetensors + JSON).
"""

import os

from mlflow.models import set_model

from recsys.tracking.pyfunc import RecsysPyfunc

# this file's copy sits in the MLflow model folder: artifacts resolving outside it are refused
set_model(RecsysPyfunc(model_root=os.path.dirname(os.path.abspath(__file__))))
