"""The recommender as an MLflow pyfunc model (models-from-code, no pickle on the load path).

A logged model holds:

- ``pyfunc_code.py``: a short file that imports the installed ``recsys`` package and calls
  ``mlflow.models.set_model(RecsysPyfunc(model_root=<its own folder>))``; MLflow runs it instead of
  unpickling an object;
- ``artifacts/recsys_model/``: the recommender saved by ``ColdStartRecommender.save`` (safetensors +
  JSON, checksummed), restored by :meth:`RecsysPyfunc.load_context`, which refuses an artifact path
  that resolves outside the model folder (an edited ``MLmodel`` pointing elsewhere, a symlink out);
- a signature and an input example.

Input: one row per rating of a new user: ``user_id`` (string), ``item_id`` (string; matched by the id
rule of :mod:`recsys.data.ids`), ``rating`` (a number) and, optionally, the model's user-feature columns. A row with
``item_id`` and ``rating`` both null declares a user with no ratings (pure cold start). Params: ``n``
(long, default 10), ``exclude_rated`` (boolean, default true), ``on_unknown`` (``error`` or ``ignore``,
default ``error``), ``explain`` (boolean, default false: adds ``explanation``, a JSON
string of :mod:`recsys.explain`), ``items`` and ``exclude`` (lists of item ids as strings: allow-list and deny-list; an
empty list, the default, restricts nothing), ``where`` (a string: a JSON object ``{"genre": ["Comedy"]}``
or ``genre=Comedy,Drama;category=c1``; empty, the default, restricts nothing); see
:mod:`recsys.candidates`. Output: one row per user and rank: ``user_id``, ``rank``, ``item_id``,
``score``, ``predicted_rating`` (when the model predicts ratings) and ``title`` (when the catalogue has
titles).

Users the model was trained on: the param ``known_users`` (boolean, default false) with true makes every
``user_id`` a user the model was trained on, scored from their logged interactions
(:mod:`recsys.known_users`): a row with only the ``user_id`` names one, rows with items and ratings add
fresher interactions (the later rating of an item wins); a user the model has no record of is an HTTP
400.

Similar items: the param ``similar_to`` (an item id; ``by``: ``auto``, ``item_item`` or ``factors``)
answers with the ``n`` items most similar to it (:mod:`recsys.similar`) instead of recommendations:
``rank``, ``item_id``, ``similarity``, ``source``, ``title``; the table is not scored then.

Bad input (empty table, missing columns, NaN, non-numeric or off-scale ratings, unknown items, bad or
unknown params, a request over the caps of :func:`check_request_size`) raises ``MlflowException`` with
``INVALID_PARAMETER_VALUE``, which the MLflow scoring server answers with HTTP 400 and the message.
MLflow decodes and casts the request before ``predict`` runs (nesting, body size, raw JSON types and
unknown params never reach it): :mod:`recsys.tracking.gateway` checks those in front of it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from recsys.candidates import parse_where
from recsys.data.spec import FieldKind
from recsys.errors import ModelFileError, RecsysError, ScoringInputError, shown
from recsys.explain import check_flag, explain_frame
from recsys.known_users import expand_frame
from recsys.recommender import ColdStartRecommender
from recsys.similar import similar_frame
from recsys.tracking.params import DEFAULT_EXPERIMENT
from recsys.utils.locations import MODEL_SUBDIR, artifact_inside, using_tracking_uri
from recsys.version import __version__

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from recsys.recommender import ColdStartRecommender

log = logging.getLogger(__name__)

CODE_FILE = Path(__file__).with_name("pyfunc_code.py")
DEFAULT_N = 10


class RecsysPyfunc(PythonModel):
    """``predict(ratings table, params={n, exclude_rated, on_unknown})`` -> recommendations table."""

    def __init__(self, model_root: str | os.PathLike | None = None) -> None:
        self.rec: ColdStartRecommender | None = None
        self.model_root = model_root
        """The MLflow model folder (``pyfunc_code.py`` passes its own folder); None for models logged
        before it did."""

    def load_context(self, context) -> None:

        path = Path(context.artifacts[MODEL_SUBDIR])
        if self.model_root is not None:
            root = Path(self.model_root)
        else:  # older models: MLflow joins the model folder and the MLmodel's relative artifact path
            if path.parts[-2:] != ("artifacts", MODEL_SUBDIR) or ".." in path.parts:
                raise ModelFileError(
                    f"the {MODEL_SUBDIR} artifact path {str(path)!r} is not artifacts/{MODEL_SUBDIR} "
                    "inside the model folder; refusing to load it"
                )
            root = path.parent.parent
        self.rec = ColdStartRecommender.load(artifact_inside(root, path, f"{MODEL_SUBDIR} artifact"))
        self.rec._catalogue_cache()  # warm: the first request does not pay for the item side

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException

        try:
            params = check_params(params)
            check_request_size(model_input)
            if params.get("similar_to") not in (None, ""):
                return similar_answer(self.rec, params)
            if check_flag("known_users", params.get("known_users", False)):
                model_input = expand_frame(self.rec, model_input)  # their logged interactions first
            out = self.rec.recommend_frame(
                model_input,
                n=params.get("n", DEFAULT_N),
                exclude_rated=params.get("exclude_rated", True),
                on_unknown=params.get("on_unknown", "error"),
                **candidate_params(params),
            )
            out = with_explanations(self.rec, model_input, out, params)
        except RecsysError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        return out.to_pandas()


PARAMS = (
    "n",
    "exclude_rated",
    "on_unknown",
    "items",
    "exclude",
    "where",
    "explain",
    "similar_to",
    "by",
    "known_users",
)
"""The params a request may give (the signature's ParamSchema)."""


def similar_answer(rec: ColdStartRecommender, params: dict[str, Any]) -> pd.DataFrame:
    """The ``similar_to`` param's answer: the items most similar to it (the ratings table is not scored):
    ``rank``, ``item_id``, ``similarity``, ``source`` (``item_item`` or ``factors``), ``title``."""
    if check_flag("explain", params.get("explain", False)):
        raise ScoringInputError("explain applies to recommendations; it cannot be combined with similar_to")
    return similar_frame(
        rec, params["similar_to"], params.get("n", DEFAULT_N), params.get("by", "auto")
    ).to_pandas()


def with_explanations(rec: ColdStartRecommender, model_input: Any, out: Any, params: dict[str, Any]) -> Any:
    """``out`` with an ``explanation`` column (JSON strings, :mod:`recsys.explain`) when ``explain`` is true."""
    if params.get("by", "auto") != "auto":
        raise ScoringInputError(f"by applies to similar_to; got by={shown(params['by'])} without it")
    if not check_flag("explain", params.get("explain", False)):
        return out
    return explain_frame(rec, model_input, out, on_unknown=params.get("on_unknown", "error"))


MAX_ROWS_ENV, MAX_RATINGS_ENV, MAX_ID_CHARS_ENV = (
    "RECSYS_SERVE_MAX_ROWS",
    "RECSYS_SERVE_MAX_RATINGS_PER_USER",
    "RECSYS_SERVE_MAX_ID_CHARS",
)
DEFAULT_MAX_ROWS, DEFAULT_MAX_RATINGS, DEFAULT_MAX_ID_CHARS = 100_000, 10_000, 256


def _limit(env: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(env, default)))
    except ValueError:
        return default


