"""Issue 16, items 7 and 8: ids kept as given (one parse for every entry point and request size) and
the REST endpoint hardened (value rules of the Python API, unknown params, caps, truncated echoes).

The id rule (recsys/data/ids.py, README "Item and user ids"): an integer catalogue knows integers and
strings that are exactly the canonical decimal form of one (``str(int(s)) == s``); anything else is
unknown. A string catalogue knows strings as given and integers by their ``str()``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from recsys import ColdStartRecommender
from recsys.data.ids import SMALL_LOOKUP, column_ids, normalise_id, normalise_ids
from recsys.data.readers import read_interactions
from recsys.data.spec import TableSpec
from recsys.data.streaming import collect_deduplicated, stream_user_log
from recsys.errors import DataError, ScoringInputError, UnknownItemError
from tests.conftest import write
from tests.mlflow_servers import cli
from tests.test_reliability_inputs import TINY, tiny_model

# not the canonical decimal form of an integer: never an item of an integer catalogue
NOT_CANONICAL = ["007", "+8", " 8", "8 ", "7_8", "٧٨", "-0", "0x8", "1e1", "8.0", "", "٨", "\n8", "8\n"]
ALL_KINDS = [*NOT_CANONICAL, "7", "8", "78", "-3", 7, 8, np.int64(8), -3, True, 7.0, None, "9" * 30, 2**70]


def padding(n: int) -> dict:
    """``n`` ids no catalogue of the tiny model knows, to push a request past the small-lookup path."""
    return {f"pad-{k}": 3.0 for k in range(n)}


# ---- the rule, scalar and vectorised ------------------------------------------------------------------
def test_one_id_rule_scalar_and_vectorised_forms_agree_on_every_kind_of_value() -> None:
    for integer in (True, False):
        scalar = [normalise_id(v, integer) for v in ALL_KINDS]
        as_text = pl.Series([v if isinstance(v, str) else None for v in ALL_KINDS], dtype=pl.String)
        vector = normalise_ids(as_text, integer).to_list()
        for v, s, w in zip(ALL_KINDS, scalar, vector, strict=True):
            if isinstance(v, str):
                assert s == w, (v, integer)
    assert [normalise_id(v, True) for v in ("7", 7, np.int64(7), "-3")] == [7, 7, 7, -3]
    assert all(normalise_id(v, True) is None for v in NOT_CANONICAL)
    assert normalise_id(True, True) is None and normalise_id(7.0, True) is None
    assert normalise_id(7, False) == "7" and normalise_id(" 8", False) == " 8"
    assert normalise_id(str(2**63), True) is None and normalise_id(str(2**63 - 1), True) == 2**63 - 1


def test_ids_007_plus8_space8_do_not_merge_with_7_and_8() -> None:
    rec = tiny_model()  # integer catalogue 1..60
    seven, eight = rec._lookup([7, 8])
    for odd in NOT_CANONICAL:
        with pytest.raises(UnknownItemError, match="unknown item"):
            rec.recommend({odd: 5.0})
        assert rec._lookup([odd])[0] == -1
    assert list(rec._lookup(["7", "8", np.int64(7)])) == [seven, eight, seven]


def test_ids_7_8_and_arabic_indic_digits_are_unknown_in_requests_of_every_size() -> None:
    """'7_8' and '٧٨' were item 78 in requests of <= 256 ratings (Python's int()) but unknown in bigger
    ones (polars' cast); with 60 items, '78' itself is unknown too, so the check uses '12' forms."""
    rec = tiny_model()
    odd = ["1_2", "١٢", "012", "+12", " 12", "12 "]
    small = rec._lookup([*odd, 12, "12"])
    big = rec._lookup([*odd, 12, "12", *padding(SMALL_LOOKUP + 10)])
    assert list(small) == list(big[: len(small)])
    assert (small[: len(odd)] == -1).all() and small[-1] == small[-2] >= 0
    # end to end: the odd keys are skipped (ignored) or reported (error) whatever the request size
    for extra in (0, SMALL_LOOKUP + 10):
        request = {**{k: 5.0 for k in odd}, 3: 4.0, **padding(extra)}
        _, support = rec.score_users([request], on_unknown="ignore")
        assert sorted(support[support >= 0].tolist()) == sorted(rec._lookup([3]).tolist())
        with pytest.raises(UnknownItemError, match="1_2"):
            rec.recommend(request)


def test_batch_tables_apply_the_same_rule_as_dicts_whatever_their_size() -> None:
    rec = tiny_model()
    for users in (1, SMALL_LOOKUP + 5):
        frame = pl.DataFrame(
            {
                "user_id": [f"u{u}" for u in range(users) for _ in range(3)],
                "item_id": ["007", "7", "1_2"] * users,
                "rating": [5.0, 4.0, 3.0] * users,
            }
        )
        with pytest.raises(UnknownItemError, match="'007', '1_2'"):
            rec.recommend_frame(frame)
        got = rec.recommend_frame(frame, n=5, on_unknown="ignore").filter(pl.col("user_id") == "u0")
        want = rec.recommend({7: 4.0}, n=5)
        assert got["item_id"].to_list() == [i for i, _ in want]


def test_string_catalogue_keeps_ids_as_given(tmp_path) -> None:
    rows = ["user_id,item_id,rating"] + [
        f"u{u},{i},{1 + (u + k) % 5}" for u in range(40) for k, i in enumerate(["007", "7", "a", "b", "c"])
    ]
    log = read_interactions(TableSpec(path=str(write(tmp_path / "log.csv", "\n".join(rows) + "\n"))))
    assert log["item_id"].dtype == pl.String and {"007", "7"} <= set(log["item_id"].to_list())
    rec = ColdStartRecommender(TINY | {"train": TINY["train"] | {"validation_fraction": 0.0}})
    rec.fit(log, rating_scale=(1.0, 5.0))
    i007, i7, a = rec._lookup(["007", 7, "a"])
    assert len({i007, i7, a}) == 3 and min(i007, i7, a) >= 0
    assert rec._lookup([" 7", "+7", 7.0]).tolist() == [-1, -1, -1]


# ---- readers: a column with any non-canonical id stays a string column ----------------------------------
def test_reader_keeps_007_and_7_apart_in_a_csv_log(tmp_path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,rating\n1,007,4\n1,7,5\n2,8,3\n")
    log = read_interactions(TableSpec(path=str(path)))
    assert log["item_id"].dtype == pl.String and log["item_id"].to_list() == ["007", "7", "8"]
    assert log["user_id"].dtype == pl.Int64  # every user id canonical: integers
    streamed, _ = collect_deduplicated(path)  # the streaming path (logs over RECSYS_STREAMING_MB)
    assert streamed["item_id"].dtype == pl.String and sorted(streamed["item_id"].to_list()) == [
        "007",
        "7",
        "8",
    ]
    assert stream_user_log(path).items.dtype == pl.String
    spaced = read_interactions(TableSpec(path=str(write(tmp_path / "s.csv", "user_id,item_id\n1, 8\n1,8\n"))))
    assert spaced["item_id"].to_list() == [" 8", "8"]  # two ids, as written (a warning says so)
    assert column_ids(pl.Series(["1", "-2", str(2**63)])).dtype == pl.String  # beyond int64
    assert column_ids(pl.Series(["1", "-2", "30"])).to_list() == [1, -2, 30]


def test_recommend_batch_csv_reads_007_as_written(tmp_path, capsys) -> None:
    model = tiny_model().save(tmp_path / "model")
    write(tmp_path / "new.csv", "user_id,item_id,rating\n1,007,4\n1,3,5\n")
    proc = cli(capsys, "recommend-batch", "--model", str(model), "--ratings", str(tmp_path / "new.csv"),
               "--out", str(tmp_path / "out.csv"))  # fmt: skip
    assert proc.returncode == 2 and "'007'" in proc.stderr, proc.stderr
    write(tmp_path / "ok.csv", "user_id,item_id,rating\n1,7,4\n1,3,5\n")
    proc = cli(capsys, "recommend-batch", "--model", str(model), "--ratings", str(tmp_path / "ok.csv"),
               "--out", str(tmp_path / "out.csv"), "-n", "3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = pl.read_csv(tmp_path / "out.csv")
    assert got["item_id"].to_list() == [i for i, _ in tiny_model().recommend({7: 4.0, 3: 5.0}, n=3)]


# ---- fit on frames ------------------------------------------------------------------------------------
def test_fit_on_a_pandas_object_column_mixing_int_and_str_ids_trains_with_string_ids() -> None:
    rng = np.random.default_rng(0)
    items = [7, "7x", 8, "a", "b", 9]
    frame = pd.DataFrame(
        {
            "user_id": [u if u % 2 else f"user{u}" for u in range(30) for _ in items],
            "item_id": items * 30,
            "rating": rng.integers(1, 6, 30 * len(items)).astype(float),
        }
    )
    rec = ColdStartRecommender(TINY).fit(frame)
    assert rec.space.items.dtype == pl.String and set(rec.item_ids) == {"7", "7x", "8", "a", "b", "9"}
    assert rec._lookup([7, "7", "a"]).tolist() == rec._lookup(["7", "7", "a"]).tolist()
    assert rec.recommend({7: 5.0, "a": 1.0}, n=3)


def test_fit_timestamps_like_123_seconds_are_a_data_error_naming_the_column(tmp_path) -> None:
    frame = pl.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": [1, 2, 1],
            "rating": [3.0, 4.0, 5.0],
            "timestamp": ["1", "2", "123 seconds"],
        }
    )
    with pytest.raises(DataError, match="timestamp") as err:
        ColdStartRecommender(TINY).fit(frame)
    assert err.value.field == "timestamp" and "123 seconds" in str(err.value)
    with pytest.raises(DataError, match="timestamp"):
        ColdStartRecommender(TINY).fit(frame.with_columns(pl.Series("timestamp", [1.0, float("nan"), 2.0])))
    with pytest.raises(DataError, match="timestamp"):
        ColdStartRecommender(TINY).fit(frame.with_columns(pl.Series("timestamp", [True, False, True])))
    path = write(tmp_path / "t.csv", "user_id,item_id,timestamp\n1,1,5\n1,2,123 seconds\n")
    with pytest.raises(DataError) as err:
        read_interactions(TableSpec(path=str(path)))
    assert err.value.field == "timestamp" and err.value.line == 3


def test_fit_refuses_float_ids_with_a_data_error() -> None:
    frame = pl.DataFrame({"user_id": [1, 2], "item_id": [1.0, 2.0], "rating": [3.0, 4.0]})
    with pytest.raises(DataError, match="integers or strings") as err:
        ColdStartRecommender(TINY).fit(frame)
    assert err.value.field == "item_id"


# ---- echoed values are cut ----------------------------------------------------------------------------
def test_a_20_mb_item_id_is_not_echoed_back_whole() -> None:
    rec = tiny_model()
    huge = "x" * 20_000_000
    for call in (
        lambda: rec.recommend({huge: 5.0}),
        lambda: rec.predict({1: 5.0}, [huge]),
        lambda: rec.recommend({huge: "5"}),
        lambda: rec.recommend_frame(pl.DataFrame({"user_id": ["u"], "item_id": [huge], "rating": [5.0]})),
        lambda: rec.recommend_frame(pl.DataFrame({"user_id": [huge], "item_id": ["1"], "rating": [9.0]})),
        lambda: rec.onboarding_items(n=huge),
    ):
        with pytest.raises(Exception) as err:
            call()
        assert len(str(err.value)) < 500 and "xxx..." in str(err.value)


# ---- REST: the pyfunc layer (in process) and the guard in front of MLflow's scoring server ---------------
def _pyfunc():
    from recsys.tracking.pyfunc import RecsysPyfunc

    model = RecsysPyfunc()
    model.rec = tiny_model()
    return model


def _predict_400(frame, params=None) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as err:
        _pyfunc().predict(None, frame, params)
    assert err.value.get_http_status_code() == 400
    return err.value.message


@functools.cache
def _pyfunc_folder() -> Path:
    """The tiny model saved as an MLflow models-from-code pyfunc (what ``log_pyfunc`` logs)."""
    import mlflow

    from recsys.tracking.pyfunc import CODE_FILE, input_example, model_signature
    from recsys.utils.locations import MODEL_SUBDIR

    folder = Path(tempfile.mkdtemp(prefix="recsys-rest-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    saved = tiny_model().save(folder / MODEL_SUBDIR)
    mlflow.pyfunc.save_model(
        path=folder / "pyfunc",
        python_model=str(CODE_FILE),
        artifacts={MODEL_SUBDIR: str(saved)},
        signature=model_signature(tiny_model()),
        input_example=input_example(tiny_model()),
        pip_requirements=["recsys"],
    )
    return folder / "pyfunc"


@functools.cache
def _mlflow_model():
    """The pyfunc loaded as ``mlflow models serve`` loads it."""
    import mlflow

    return mlflow.pyfunc.load_model(str(_pyfunc_folder()))


def _apps():
    """(MLflow's scoring app as served, the same app behind recsys.tracking.gateway.guard)."""
    from mlflow.pyfunc import scoring_server

    from recsys.tracking.gateway import guard

    raw = scoring_server.init(_mlflow_model())
    return raw, guard(raw, tiny_model().space.rating_scale)


def post(app, body: bytes | str | dict, content_type: str = "application/json") -> tuple[int, dict | str]:
    """One ``POST /invocations`` through an ASGI app, in process: (status, decoded answer)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()

    async def run():
        sent: list[dict] = []
        delivered = False
        never = asyncio.Event()

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/invocations", "raw_path": b"/invocations", "root_path": "",
            "query_string": b"", "server": ("test", 80), "client": ("test", 1),
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
        }  # fmt: skip
        with contextlib.suppress(Exception):  # raised after the server has sent its 500
            await app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode(errors="replace")

    return asyncio.run(run())


def rows(*data, columns=("user_id", "item_id", "rating"), params=None) -> dict:
    body = {"dataframe_split": {"columns": list(columns), "data": [list(r) for r in data]}}
    return body | ({"params": params} if params is not None else {})


def test_rest_ratings_true_or_string_5_are_a_400_as_in_the_python_api() -> None:
    raw, guarded = _apps()
    for bad in (True, "5"):
        with pytest.raises(ScoringInputError, match="not a number"):
            tiny_model().recommend({1: bad})
        assert "not a number" in _predict_400(
            pd.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [bad]})
        )
        status, answer = post(guarded, rows(["a", "1", bad]))
        assert status == 400 and "not a number" in answer["message"], answer
    status, answer = post(guarded, rows(["a", "1", 5], ["a", "2", 4.5]))
    assert status == 200
    want = tiny_model().recommend({1: 5.0, 2: 4.5}, n=10)
    assert [p["item_id"] for p in answer["predictions"]] == [i for i, _ in want]
    # MLflow alone casts the rating column to double first: what the guard is there for
    assert post(raw, rows(["a", "1", True]))[0] == 200


def test_rest_unknown_params_are_a_400_naming_the_param_and_the_valid_ones() -> None:
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["1"], "rating": [5.0]})
    message = _predict_400(frame, {"n": 3, "top_k": 5})
    assert "'top_k'" in message and "n, exclude_rated, on_unknown" in message
    status, answer = post(_apps()[1], rows(["a", "1", 5.0], params={"top_k": 5}))
    assert status == 400 and "'top_k'" in answer["message"] and "exclude_rated" in answer["message"]
    assert post(_apps()[1], rows(["a", "1", 5.0], params={"n": 3}))[0] == 200


def test_rest_deeply_nested_json_is_a_400_not_a_500() -> None:
    """MLflow's JSON decoder raises RecursionError before any model code (its handler catches only
    decode errors): the bare scoring server answers 500; the guard answers 400."""
    nested = '{"dataframe_split": ' + "[" * 100_000 + "]" * 100_000 + "}"
    status, answer = post(_apps()[1], nested)
    assert status == 400 and "nested too deeply" in answer["message"]
    status, answer = post(_apps()[1], "not json " + "x" * 5_000_000)
    assert status == 400 and len(answer["message"]) < 500  # MLflow alone echoes the whole body


def test_rest_request_size_caps_are_4xx(monkeypatch) -> None:
    guarded = _apps()[1]
    monkeypatch.setenv("RECSYS_SERVE_MAX_ROWS", "5")
    six = [[f"u{k}", "1", 4.0] for k in range(6)]
    assert "at most 5" in _predict_400(pd.DataFrame(six, columns=["user_id", "item_id", "rating"]))
    status, answer = post(guarded, rows(*six))
    assert status == 400 and "at most 5" in answer["message"]
    monkeypatch.setenv("RECSYS_SERVE_MAX_RATINGS_PER_USER", "2")
    assert "at most 2" in _predict_400(
        pd.DataFrame([["u", str(i), 4.0] for i in (1, 2, 3)], columns=["user_id", "item_id", "rating"])
    )
    monkeypatch.setenv("RECSYS_SERVE_MAX_BODY_MB", "0.01")
    status, answer = post(guarded, rows(*[["u", "1", 4.0]] * 1000))
    assert status == 413 and "RECSYS_SERVE_MAX_BODY_MB" in answer["message"]


def test_rest_a_20_mb_item_id_is_not_echoed_back(monkeypatch) -> None:
    huge = "7" * 20_000_000
    message = _predict_400(pd.DataFrame({"user_id": ["a"], "item_id": [huge], "rating": [5.0]}))
    assert "at most 256" in message and len(message) < 500
    monkeypatch.setenv("RECSYS_SERVE_MAX_ID_CHARS", str(10**8))  # past the length cap: unknown item
    message = _predict_400(pd.DataFrame({"user_id": ["a"], "item_id": [huge], "rating": [5.0]}))
    assert "unknown item" in message and len(message) < 500
    monkeypatch.delenv("RECSYS_SERVE_MAX_ID_CHARS")
    monkeypatch.setenv("RECSYS_SERVE_MAX_BODY_MB", "64")
    status, answer = post(_apps()[1], rows(["a", huge, 5.0]))
    assert status == 400 and len(answer["message"]) < 500


@pytest.mark.mlflow_server
@pytest.mark.slow
def test_rest_gateway_served_for_real_answers_nesting_and_unknown_params_with_a_400(tmp_path) -> None:
    """``python -m recsys.tracking.gateway`` as a process (uvicorn, MLflow's scoring app behind the guard)."""
    import subprocess
    import sys

    from tests.mlflow_servers import REPO, child_env, free_port, http, post_json, stop, wait_healthy

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recsys.tracking.gateway", str(_pyfunc_folder()), "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=child_env(PYTHONPATH=str(REPO)),
            start_new_session=True,
        )
    try:
        wait_healthy(f"{url}/ping", proc, log)
        nested = ('{"dataframe_split": ' + "[" * 50_000 + "]" * 50_000 + "}").encode()
        status, text = http(f"{url}/invocations", nested)
        assert status == 400 and "nested too deeply" in text
        status, answer = post_json(f"{url}/invocations", rows(["a", "1", 5.0], params={"top_k": 3}))
        assert status == 400 and "'top_k'" in answer["message"]
        status, answer = post_json(f"{url}/invocations", rows(["a", "1", True]))
        assert status == 400 and "not a number" in answer["message"]
        status, answer = post_json(f"{url}/invocations", rows(["a", "1", 5.0], params={"n": 3}))
        assert status == 200 and len(answer["predictions"]) == 3
    finally:
        stop(proc)
