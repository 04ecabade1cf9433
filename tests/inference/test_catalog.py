from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from inference.animelist import PartialDate
from inference.catalog import (
    FORMAT_VERSION,
    Catalog,
    CatalogItem,
    franchise_ids,
    load_catalog,
    save_catalog,
)
from inference.errors import CatalogError


def small_catalog() -> Catalog:
    items = [
        CatalogItem(
            mal_id=16498,
            title="Shingeki no Kyojin",
            anilist_id=16498,
            title_english="Attack on Titan",
            media_type="tv",
            episodes=25,
            episode_minutes=24,
            start_date=PartialDate(2013, 4, 7),
            end_date=PartialDate(2013, 9),
            season="spring",
            season_year=2013,
            airing_status="finished",
            genres=("Action", "Drama"),
            tags=("Military", "Survival"),
            picture_url="https://example.invalid/snk.jpg",
            popularity=2_531_397,
            mean_score=8.48,
            relations=(("sequel", 25777), ("side_story", 18397)),
            franchise_id=16498,
        ),
        CatalogItem(
            mal_id=25777, title="Shingeki no Kyojin Season 2", start_date=PartialDate(2017)
        ),
        CatalogItem(mal_id=7, title="Some Adult Title", adult=True, mean_score=6.0),
        CatalogItem(mal_id=1, title="Cowboy Bebop", anilist_id=1),
    ]
    return Catalog(items, {"source": "test", "franchise_method": "relations"})


@pytest.mark.parametrize("name", ["catalog.json", "catalog.json.gz"])
def test_round_trip_keeps_every_field_and_the_order(tmp_path: Path, name: str) -> None:
    catalog = small_catalog()
    path = tmp_path / "sub" / name
    save_catalog(catalog, path)
    loaded = load_catalog(path)
    assert loaded.items == catalog.items
    assert loaded.info == catalog.info
    assert [loaded.index_of(i.mal_id) for i in catalog.items] == [0, 1, 2, 3]
    raw = path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == name.endswith(".gz")


def test_saving_twice_gives_identical_bytes(tmp_path: Path) -> None:
    save_catalog(small_catalog(), tmp_path / "a.json.gz")
    save_catalog(small_catalog(), tmp_path / "b.json.gz")
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()


def test_defaults_are_left_out_of_the_file(tmp_path: Path) -> None:
    save_catalog(small_catalog(), tmp_path / "c.json")
    document = json.loads((tmp_path / "c.json").read_text())
    assert document["format"] == "animerec-catalog"
    assert document["version"] == FORMAT_VERSION
    assert document["items"][3] == {"mal_id": 1, "title": "Cowboy Bebop", "anilist_id": 1}
    assert document["items"][0]["start_date"] == "2013-04-07"
    assert document["items"][0]["relations"] == [["sequel", 25777], ["side_story", 18397]]


def test_lookups() -> None:
    catalog = small_catalog()
    assert len(catalog) == 4
    bebop = catalog.by_mal_id(1)
    assert bebop is not None and bebop.title == "Cowboy Bebop"
    assert catalog.by_mal_id(2) is None
    assert catalog.index_of(7) == 2
    assert catalog.index_of(999) is None
    assert catalog.mal_id_for_anilist(16498) == 16498
    assert catalog.mal_id_for_anilist(5) is None
    assert catalog.anilist_to_mal == {16498: 16498, 1: 1}
    assert catalog[2].adult
    assert [m.mal_id for m in catalog.franchise_members(16498)] == [16498]


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(CatalogError, match="MAL id 1 appears twice"):
        Catalog([CatalogItem(1, "a"), CatalogItem(1, "b")])


def write_document(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def good_document() -> dict:
    return {"format": "animerec-catalog", "version": FORMAT_VERSION, "info": {}, "items": []}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": 99}, "version 99 is not supported"),
        ({"format": "something-else"}, "not a catalogue file"),
        ({"items": {"a": 1}}, "items must be a list"),
        ({"items": [{"title": "x"}]}, "item 0: mal_id must be a positive integer"),
        ({"items": [{"mal_id": 1}]}, "item 0: title must be a non-empty string"),
        ({"items": [{"mal_id": 1, "title": "x", "colour": "red"}]}, "unknown field(s) colour"),
        ({"items": [{"mal_id": 1, "title": "x", "media_type": "book"}]}, "media_type 'book'"),
        ({"items": [{"mal_id": 1, "title": "x", "start_date": "soon"}]}, "start_date 'soon'"),
        ({"items": [{"mal_id": 1, "title": "x", "genres": "Action"}]}, "genres must be a list"),
        ({"items": [{"mal_id": 1, "title": "x", "relations": [["sequel"]]}]}, "relations"),
        ({"items": [{"mal_id": 1, "title": "x", "episodes": "12"}]}, "episodes must be an integer"),
        ({"items": [{"mal_id": 1, "title": "x"}, {"mal_id": 1, "title": "y"}]}, "appears twice"),
    ],
)
def test_malformed_documents_are_refused_clearly(
    tmp_path: Path, change: dict, expected: str
) -> None:
    document = good_document() | change
    path = write_document(tmp_path / "bad.json", document)
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_missing_not_json_and_bad_gzip(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalogue not found"):
        load_catalog(tmp_path / "none.json.gz")
    (tmp_path / "text.json").write_text("not json at all")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(tmp_path / "text.json")
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(b'{"format": 1}' * 50)[:30])
    with pytest.raises(CatalogError, match="gzip"):
        load_catalog(tmp_path / "cut.json.gz")
    write_document(tmp_path / "list.json", [1, 2])
    with pytest.raises(CatalogError, match="not a catalogue"):
        load_catalog(tmp_path / "list.json")


def test_franchise_components_follow_franchise_relations_only() -> None:
    relations = {
        10: [("sequel", 11)],
        11: [("prequel", 10), ("sequel", 12)],
        12: [("side_story", 99)],  # 99 is not in the catalogue
        13: [("parent", 99)],  # ...but still joins 13 to the 10-11-12 chain
        20: [("spin_off", 10), ("adaptation", 11)],  # not franchise relations
        21: [("summary", 20)],
        30: [],
    }
    ids = franchise_ids(relations)
    assert ids == {10: 10, 11: 10, 12: 10, 13: 10, 20: 20, 21: 20, 30: 30}


def test_franchise_id_is_the_smallest_member_whatever_the_edge_order() -> None:
    relations = {5: [("alternative_version", 3)], 3: [], 9: [("full_story", 5)]}
    assert franchise_ids(relations) == {3: 3, 5: 3, 9: 3}
    reversed_edges = {3: [("alternative_version", 5)], 5: [("prequel", 9)], 9: []}
    assert franchise_ids(reversed_edges) == {3: 3, 5: 3, 9: 3}


def test_long_chain_does_not_recurse() -> None:
    relations = {i: [("sequel", i + 1)] for i in range(1, 50_001)}
    ids = franchise_ids(relations)
    assert set(ids.values()) == {1}