def check_params(params: Any) -> dict[str, Any]:
    """The request's params as a dict; a param outside :data:`PARAMS` is a ScoringInputError naming it
    and listing the valid ones (MLflow itself only logs a warning and drops it)."""

    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ScoringInputError(f"params must be an object of name -> value, got {type(params).__name__}")
    unknown = [k for k in params if k not in PARAMS]
    if unknown:
        raise ScoringInputError(
            f"unknown param(s) {', '.join(shown(k) for k in unknown[:5])}; valid params: {', '.join(PARAMS)}"
        )
    return dict(params)


def candidate_params(params: dict[str, Any]) -> dict[str, Any]:
    """``items``, ``exclude`` and ``where`` of the request's params as :func:`recsys.candidates.candidate_mask`
    takes them. MLflow list params need a default, so an empty list (the default) restricts nothing, as
    does an empty ``where``; ``where`` is a string (JSON object or ``FIELD=V1,V2;...`` terms) or, in
    process, a mapping."""
    out: dict[str, Any] = {}
    for name in ("items", "exclude"):
        value = params.get(name)
        if value is not None and not (hasattr(value, "__len__") and len(value) == 0):
            out[name] = value
    where = params.get("where")
    out["where"] = parse_where(where) if isinstance(where, str) or where is None else where
    return out


def check_request_size(frame: Any) -> None:
    """Caps on one request: rows (``$RECSYS_SERVE_MAX_ROWS``, default 100,000), ratings of one user
    (``$RECSYS_SERVE_MAX_RATINGS_PER_USER``, 10,000) and the length of a string id
    (``$RECSYS_SERVE_MAX_ID_CHARS``, 256). Over a cap: a ScoringInputError (HTTP 400)."""

    if not isinstance(frame, pd.DataFrame):
        return  # recommend_frame says what is wrong with it
    max_rows = _limit(MAX_ROWS_ENV, DEFAULT_MAX_ROWS)
    if len(frame) > max_rows:
        raise ScoringInputError(f"{len(frame):,} rows in one request; at most {max_rows:,} (${MAX_ROWS_ENV})")
    max_chars = _limit(MAX_ID_CHARS_ENV, DEFAULT_MAX_ID_CHARS)
    for col in ("user_id", "item_id"):
        if col in frame.columns and frame.columns.is_unique and frame[col].dtype != "float64":
            lengths = frame[col].map(lambda v: len(v) if isinstance(v, str) else 0)
            if len(lengths) and lengths.max() > max_chars:
                row = int(lengths.to_numpy().argmax())
                raise ScoringInputError(
                    f"{col} at row {row} has {int(lengths.iloc[row]):,} characters; at most {max_chars} "
                    f"(${MAX_ID_CHARS_ENV}): {shown(frame[col].iloc[row])}"
                )
    if "user_id" in frame.columns and frame.columns.is_unique and len(frame):
        max_ratings = _limit(MAX_RATINGS_ENV, DEFAULT_MAX_RATINGS)
        try:
            counts = frame["user_id"].value_counts(dropna=False)
        except TypeError:  # unhashable keys: recommend_frame reports them
            return
        if len(counts) and counts.iloc[0] > max_ratings:
            raise ScoringInputError(
                f"user {shown(counts.index[0])} has {int(counts.iloc[0]):,} rows in one request; "
                f"at most {max_ratings:,} (${MAX_RATINGS_ENV})"
            )


