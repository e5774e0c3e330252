"""Start-up of one scoring call: loading a model and recommending imports only what scoring needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_recommender import fit

HEAVY = ("torch._dynamo", "mlflow", "implicit", "matplotlib", "sympy")
"""Modules a load-and-recommend call must not import (each costs 0.3 to 2 s of start-up)."""


@pytest.fixture(scope="module")
def model_folder(synthetic_small, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fast-start") / "m"
    fit(synthetic_small).save(path)
    return path


def test_loading_and_recommending_imports_no_compiler_tracking_or_training_libraries(model_folder) -> None:
    code = (
        "import json, sys\n"
        "from recsys.recommender import ColdStartRecommender\n"
        f"rec = ColdStartRecommender.load({str(model_folder)!r})\n"
        "top = rec.recommend({rec.item_ids[0]: 5.0, rec.item_ids[1]: 2.0}, n=3)\n"
        f"print(json.dumps([len(top), sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert n == 3
    assert loaded == []


def test_cli_recommend_from_a_model_folder_imports_no_compiler_or_tracking_library(
    model_folder, tmp_path
) -> None:
    ratings = tmp_path / "r.json"
    ratings.write_text('{"1": 5, "2": 3}')
    code = (
        "import json, sys\n"
        "from recsys.cli import main\n"
        f"sys.argv = ['recsys', 'recommend', '--model', {str(model_folder)!r}, '--ratings', {str(ratings)!r}, '-n', '2']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
