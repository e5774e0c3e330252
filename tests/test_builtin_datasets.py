"""Every built-in layout reads from a tiny hand-written copy (no real data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.data import load_dataset
from recsys.data.dataset import builtin_specs
from recsys.errors import DatasetNotFoundError
from tests.conftest import write

GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def test_every_builtin_spec_parses() -> None:
    specs = builtin_specs()
    assert {"ml-100k", "ml-1m", "melu-ml1m", "ml-latest-small", "ml-latest", "ml-25m"} <= set(specs)
    assert {s.layout for s in specs["ml-100k"]} == {"grouplens", "recbole"}


def test_ml100k_grouplens_layout(tmp_path: Path) -> None:
    d = tmp_path / "ml-100k"
    write(d / "u.data", "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n")
    write(d / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    flags = ["0"] * 19
    f1, f2 = flags.copy(), flags.copy()
    f1[3] = f1[5] = "1"
    f2[1] = "1"
    write(
        d / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{'|'.join(f1)}\n"
        f"2|GoldenEye (1995)|01-Jan-1995||http://y|{'|'.join(f2)}\n",
        encoding="latin-1",
    )
    ds = load_dataset("ml-100k", data_root=tmp_path)
    assert ds.spec.layout == "grouplens"
    assert ds.interactions.height == 3
    assert ds.items["genre"].to_list() == [["Animation", "Comedy"], ["Action"]]
    assert ds.titles()[1] == "Toy Story (1995)"


def test_ml100k_recbole_layout(tmp_path: Path) -> None:
    d = tmp_path / "ml-100k"
    write(
        d / "ml-100k.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t10\n2\t1\t3\t11\n",
    )
    write(
        d / "ml-100k.user",
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\ttech\t85711\n",
    )
    write(
        d / "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tToy Story\t1995\tAnimation Children's\n",
    )
    ds = load_dataset("ml-100k", data_root=tmp_path)
    assert ds.spec.layout == "recbole"
    assert ds.items["genre"].to_list() == [["Animation", "Children's"]]
    assert ds.users["zip"].to_list() == ["85"]


def test_ml1m_dat_latin1(tmp_path: Path) -> None:
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1::1193::5::978300760\n2::1193::4::978300761\n")
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    write(d / "movies.dat", "1193::Café Society (1975)::Drama|Comedy\n", encoding="latin-1")
    ds = load_dataset("ml-1m", data_root=tmp_path)
    assert ds.titles()[1193] == "Café Society (1975)"
    assert ds.items["genre"].to_list() == [["Drama", "Comedy"]]


def test_ml1m_recbole_strips_user_prefix(tmp_path: Path) -> None:
    d = tmp_path / "ml-1m"
    write(
        d / "ml-1m.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n1m_1\tHeat (1995)\t5\t10\r\n",
    )
    write(
        d / "ml-1m.user",
        "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\r\n1m_1\t1\tF\t10\t48067\r\n",
    )
    write(
        d / "ml-1m.item",
        "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\nHeat (1995)\tHeat\t1995\tAction Crime\r\n",
    )
    ds = load_dataset("ml-1m", data_root=tmp_path)
    assert ds.interactions["user_id"].to_list() == [1]
    assert ds.interactions["item_id"].to_list() == ["Heat (1995)"]
    assert ds.users["user_id"].to_list() == [1]


def test_ml_latest_csv(tmp_path: Path) -> None:
    d = tmp_path / "ml-latest-small"
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.5,964982703\n1,3,0.5,964981247\n")
    write(
        d / "movies.csv",
        'movieId,title,genres\n1,"Toy Story (1995)",Adventure|Animation\n3,"Heat, The (1995)",(no genres listed)\n',
    )
    ds = load_dataset("ml-latest-small", data_root=tmp_path)
    assert ds.rating_scale == (0.5, 5.0)
    assert ds.items["genre"].to_list() == [["Adventure", "Animation"], []]
    assert ds.titles()[3] == "Heat, The (1995)"


def test_melu_split_files(tmp_path: Path) -> None:
    d = tmp_path / "melu-ml1m"
    for state, users in {"warm_state": {"1": ["10", "20"]}, "user_cold_state": {"2": ["10"]}}.items():
        write(d / f"{state}.json", json.dumps(users))
        write(d / f"{state}_y.json", json.dumps({u: [4] * len(v) for u, v in users.items()}))
    write(
        d / "movies_extrainfos.dat",
        "10::Heat::1995::R::15 Dec 1995::Action, Crime::Michael Mann::W::Al Pacino, Robert De Niro::p::x\r\n"
        "20::Up::2009::PG::N/A::N/A::Pete Docter::W::Ed Asner::p::x\r\n",
    )
    write(tmp_path / "ml-1m" / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    ds = load_dataset("melu-ml1m", data_root=tmp_path)
    assert ds.interactions.height == 3
    assert set(ds.interactions["state"]) == {"warm_state", "user_cold_state"}
    assert ds.items["actor"].to_list()[0] == ["Al Pacino", "Robert De Niro"]
    assert ds.items["genre"].to_list()[1] == []


def test_missing_builtin_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="recsys data download ml-1m"):
        load_dataset("ml-1m", data_root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"github\.com/hoyeoplee/MeLU"):
        load_dataset("melu-ml1m", data_root=tmp_path)


def test_spec_toml_in_folder(tmp_path: Path) -> None:
    write(tmp_path / "log.csv", "customer,sku,stars\nA,X,5\nB,X,1\n")
    write(tmp_path / "items.csv", "sku,brand,tags\nX,acme,a|b\n")
    write(
        tmp_path / "spec.toml",
        """name = "shop"
rating_scale = [1, 5]
[interactions]
path = "log.csv"
columns = { user_id = "customer", item_id = "sku", rating = "stars" }
[items]
path = "items.csv"
key = "sku"
fields = [{ name = "brand" }, { name = "tags", kind = "multi" }]
""",
    )
    ds = load_dataset(tmp_path)
    assert ds.name == "shop" and ds.items["tags"].to_list() == [["a", "b"]]
