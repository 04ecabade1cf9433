"""EligibilityIndex gives exactly what filters.eligible gives, on random lists and options."""

from __future__ import annotations

import datetime as dt
from functools import partial
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

from inference.animelist import AnimeList, ListEntry, Status
from inference.catalog import MEDIA_TYPES, Catalog, CatalogItem, load_catalog
from inference.eligibility_index import EligibilityIndex, EntryWalks
from inference.filters import WALK_STOPS, Eligibility, completes, eligible, next_to_watch
from inference.franchise import FranchiseIndex
from inference.options import RecommendOptions, catalog_genres
from tests.bot.conftest import bot_catalog
from tests.conftest import ROOT
from tests.inference.franchise_fixture import load_fixture, relations_catalog, stems_catalog
from tests.inference.small_catalogs import with_relations, without_relations
from tests.tiny_bundle import tiny_catalog

STATUSES = list(Status)


def random_case(
    catalog: Catalog, rng: np.random.Generator
) -> tuple[AnimeList, RecommendOptions, dt.date]:
    n = len(catalog)
    size = int(rng.integers(0, min(n, 40) + 1))
    picked = rng.choice(n, size=size, replace=False)
    if rng.random() < 0.5:
        # Lists that know a few franchises well: most of the franchise rule's cases live there.
        seeds = {catalog[int(i)].franchise_id for i in rng.choice(n, size=min(n, 3), replace=False)}
        pool = [i for i, it in enumerate(catalog) if it.franchise_id in seeds]
        picked = rng.choice(pool, size=int(rng.integers(0, len(pool) + 1)), replace=False)
    entries = [
        ListEntry(
            mal_id=catalog[int(i)].mal_id,
            status=STATUSES[int(rng.integers(5))],
            rewatching=bool(rng.random() < 0.1),
        )
        for i in picked
    ]
    entries.append(ListEntry(mal_id=-5, status=Status.COMPLETED))  # not in the catalogue
    genres = sorted(set(catalog_genres(catalog).values()))
    chosen = [g for g in genres if rng.random() < 0.2]
    split = int(rng.integers(0, len(chosen) + 1))
    options = RecommendOptions(
        count=10,
        media_types=(
            frozenset(t for t in MEDIA_TYPES if rng.random() < 0.5) or frozenset({"tv"})
            if rng.random() < 0.4
            else None
        ),
        include_genres=tuple(chosen[:split]) if rng.random() < 0.5 else (),
        exclude_genres=tuple(g.upper() for g in chosen[split:]),
        plan_to_watch=bool(rng.random() < 0.7),
        unaired=bool(rng.random() < 0.3),
        adult=bool(rng.random() < 0.3),
        exclude_mal_ids=frozenset(
            catalog[int(i)].mal_id for i in rng.choice(n, size=min(3, n), replace=False)
        ),
    )
    today = dt.date(2000 + int(rng.integers(0, 30)), int(rng.integers(1, 13)), 15)
    return AnimeList(source="mal", username="x", entries=entries), options, today


def assert_same(a: Eligibility, b: Eligibility) -> None:
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.plan_to_watch, b.plan_to_watch)
    assert a.excluded == b.excluded
    assert a.redirects == b.redirects
    assert a.approximate_franchises == b.approximate_franchises


CATALOGS = {
    "relations": with_relations,
    "offline": without_relations,
    "bot": bot_catalog,
    "tiny-bundle": tiny_catalog,
    # real franchises: remakes, spin-offs, recaps, prequels made later, long runners
    "fixture-relations": lambda: relations_catalog(load_fixture()),
    "fixture-stems": lambda: stems_catalog(load_fixture()),
}


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_same_answers_as_filters_eligible(name: str) -> None:
    catalog = CATALOGS[name]()
    franchises = FranchiseIndex.build(catalog)
    index = EligibilityIndex(catalog, franchises)
    rng = np.random.default_rng(len(name))
    for _ in range(150):
        animelist, options, today = random_case(catalog, rng)
        expected = eligible(catalog, animelist, options, today=today, franchises=franchises)
        assert_same(index.eligible(animelist, options, today=today), expected)


def test_same_answers_on_the_default_bundle_catalogue() -> None:
    path = ROOT / "exports" / "default" / "catalog.json.gz"
    if not path.is_file():
        pytest.skip("the default bundle is not built")
    catalog = load_catalog(path)
    franchises = FranchiseIndex.build(catalog)
    index = EligibilityIndex(catalog, franchises)
    rng = np.random.default_rng(0)
    for _ in range(15):
        animelist, options, today = random_case(catalog, rng)
        expected = eligible(catalog, animelist, options, today=today, franchises=franchises)
        assert_same(index.eligible(animelist, options, today=today), expected)


def test_unknown_genres_are_refused_as_before() -> None:
    index = EligibilityIndex(without_relations())
    with pytest.raises(ValueError, match="unknown genre"):
        index.eligible(
            AnimeList(source="mal", username="x"), RecommendOptions(include_genres=("nope",))
        )


def walk(
    i: int, *, statuses: dict[int, Status], franchises: FranchiseIndex, catalog: Catalog
) -> int | None:
    return next_to_watch(i, statuses, franchises, catalog)


def test_shared_walks_give_what_each_walk_gives_on_random_graphs_with_cycles() -> None:
    """`EntryWalks` against `filters.next_to_watch` over random requirement graphs: long chains,
    branches, cycles (through a walk's start and not), every status."""
    rng = np.random.default_rng(0)
    for case in range(300):
        n = int(rng.integers(2, 30))
        items = [
            CatalogItem(
                mal_id=k,
                title=f"T{k}",
                airing_status="airing" if rng.random() < 0.3 else "finished_airing",
            )
            for k in range(n)
        ]
        catalog = Catalog(items, {})
        requires: dict[int, tuple[int, ...]] = {}
        for i in range(n):
            if rng.random() < 0.8:
                back = max(0, i - int(rng.integers(1, 3)))  # mostly a chain back to 0
                if rng.random() < 0.15:
                    back = int(rng.integers(n))  # anywhere: cycles, self-loops
                extra = rng.choice(n, size=int(rng.integers(0, 3)), replace=False)
                requires[i] = tuple(dict.fromkeys([back, *extra.tolist()]))
        listed = rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False)
        statuses = {int(i): STATUSES[int(rng.integers(len(STATUSES)))] for i in listed}
        franchises = cast(FranchiseIndex, SimpleNamespace(requires=requires))
        walks = EntryWalks(
            requires,
            {i for i, s in statuses.items() if completes(s, catalog[i])},
            {i for i, s in statuses.items() if s in WALK_STOPS},
            partial(walk, statuses=statuses, franchises=franchises, catalog=catalog),
        )
        for i in rng.permutation(n).tolist():  # walks in any order share the tails
            assert walks.entry(i) == next_to_watch(i, statuses, franchises, catalog), (case, i)
