"""``recsys similar``: the items most similar to one item (item-item matrix or item factors)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from recsys.cli.common import load_model
from recsys.cli.options import ModelOpt, TrackingUriOpt


def similar(
    model: ModelOpt,
    item: Annotated[str, typer.Option("--item", help="The item id to find similar items for.")],
    n: Annotated[int, typer.Option("-n", "--n", help="How many items to return.")] = 10,
    by: Annotated[
        str,
        typer.Option(
            help="auto (the item-item matrix when the model has one, else the factors), item_item or factors."
        ),
    ] = "auto",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Items most similar to --item; prints JSON (rank, item_id, similarity, source, title)."""
    from recsys.similar import similar_rows

    rec = load_model(model, tracking_uri)
    rows = similar_rows(rec, item, n, by)
    typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