def user_feature_columns(rec: ColdStartRecommender) -> list[tuple[str, str]]:
    """(column, MLflow type) of the model's user features (multi-valued fields: a joined string)."""

    out = []
    for f in rec.space.user_encoder.fields:
        kind = f.spec.kind
        out.append((f.name, "double" if kind in (FieldKind.NUMERIC, FieldKind.DENSE) else "string"))
    return out


def model_signature(rec: ColdStartRecommender) -> ModelSignature:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    item_type = "long" if rec.space.items.dtype.is_integer() else "string"
    inputs = Schema(
        [ColSpec("string", "user_id"), ColSpec("string", "item_id"), ColSpec("double", "rating")]
        + [ColSpec(t, name, required=False) for name, t in user_feature_columns(rec)]
    )
    outputs = Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "rank"),
            ColSpec(item_type, "item_id"),
            ColSpec("double", "score"),
            ColSpec("double", "predicted_rating", required=False),
            ColSpec("string", "title", required=False),
            ColSpec("string", "explanation", required=False),  # param explain: JSON per row
            ColSpec("double", "similarity", required=False),  # param similar_to: instead of score
            ColSpec("string", "source", required=False),
        ]
    )
    params = ParamSchema(
        [
            ParamSpec("n", "long", DEFAULT_N),
            ParamSpec("exclude_rated", "boolean", True),
            ParamSpec("on_unknown", "string", "error"),
            ParamSpec("items", "string", [], (-1,)),
            ParamSpec("exclude", "string", [], (-1,)),
            ParamSpec("where", "string", ""),
            ParamSpec("explain", "boolean", False),
            ParamSpec("similar_to", "string", ""),
            ParamSpec("by", "string", "auto"),
            ParamSpec("known_users", "boolean", False),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(rec: ColdStartRecommender, n_items: int = 3) -> pd.DataFrame:
    """A new user who rated the catalogue's first few items (pandas, as MLflow stores examples)."""
    items = [str(i) for i in rec.item_ids[:n_items]]
    lo, hi = rec.space.rating_scale or (1.0, 1.0)
    ratings = [float(hi), float((lo + hi) / 2), float(lo)][: len(items)]
    return pd.DataFrame({"user_id": ["new-user-1"] * len(items), "item_id": items, "rating": ratings})


def pip_requirements() -> list[str]:
    import mlflow
    import polars
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"polars=={polars.__version__}",
        "pandas",
        "pyarrow",
        "numpy",
        "safetensors",
        f"recsys=={__version__}",
    ]


def log_pyfunc(
    model_dir: str | Path,
    *,
    run_id: str | None,
    tracking_uri: str,
    name: str = "model",
    registered_name: str | None = None,
) -> tuple[str, str | None]:
    """Log the saved recommender in ``model_dir`` (a folder named ``recsys_model``) as a pyfunc model
    of run ``run_id``; register it as ``registered_name`` if given. Returns (model URI, version)."""
    import mlflow
    from mlflow.models import Model

    model_dir = Path(model_dir)
    if model_dir.name != MODEL_SUBDIR:
        raise ValueError(f"the model folder must be named {MODEL_SUBDIR!r} (MLflow keeps the basename)")
    rec = ColdStartRecommender.load(model_dir)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = client.get_run(run_id) if run_id else None
    with using_tracking_uri(tracking_uri):
        # created here so that it lands in the run's experiment (Model.log alone would use the
        # process's active experiment, "Default" for a run that is not the fluent active run)
        logged = client.create_logged_model(
            run.info.experiment_id if run else _default_experiment_id(client),
            name=name,
            source_run_id=run_id,
            params=dict(run.data.params) if run else None,
            model_type="recsys-cold-start",
        )
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(CODE_FILE),
            artifacts={MODEL_SUBDIR: str(model_dir)},
            signature=model_signature(rec),
            input_example=input_example(rec),
            pip_requirements=pip_requirements(),
            flavor_name="pyfunc.ModelFromCode",
            model_id=logged.model_id,
        )
        version = None
        if registered_name:
            mv = mlflow.register_model(info.model_uri, registered_name, await_registration_for=60)
            version = str(mv.version)
    return info.model_uri, version


def _default_experiment_id(client) -> str:

    exp = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    return exp.experiment_id if exp else client.create_experiment(DEFAULT_EXPERIMENT)
