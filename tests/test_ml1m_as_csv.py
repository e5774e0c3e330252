"""The MovieLens-1M CSV export: GroupLens files in, a dataset the generic spec path loads out."""

from __future__ import annotations

import pytest

from pipelines.ml1m_as_csv import export
from recsys.data import load_dataset


def _grouplens(folder) -> None:
    folder.mkdir()
    (folder / "ratings.dat").write_text(
        "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n2::30::1::978300275\n",
        encoding="latin-1",
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n", encoding="latin-1")
    (folder / "movies.dat").write_text(
        "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Jumanji (1995)::Adventure\n"
        "30::Café (1999)::Drama|Comedy\n",
        encoding="latin-1",
    )


def test_export_loads_through_the_generic_spec_path(tmp_path) -> None:
    _grouplens(tmp_path / "src")
    counts = export(tmp_path / "src", tmp_path / "out")
    assert counts == {"ratings.csv": 4, "users.csv": 2, "movies.csv": 3}
    ds = load_dataset(tmp_path / "out")
    assert ds.interactions.height == 4
    assert sorted(ds.interactions["rating"].to_list()) == [1.0, 3.0, 4.0, 5.0]
    kinds = {f.name: f.kind.value for f in ds.spec.item_fields}
    assert kinds["genres"] == "multi"
    genres = dict(zip(ds.items["item_id"].to_list(), ds.items["genres"].to_list(), strict=True))
    assert sorted(genres[10]) == ["Animation", "Children's", "Comedy"]
    users = dict(zip(ds.users["user_id"].to_list(), ds.users["zip"].to_list(), strict=True))
    assert users == {1: "48", 2: "70"}
    titles = dict(zip(ds.items["item_id"].to_list(), ds.items["title"].to_list(), strict=True))
    assert titles[30] == "Café (1999)"  # Latin-1 decoded


def test_a_malformed_line_names_the_file_and_line(tmp_path) -> None:
    _grouplens(tmp_path / "src")
    (tmp_path / "src" / "users.dat").write_text("1::F::1::10::48067\n2::M::56\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"users.dat, line 2: wrong number of fields; expected 5"):
        export(tmp_path / "src", tmp_path / "out")
