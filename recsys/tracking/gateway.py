"""A guard in front of MLflow's scoring server: what the pyfunc layer cannot see.

``mlflow models serve`` decodes the JSON body and applies the model's signature *before* our pyfunc's
``predict`` runs, so that layer never sees

- a body nested too deeply: MLflow's ``json.loads`` raises ``RecursionError``, which its handler does
  not catch (``mlflow.pyfunc.scoring_server._decode_json_input`` catches only decode errors): HTTP 500;
- a body that is not JSON: MLflow answers 400 but echoes the whole body in the message;
- the raw JSON values: the signature casts the ``rating`` column to double, so ``true`` arrives as 1.0
  and ``"5"`` as 5.0 (the Python API refuses both);
- unknown params: MLflow logs a warning and drops them.

:func:`guard` wraps MLflow's own ASGI app (``scoring_server.init``) with a check of each
``POST /invocations`` body done before MLflow sees it: a size cap (HTTP 413), the JSON decoded once
with ``RecursionError`` answered as a 400, the params checked by the pyfunc's
:func:`~recsys.tracking.pyfunc.check_params`, every raw rating by the Python API's
:func:`~recsys.requests.check_rating`, the pyfunc's row and id-length caps; echoed values are cut
to 80 characters. Everything else (answers included) is MLflow's server unchanged::

    python -m recsys.tracking.gateway models:/movies@champion --host 127.0.0.1 --port 5001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from recsys.errors import RecsysError, shown

MAX_BODY_ENV = "RECSYS_SERVE_MAX_BODY_MB"
DEFAULT_MAX_BODY_MB = 16.0


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _max_body_bytes() -> int:
    try:
        return int(float(os.environ.get(MAX_BODY_ENV, DEFAULT_MAX_BODY_MB)) * 2**20)
    except ValueError:
        return int(DEFAULT_MAX_BODY_MB * 2**20)


def _records(doc: dict) -> tuple[list[Any], Callable[[Any, str], Any]] | None:
    """(rows, get(row, column)) of the table a JSON body holds, or None where the shape is not one the
    guard reads (MLflow then answers for it)."""
    if "dataframe_split" in doc and isinstance(doc["dataframe_split"], dict):
        split = doc["dataframe_split"]
        columns, data = split.get("columns"), split.get("data")
        if not isinstance(columns, list) or not isinstance(data, list):
            return None
        where = {c: i for i, c in enumerate(columns) if isinstance(c, str)}

        def get(row: Any, col: str) -> Any:
            i = where.get(col)
            return row[i] if i is not None and isinstance(row, list) and i < len(row) else None

        return data, get
    for key in ("dataframe_records", "instances", "inputs"):
        rows = doc.get(key)
        if isinstance(rows, list):
            return rows, lambda row, col: row.get(col) if isinstance(row, dict) else None
        if isinstance(rows, dict) and all(isinstance(v, list) for v in rows.values()):  # columns
            n = max((len(v) for v in rows.values()), default=0)
            table = [{c: v[i] if i < len(v) else None for c, v in rows.items()} for i in range(n)]
            return table, lambda row, col: row.get(col)
    return None


def check_body(body: bytes, scale: tuple[float, float] | None) -> Any:
    """Raise :class:`Rejected` for a JSON body the pyfunc must not get; returns the decoded body."""
    import pandas as pd

    # lazy: torch (recommender) and MLflow (pyfunc) load on the first request, not when the gateway starts
    from recsys.requests import check_rating
    from recsys.tracking.pyfunc import check_params, check_request_size  # lazy: MLflow

    try:
        doc = json.loads(body)
    except RecursionError:
        raise Rejected(400, "the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(400, f"the body is not valid UTF-8 JSON ({shown(str(exc), 120)})") from None
    if not isinstance(doc, dict):
        return doc  # MLflow answers 400 for it
    try:
        if "params" in doc:
            check_params(doc["params"])
        table = _records(doc)
        if table is None:
            return doc
        rows, get = table
        users = [get(r, "user_id") for r in rows]
        items = [get(r, "item_id") for r in rows]
        check_request_size(
            pd.DataFrame(
                {"user_id": pd.Series(users, dtype=object), "item_id": pd.Series(items, dtype=object)}
            )
        )
        for user, item, row in zip(users, items, rows, strict=True):
            rating = get(row, "rating")
            if rating is not None:
                check_rating(user, item, rating, scale)
    except RecsysError as exc:
        raise Rejected(400, str(exc)) from None
    return doc


def guard(app: Any, scale: tuple[float, float] | None = None) -> Callable:
    """MLflow's scoring ASGI ``app`` behind the checks of :func:`check_body` (see the module docstring)."""

    async def reply(send: Callable, status: int, message: str) -> None:
        payload = json.dumps(
            {
                "error_code": "INVALID_PARAMETER_VALUE" if status == 400 else "REQUEST_LIMIT_EXCEEDED",
                "message": message,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def guarded(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != "/invocations":
            await app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        limit = _max_body_bytes()
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            await reply(
                send, 413, f"request body of {int(declared):,} bytes; at most {limit:,} (${MAX_BODY_ENV})"
            )
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await reply(send, 413, f"request body over {limit:,} bytes (${MAX_BODY_ENV})")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if headers.get(b"content-type", b"").split(b";")[0].strip().lower() == b"application/json":
            try:
                await asyncio.to_thread(check_body, body, scale)
            except Rejected as exc:
                await reply(send, exc.status, exc.message)
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await app(scope, replay, send)

    return guarded


def guarded_app(model_uri: str) -> Callable:
    """The ASGI app to serve: MLflow's scoring server for ``model_uri`` (a pyfunc of this package) behind
    :func:`guard`."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(model_uri)
    scale = None
    with contextlib.suppress(Exception):  # not a recsys pyfunc: the guard still caps size and nesting
        scale = model.unwrap_python_model().rec.space.rating_scale
    return guard(scoring_server.init(model), scale)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m recsys.tracking.gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "model_uri", help="models:/NAME@alias, models:/NAME/VERSION, runs:/ID/model or a folder"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    uvicorn.run(guarded_app(args.model_uri), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
