"""The lazy/streaming path for large logs gives the same data as the eager readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.data.readers import read_interactions
from recsys.data.spec import TableSpec
from recsys.data.streaming import stream_user_log
from recsys.data.tasks import UserLog
from recsys.errors import DataError
from tests.conftest import write
from tests.helpers import random_log_with_duplicates


@pytest.fixture
def log_with_duplicates(tmp_path: Path) -> Path:
    frame = random_log_with_duplicates(3000, distinct_times=True)
    frame.write_csv(tmp_path / "log.csv")
    frame.write_parquet(tmp_path / "log.parquet")
    return tmp_path


@pytest.mark.parametrize("name", ["log.csv", "log.parquet"])
def test_streaming_equals_eager(log_with_duplicates: Path, name: str) -> None:
    path = log_with_duplicates / name
    eager = read_interactions(TableSpec(path=str(path)), None, rating_scale=(1, 5), streaming=False)
    streamed = read_interactions(TableSpec(path=str(path)), None, rating_scale=(1, 5), streaming=True)
    key = ["user_id", "item_id"]
    assert eager.height < 3000  # duplicates were dropped
    assert eager.sort(key).equals(streamed.sort(key).select(eager.columns))
    s = stream_user_log(path, rating_scale=(1, 5))
    ref = UserLog.from_frame(eager, s.items)
    assert s.duplicates_dropped == 3000 - eager.height
    assert np.array_equal(ref.indptr, s.log.indptr) and np.array_equal(ref.items, s.log.items)
    assert np.array_equal(ref.ratings, s.log.ratings) and np.array_equal(ref.times, s.log.times)


def test_streaming_bad_value_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.csv", "user_id,item_id,rating,timestamp\n1,2,3,10\n1,3,9,11\n")
    with pytest.raises(DataError) as err:
        stream_user_log(p, rating_scale=(1, 5))
    assert err.value.line == 3 and err.value.field == "rating"
