"""The command line's options, each defined once: typed ``Annotated`` aliases, and option groups that
stand for several of them at once.

An option group is a dataclass (an :class:`OptionGroup`) whose fields are aliases with their defaults;
a command parameter annotated with one is, on the command line, the group's options in field order,
and the command receives the group built from their values (:func:`expand_option_groups`, applied
to every command by :func:`recsys.cli.runtime.command`). The groups import the rest of recsys lazily
(see :mod:`recsys.cli`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from recsys.config import RecommenderConfig
    from recsys.data.dataset import Dataset
    from recsys.tracking.mlflow_run import Tracker

VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Log progress details and show tracebacks of unexpected errors (before or after the command).",
    ),
]

# data sources
DatasetArg = Annotated[
    str,
    typer.Argument(
        help="A built-in dataset (ml-100k, ml-1m, melu-ml1m, ml-latest-small, ml-latest, ml-25m), "
        "a spec .toml, a folder, or an interaction file (CSV/TSV/Parquet)."
    ),
]
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", help="Built-in dataset (ml-100k, ml-1m, melu-ml1m...), spec or folder."),
]
InteractionsOpt = Annotated[
    Path | None, typer.Option(help="Interaction log (CSV/TSV/Parquet) instead of a dataset.")
]
UsersOpt = Annotated[Path | None, typer.Option(help="User feature table (with --interactions).")]
ItemsOpt = Annotated[Path | None, typer.Option(help="Item feature table (with --interactions).")]
SpecOpt = Annotated[Path | None, typer.Option(help="Dataset spec (TOML) declaring files and field kinds.")]
UserCol = Annotated[
    str | None, typer.Option("--user-col", help="Column holding user ids (interaction files).")
]
ItemCol = Annotated[
    str | None, typer.Option("--item-col", help="Column holding item ids (interaction files).")
]
RatingCol = Annotated[
    str | None, typer.Option("--rating-col", help="Column holding ratings; omit for implicit feedback logs.")
]
TimeCol = Annotated[
    str | None, typer.Option("--time-col", help="Column holding timestamps (seconds or ISO dates).")
]
ImplicitOpt = Annotated[
    bool,
    typer.Option(
        "--implicit", help="Treat the log as implicit feedback: every rating becomes a plain interaction."
    ),
]

# tracking
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI, "
        "else the local store sqlite:///mlflow.db with artifacts in ./mlartifacts).",
    ),
]
ExperimentOpt = Annotated[
    str | None, typer.Option("--experiment", help="MLflow experiment name (default: recsys).")
]
MlflowOpt = Annotated[
    bool, typer.Option("--mlflow/--no-mlflow", help="Track the run in MLflow (--no-mlflow: no tracking).")
]
FallbackOpt = Annotated[
    bool,
    typer.Option(
        "--fallback-local/--no-fallback-local",
        help="If the tracking server is unreachable at start, track in the local store instead of "
        "failing (default: fail with a clear message before any work).",
    ),
]
RunNameOpt = Annotated[str | None, typer.Option("--run-name", help="MLflow run name.")]

# models and configs
ModelUriHelp = "Model folder, runs:/RUN_ID/model, models:/NAME@alias or models:/NAME/VERSION."
ModelOpt = Annotated[str, typer.Option("--model", help=ModelUriHelp)]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file (TOML or JSON) with model, meta and train sections (see recsys/config/sections.py).",
    ),
]
EpochsOpt = Annotated[
    int | None,
    typer.Option(
        help="Maximum epochs (overrides the config's train.epochs and lifts its task budget "
        "train.max_tasks, which by default plans fewer epochs for logs of more than 10,000 training users)."
    ),
]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed (overrides the config).")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (overrides the config).")]
NoUserLogOpt = Annotated[
    bool,
    typer.Option(
        "--no-user-log",
        help="Keep no record of the training users' interactions with the model (privacy or size): "
        "`recommend --user` cannot score them then. Same as train.keep_user_log = false in the config.",
    ),
]


class OptionGroup:
    """Base of the option groups: dataclasses whose fields are option aliases with defaults."""


@dataclasses.dataclass
class Columns(OptionGroup):
    """How to read an interaction file: which columns hold what, explicit or implicit feedback."""

    user_col: UserCol = None
    item_col: ItemCol = None
    rating_col: RatingCol = None
    time_col: TimeCol = None
    implicit: ImplicitOpt = False

    def mapping(self) -> dict[str, str]:
        """The columns given, by their schema name (``recsys.data.schema``)."""
        from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER

        mapping = {
            USER: self.user_col,
            ITEM: self.item_col,
            RATING: self.rating_col,
            TIMESTAMP: self.time_col,
        }
        return {k: v for k, v in mapping.items() if v}


@dataclasses.dataclass
class DataSource(OptionGroup):
    """Where the data comes from: a dataset (name, spec or folder) or loose files, and their columns."""

    dataset: DatasetOpt = None
    interactions: InteractionsOpt = None
    users: UsersOpt = None
    items: ItemsOpt = None
    spec: SpecOpt = None
    user_col: UserCol = None
    item_col: ItemCol = None
    rating_col: RatingCol = None
    time_col: TimeCol = None
    implicit: ImplicitOpt = False

    def load(self) -> Dataset:
        from recsys.workflows import load_data

        columns = Columns(self.user_col, self.item_col, self.rating_col, self.time_col, self.implicit)
        return load_data(
            self.dataset,
            interactions=self.interactions,
            users=self.users,
            items=self.items,
            spec=self.spec,
            columns=columns.mapping(),
            implicit=self.implicit,
        )


@dataclasses.dataclass
class Tracking(OptionGroup):
    """Whether and where the run is tracked in MLflow."""

    tracking_uri: TrackingUriOpt = None
    experiment: ExperimentOpt = None
    mlflow: MlflowOpt = True
    fallback_local: FallbackOpt = False
    run_name: RunNameOpt = None

    def tracker(self, kind: str) -> Tracker:
        from recsys.tracking.mlflow_run import Tracker, TrackingOptions

        options = TrackingOptions(
            enabled=self.mlflow,
            tracking_uri=self.tracking_uri,
            experiment=self.experiment,
            fallback_local=self.fallback_local,
            run_name=self.run_name,
        )
        return Tracker(options, kind=kind)


@dataclasses.dataclass
class ConfigOptions(OptionGroup):
    """The model's config: a file, and the training keys the command line overrides."""

    config: ConfigOpt = None
    epochs: EpochsOpt = None
    seed: SeedOpt = None
    device: DeviceOpt = None
    no_user_log: NoUserLogOpt = False

    def build(self, device: str | None = None) -> RecommenderConfig:
        """The validated config; ``device``: the device to train on (default: ``--device``)."""
        from recsys.workflows import build_config

        cfg = build_config(self.config, epochs=self.epochs, seed=self.seed, device=device or self.device)
        return cfg.replace(train={"keep_user_log": False}) if self.no_user_log else cfg


def expand_option_groups(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with each parameter annotated with an :class:`OptionGroup` replaced, in its place, by
    the group's fields (every parameter becomes keyword-only, as click passes them); the wrapper builds
    each group from their values. ``func`` itself when it has no group."""
    sig = inspect.signature(func, eval_str=True)
    groups: dict[str, type[OptionGroup]] = {}
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if isinstance(p.annotation, type) and issubclass(p.annotation, OptionGroup):
            groups[p.name] = p.annotation
            hints = typing.get_type_hints(p.annotation, include_extras=True)
            params += [
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
                )
                for f in dataclasses.fields(p.annotation)
            ]
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    if not groups:
        return func
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise TypeError(f"{func.__name__}: an option group repeats a parameter name: {sorted(names)}")

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        for name, group in groups.items():
            kwargs[name] = group(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(group)})
        return func(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
