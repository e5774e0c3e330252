"""``recsys catalogue``: update a trained model's catalogue without retraining.

``add`` appends new items (scored from their content, like held-out new items), ``hide`` makes items
unavailable (never recommended; still in the catalogue), ``show`` makes them available again (see
:mod:`recsys.catalogue`). Each writes the updated model to ``--out``; when ``--model`` is a registry URI
(``models:/NAME@alias`` or ``models:/NAME/VERSION``) the updated model is also registered as a new
version of NAME (no alias is moved: promotion stays ``recsys tracking promote``'s).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import load_model, prepare_out
from recsys.cli.options import ModelOpt, TrackingUriOpt

if TYPE_CHECKING:
    from recsys.recommender import ColdStartRecommender

OutOpt = Annotated[Path, typer.Option("--out", help="Folder to write the updated model to.")]
IdsOpt = Annotated[
    Path,
    typer.Option("--ids", help="Text file of item ids, one per line (an 'item_id' header line is allowed)."),
]
MAX_IDS_FILE_BYTES = 256 << 20


def catalogue_add(
    model: ModelOpt,
    items: Annotated[
        Path,
        typer.Option(
            "--items",
            help="CSV, TSV or Parquet: the id column and one column per item feature of the model "
            "(multi-valued fields joined by their separator, '|' by default), an optional title column.",
        ),
    ],
    out: OutOpt,
    id_col: Annotated[str, typer.Option("--id-col", help="Column holding the item ids.")] = "item_id",
    title_col: Annotated[str, typer.Option("--title-col", help="Column holding display titles.")] = "title",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Add new items to a trained model: scored from their content fields (no retraining)."""
    from recsys.catalogue import read_items_file

    prepare_out(out)
    rec = load_model(model, tracking_uri)
    frame = read_items_file(rec.space, items, id_column=id_col, title_column=title_col)
    added = rec.add_items(frame, id_column=id_col, title_column=title_col)
    _finish(rec, model, out, tracking_uri, f"added {added} item(s)")


def catalogue_hide(model: ModelOpt, ids: IdsOpt, out: OutOpt, tracking_uri: TrackingUriOpt = None) -> None:
    """Hide items: they stay in the catalogue but are never recommended."""
    _availability(model, ids, out, tracking_uri, available=False)


def catalogue_show(model: ModelOpt, ids: IdsOpt, out: OutOpt, tracking_uri: TrackingUriOpt = None) -> None:
    """Make hidden items available again."""
    _availability(model, ids, out, tracking_uri, available=True)


def _availability(model: str, ids: Path, out: Path, tracking_uri: str | None, *, available: bool) -> None:
    prepare_out(out)
    rec = load_model(model, tracking_uri)
    changed = rec.set_available(read_ids_file(ids), available)
    _finish(rec, model, out, tracking_uri, f"{'showed' if available else 'hid'} {changed} item(s)")


def read_ids_file(path: Path) -> list[str]:
    """Item ids, one per line (blank lines and an ``item_id`` header skipped), as written."""
    from recsys.errors import DataError
    from recsys.utils.io import read_bytes_bounded

    data = read_bytes_bounded(path, "ids file", MAX_IDS_FILE_BYTES, error=DataError)
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path=str(path), expected="one item id per line") from None
    ids = [line.strip() for line in lines if line.strip()]
    if ids and ids[0] == "item_id":
        ids = ids[1:]
    if not ids:
        raise DataError("no item ids", path=str(path), expected="one item id per line")
    return ids


def registered_name(model: str) -> str | None:
    """NAME of ``models:/NAME@alias`` or ``models:/NAME/VERSION``; None for other locations."""
    if not model.startswith("models:/"):
        return None
    rest = model[len("models:/") :].strip("/")
    if "@" in rest:
        return rest.split("@", 1)[0] or None
    parts = rest.split("/")
    return parts[0] if len(parts) == 2 and parts[1].isdigit() and parts[0] else None


def _finish(rec: ColdStartRecommender, model: str, out: Path, tracking_uri: str | None, change: str) -> None:
    rec.save(out)
    n, hidden = rec.space.n_items, rec.info.get("catalogue", {}).get("hidden_items", 0)
    typer.echo(f"{change}; the catalogue has {n} items ({hidden} hidden); model saved to {out}")
    name = registered_name(model)
    if name is not None:
        _register(rec, name, model, tracking_uri, change)


def _register(
    rec: ColdStartRecommender, name: str, source: str, tracking_uri: str | None, change: str
) -> None:
    """Log the updated model and register it as the next version of ``name``."""
    from recsys.tracking.mlflow_run import Tracker, TrackingOptions
    from recsys.tracking.registry import version_tags

    tags = version_tags(rec) | {"recsys.catalogue.source": source, "recsys.catalogue.change": change}
    with Tracker(TrackingOptions(tracking_uri=tracking_uri), kind="catalogue") as tr:
        tr.set_tags({"recsys.catalogue.source": source, "recsys.catalogue.change": change})
        ref = tr.log_model(rec, name, tags)
    if ref is not None and ref.registry_uri:
        typer.echo(f"registered: {ref.registry_uri} (from {source}; no alias moved)")
    else:
        typer.echo(f"the updated model could not be registered now: tracking calls kept in {tr.spool}")
