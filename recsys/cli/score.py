"""Scoring commands: ``recommend`` (one new user), ``recommend-batch`` (many) and ``onboard`` (which
items to ask a new user about)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.candidates import ExcludeOpt, ItemsOpt, WhereOpt, candidate_args
from recsys.cli.common import check_names, known_names, load_model
from recsys.cli.options import ModelOpt, TrackingUriOpt
from recsys.errors import RecsysError, UnknownItemError

if TYPE_CHECKING:
    import polars as pl

IncludeRatedOpt = Annotated[bool, typer.Option(help="Also return items the user rated.")]


UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user",
        help="A user the model was trained on: recommend from their logged interactions "
        "(instead of --ratings; needs a model trained with its user log).",
    ),
]
HistoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--history",
        help="With --user: fresher interactions added after the logged ones (the later rating of an item "
        "wins): a JSON ratings file as for --ratings, or a Parquet/CSV/TSV table user_id, item_id, rating "
        "[, timestamp] (other users' rows ignored).",
    ),
]


def recommend(
    model: ModelOpt,
    ratings: Annotated[
        Path | None,
        typer.Option(
            "--ratings",
            help='JSON file: {"ITEM_ID": rating, ...} or {"ratings": {...}, "user_features": {"gender": "F"}}.',
        ),
    ] = None,
    user: UserOpt = None,
    history: HistoryOpt = None,
    n: Annotated[int, typer.Option("-n", "--n", help="How many items to return.")] = 20,
    include_rated: IncludeRatedOpt = False,
    ignore_unknown: Annotated[bool, typer.Option(help="Skip unknown item ids instead of failing.")] = False,
    tracking_uri: TrackingUriOpt = None,
    items: ItemsOpt = None,
    exclude: ExcludeOpt = None,
    where: WhereOpt = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Add an explanation to each item (score parts, support items).")
    ] = False,
) -> None:
    """Recommend items for a new user from a few ratings (--ratings), or for a user the model was trained
    on (--user); prints JSON rows (rank, item_id, score, predicted_rating when the model predicts ratings,
    title when the catalogue has titles)."""
    from recsys.errors import UnknownItemError

    _check_user_or_ratings(ratings, user, history)
    cand = candidate_args(items, exclude, where)
    rec = load_model(model, tracking_uri)
    if user is not None:
        user_ratings, features = _known_user_ratings(rec, user, history, ignore_unknown)
    else:
        user_ratings, features = _read_ratings_file(ratings)
    try:
        rows = rec.recommend_rows(
            user_ratings,
            n=n,
            user_features=features,
            exclude_rated=not include_rated,
            on_unknown="ignore" if ignore_unknown else "error",
            **cand,
        )
    except UnknownItemError as exc:
        raise _cli_unknown_items(exc, single=True) from None
    for row in rows:
        row.update({k: round(row[k], 4) for k in ("score", "predicted_rating") if k in row})
    if explain:
        from recsys.explain import explain_rows

        unknown = "ignore" if ignore_unknown else "error"
        rows = explain_rows(rec, user_ratings, rows, features, on_unknown=unknown)
    typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))


def _check_user_or_ratings(ratings: Path | None, user: str | None, history: Path | None) -> None:
    """Exactly one of --ratings and --user; --history only with --user (a ScoringInputError: one line,
    exit status 2)."""
    from recsys.errors import ScoringInputError

    if (ratings is None) == (user is None):
        raise ScoringInputError(
            "give exactly one of --ratings FILE (a new user's ratings) and --user ID (a user the model "
            "was trained on)"
        )
    if history is not None and user is None:
        raise ScoringInputError("--history goes with --user (with --ratings, put every rating in the file)")


def _known_user_ratings(
    rec, user: str, history: Path | None, ignore_unknown: bool
) -> tuple[dict, dict | None]:
    """The ratings (and features, from a JSON history) a known user is scored with."""
    from recsys.errors import UnknownUserError
    from recsys.known_users import user_ratings

    features, fresh = None, None
    if history is not None and history.suffix.lower() == ".json":
        fresh, features = _read_ratings_file(history)
    elif history is not None:
        _check_ratings_table(history)
        fresh = _read_ratings_table(history, "user_id")
    on_item = "ignore" if ignore_unknown else "error"
    try:
        return user_ratings(rec, user, history=fresh, on_unknown_item=on_item), features
    except UnknownItemError as exc:
        raise _cli_unknown_items(exc, single=True) from None
    except UnknownUserError as exc:  # worded for the command line: no Python argument to name
        raise UnknownUserError(
            str(exc).replace("(on_unknown='cold' scores them as new users)", "(use --ratings)")
        ) from None


def _read_ratings_file(path: Path) -> tuple[dict, dict | None]:
    from recsys.errors import ScoringInputError
    from recsys.utils import io as io_utils

    # a regular JSON file of bounded size and nesting: a folder, a FIFO, /dev/zero are refused unread
    raw = io_utils.read_json_bounded(
        path, io_utils.MAX_REQUEST_JSON_BYTES, what="ratings file", error=ScoringInputError
    )
    if isinstance(raw, dict) and "ratings" in raw:
        ratings, features = raw["ratings"], raw.get("user_features")
    else:
        ratings, features = raw, None
    if isinstance(ratings, list):  # [{"item_id": .., "rating": ..}, ...]
        try:
            ratings = {r["item_id"]: r["rating"] for r in ratings}
        except (TypeError, KeyError):
            raise ScoringInputError(f"{path}: a ratings list needs objects with item_id and rating") from None
    if not isinstance(ratings, dict):
        raise ScoringInputError(
            f"{path}: expected {{item_id: rating}} or {{'ratings': ..., 'user_features': ...}}"
        )
    if features is not None and not isinstance(features, dict):
        raise ScoringInputError(f"{path}: user_features must be an object")
    return ratings, features


def _cli_unknown_items(exc: Exception, *, single: bool) -> RecsysError:
    """The scoring API's unknown-item error, worded for the command line: it names --ignore-unknown
    (not the Python argument) and, for a single request, drops the request number ("user 0: ...")."""
    import re

    from recsys.errors import UnknownItemError

    text = str(exc)
    if single:
        text = re.sub(r"^user \d+: ", "", text)
    text = re.sub(r"\s*\([^()]*on_unknown[^()]*\)\s*$", "", text)
    return UnknownItemError(f"{text} (pass --ignore-unknown to skip them)")


def recommend_batch(
    model: ModelOpt,
    *,
    ratings: Annotated[
        Path | None,
        typer.Option(
            "--ratings",
            help="Parquet/CSV/TSV table, one row per rating: user_id, item_id, rating (+ optional user "
            "feature columns; a row with null item_id and rating declares a user without ratings).",
        ),
    ] = None,
    users: Annotated[
        Path | None,
        typer.Option(
            "--users",
            help="Instead of --ratings: a text file of users the model was trained on, one id a line; "
            "each is scored from their logged interactions.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output table (.parquet or .csv).")],
    n: Annotated[int, typer.Option("-n", "--n", help="Recommendations per user.")] = 10,
    include_rated: IncludeRatedOpt = False,
    ignore_unknown: Annotated[
        bool, typer.Option(help="Skip ratings of unknown item ids (warning) instead of failing.")
    ] = False,
    user_col: Annotated[str, typer.Option("--user-col", help="Column holding the user key.")] = "user_id",
    batch_size: Annotated[int, typer.Option(help="Users scored per vectorised batch.")] = 1024,
    tracking_uri: TrackingUriOpt = None,
    items: ItemsOpt = None,
    exclude: ExcludeOpt = None,
    where: WhereOpt = None,
) -> None:
    """Score many new users at once: top-N per user, one output row per (user, rank).

    Output columns: the user key, rank (1 = best), item_id, score, predicted_rating (when the model
    predicts ratings) and title (when the catalogue has titles).
    """
    from recsys.errors import ScoringInputError, UnknownItemError
    from recsys.requests import recommend_frame
    from recsys.utils.io import remove_stale_temps

    if batch_size < 1:
        raise ScoringInputError(f"--batch-size must be positive, got {batch_size}")
    if out.is_dir():
        raise RecsysError(
            f"--out {out}: cannot write the recommendations: it is a folder; give a file name ending in "
            ".parquet or .csv"
        )
    remove_stale_temps(out)  # left by a killed run writing the same output (SIGKILL cannot be caught)
    if (ratings is None) == (users is None):
        raise ScoringInputError(
            "give exactly one of --ratings TABLE (new users' ratings) and --users FILE (users the model "
            "was trained on)"
        )
    _check_ratings_table(ratings if users is None else users)
    cand = candidate_args(items, exclude, where)
    rec = load_model(model, tracking_uri)
    frame = (
        _read_ratings_table(ratings, user_col) if users is None else _known_users_frame(rec, users, user_col)
    )
    try:
        result = recommend_frame(
            rec,
            frame,
            n=n,
            exclude_rated=not include_rated,
            on_unknown="ignore" if ignore_unknown else "error",
            user_col=user_col,
            batch_size=batch_size,
            show_progress=True,
            **cand,
        )
    except UnknownItemError as exc:
        raise _cli_unknown_items(exc, single=False) from None
    _write_table(result, out)
    users = result[user_col].n_unique() if result.height else 0
    typer.echo(f"wrote {result.height:,} recommendations for {users:,} users to {out}")


def _known_users_frame(rec, users: Path, user_col: str) -> pl.DataFrame:
    """The requests for the known users listed in ``users`` (one id a line; blank lines skipped): their
    logged interactions as a ratings table (:func:`recsys.known_users.expand_frame`)."""
    import polars as pl

    from recsys.data.ids import column_ids
    from recsys.errors import ScoringInputError
    from recsys.known_users import expand_frame

    try:
        lines = users.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoringInputError(f"{users}: cannot read the user ids ({exc})") from None
    ids = [line.strip() for line in lines if line.strip()]
    if not ids:
        raise ScoringInputError(f"{users}: no user ids (one a line)")
    return expand_frame(
        rec, pl.DataFrame({user_col: column_ids(pl.Series(ids, dtype=pl.String))}), user_col=user_col
    )


def _check_ratings_table(ratings: Path) -> None:
    """The ratings table exists and is a regular file of bounded size (before the model is loaded)."""
    from recsys.errors import ScoringInputError
    from recsys.utils.io import MAX_INPUT_BYTES, check_input_file

    if not ratings.exists():
        raise ScoringInputError(f"{ratings}: file not found")
    check_input_file(ratings, "ratings file", MAX_INPUT_BYTES, error=ScoringInputError)


def _read_ratings_table(ratings: Path, user_col: str) -> pl.DataFrame:
    import polars as pl

    from recsys.data.ids import column_ids
    from recsys.errors import ScoringInputError

    suffix = ratings.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(ratings)
        if suffix in (".csv", ".tsv", ".txt"):
            # ids as written, then integers only where every id is canonical (recsys.data.ids)
            as_text = {user_col: pl.String, "item_id": pl.String}
            frame = pl.read_csv(
                ratings, separator="\t" if suffix == ".tsv" else ",", schema_overrides=as_text
            )
            return frame.with_columns(column_ids(frame[c]) for c in as_text if c in frame.columns)
        raise ScoringInputError(f"{ratings}: expected a .parquet, .csv or .tsv file")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ScoringInputError(f"{ratings}: cannot read ({exc})") from None


def _write_table(result: pl.DataFrame, out: Path) -> None:
    from recsys.utils.io import atomic_write

    try:
        with atomic_write(out, "wb") as fh:
            if out.suffix.lower() == ".csv":
                result.write_csv(fh)
            else:
                result.write_parquet(fh)
    except OSError as exc:
        raise RecsysError(f"{out}: cannot write the recommendations ({exc.strerror or exc})") from None


StrategyOpt = Annotated[
    str,
    typer.Option(
        help="One of {names:strategies} (evidence: expected information, weighted by the chance the user "
        "knows the item)."
    ),
]


def onboard(
    model: ModelOpt,
    n: Annotated[int, typer.Option("-n", "--n", help="How many items to ask about.")] = 10,
    strategy: StrategyOpt = "evidence",
    user_features: Annotated[
        str | None,
        typer.Option(
            "--user-features", help='JSON object of the new user\'s features, e.g. \'{"gender": "F"}\'.'
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random strategy.")] = 0,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Which items to ask a new user to rate first, in order; prints JSON (item id, title)."""
    from recsys.errors import ScoringInputError

    check_names("--strategy", "strategy", [strategy], known_names()["strategies"])
    features = None
    if user_features is not None:
        try:
            features = json.loads(user_features)
        except json.JSONDecodeError as exc:
            raise ScoringInputError(f"--user-features is not valid JSON ({exc.msg} at {exc.pos})") from None
    rec = load_model(model, tracking_uri)
    items = rec.onboarding_items(n, features, strategy=strategy, seed=seed)
    typer.echo(
        json.dumps([{"item_id": i, "title": rec.title(i)} for i in items], indent=2, ensure_ascii=False)
    )
