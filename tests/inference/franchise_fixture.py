"""The franchise fixture (tests/fixtures/franchises.json) and the score of the franchise rules on it.

Each fixture franchise is written from public knowledge: items with MyAnimeList ids, formats,
episode counts, first air dates and their relations as AniList states them, and what a fan
expects (entry point, main order, side stories and what each needs, recaps). Two catalogues are
scored against it:
- "relations": the items as AniList media, through the live catalogue builder
  (`training.catalog_live.catalog_from_media`), so relation names and franchise ids are the ones a
  `--live` build gives;
- "approximation": the offline catalogue built from ANIMEREC_SHARED_DATA (the real rows of those MAL ids,
  among the 17k others, with title-stem franchises); items it lacks are left out of the score.

Scored, through `EligibilityIndex` (equal to `filters.eligible`) with default options:
(a) entry points: for an empty list, the only eligible member of the franchise is the expected
    entry point, and every held-back member that is redirected is redirected to it;
(b) "prequel completed?" decisions on constructed lists: after completing the main order up to
    an entry, the next is eligible and the one after is not; nothing follows a dropped or a
    half-watched entry; a later entry the user planned stays eligible unless its prequel was
    dropped; a side story is eligible once what it needs is completed and not one step earlier;
    recaps never are.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.animelist import AnimeList, ListEntry, Status
from inference.catalog import Catalog
from inference.eligibility_index import EligibilityIndex
from inference.franchise import FranchiseIndex
from inference.options import RecommendOptions

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "franchises.json"
TODAY = dt.date(2026, 12, 1)
ANILIST_ID_OFFSET = 10_000_000  # the fixture's media get AniList ids of their own


@dataclass(frozen=True)
class Franchise:
    name: str
    entry_point: int
    older_version: int | None
    main_order: tuple[int, ...]
    side_stories: tuple[tuple[int, int], ...]  # (side story, what it needs)
    recaps: tuple[int, ...]
    items: tuple[dict[str, Any], ...]

    @property
    def members(self) -> tuple[int, ...]:
        return tuple(int(it["mal_id"]) for it in self.items)

    def prefix(self, mal_id: int) -> list[int]:
        """What a fan completes to reach `mal_id`, in order, `mal_id` included."""
        if mal_id in self.main_order:
            return list(self.main_order[: self.main_order.index(mal_id) + 1])
        if mal_id == self.older_version:  # watched on its own, the way it aired
            return [mal_id]
        needs = dict(self.side_stories)[mal_id]
        return [*self.prefix(needs), mal_id]


def load_fixture(path: Path = FIXTURE) -> list[Franchise]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return [
        Franchise(
            name=f["name"],
            entry_point=f["entry_point"],
            older_version=f["older_version"],
            main_order=tuple(f["main_order"]),
            side_stories=tuple((s, n) for s, n in f["side_stories"]),
            recaps=tuple(f["recaps"]),
            items=tuple(f["items"]),
        )
        for f in document["franchises"]
    ]


def _date(text: str) -> dict[str, int | None]:
    parts = [int(p) for p in text.split("-")] + [None, None]  # type: ignore[list-item]
    return {"year": parts[0], "month": parts[1], "day": parts[2]}


def anilist_media(franchises: Iterable[Franchise]) -> list[dict[str, Any]]:
    """The fixture's items as AniList `Page.media` entries (what `--live` fetches)."""
    media = []
    for franchise in franchises:
        for it in franchise.items:
            media.append(
                {
                    "id": ANILIST_ID_OFFSET + it["mal_id"],
                    "idMal": it["mal_id"],
                    "title": {"romaji": it["title"], "english": None},
                    "format": it["format"],
                    "episodes": it["episodes"],
                    "status": "FINISHED",
                    "startDate": _date(it["start"]),
                    "popularity": it.get("popularity", 0),
                    "relations": {
                        "edges": [
                            {
                                "relationType": kind,
                                "node": {
                                    "id": ANILIST_ID_OFFSET + target,
                                    "idMal": target,
                                    "type": "ANIME",
                                },
                            }
                            for kind, target in it["relations"]
                        ]
                    },
                }
            )
    return media


def relations_catalog(franchises: Sequence[Franchise]) -> Catalog:
    from training.catalog_live import catalog_from_media

    return catalog_from_media(anilist_media(franchises), {"source": "franchise fixture"})


def stems_catalog(franchises: Sequence[Franchise]) -> Catalog:
    """The fixture's items as the offline build groups them (title stems, no relations), with
    the fixture's own facts: the approximation, without the shared data."""
    from inference.animelist import PartialDate
    from inference.catalog import CatalogItem
    from training.catalog_build import stem_franchises
    from training.catalog_live import FORMATS

    rows = sorted((it for f in franchises for it in f.items), key=lambda it: it["mal_id"])
    groups = stem_franchises((it["mal_id"], it["title"]) for it in rows)
    return Catalog(
        [
            CatalogItem(
                mal_id=it["mal_id"],
                title=it["title"],
                media_type=FORMATS.get(it["format"]),
                episodes=it["episodes"],
                start_date=PartialDate.parse(it["start"]),
                popularity=it.get("popularity"),
                franchise_id=groups[it["mal_id"]],
            )
            for it in rows
        ],
        {"source": "franchise fixture", "franchise_method": "approximate: title stems"},
    )


def offline_catalog(folder: Path) -> Catalog:
    from training.catalog_build import build_offline

    return build_offline(folder, now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))


@dataclass(frozen=True)
class Decision:
    franchise: str
    title: str  # what is decided, for people
    mal_id: int
    entries: tuple[tuple[int, Status], ...]
    eligible: bool


def decisions(franchise: Franchise) -> list[Decision]:
    """The "prequel completed?" decisions of one franchise (see the module doc)."""
    out: list[Decision] = []
    main = franchise.main_order
    done = Status.COMPLETED

    def add(title: str, mal_id: int, entries: Iterable[tuple[int, Status]], ok: bool) -> None:
        out.append(Decision(franchise.name, title, mal_id, tuple(entries), ok))

    if len(main) > 1:
        add("empty list: the second entry waits", main[1], (), False)
        add("watching the first: the second waits", main[1], [(main[0], Status.WATCHING)], False)
        add("dropped the first: nothing follows", main[1], [(main[0], Status.DROPPED)], False)
        add("planned the second: it stays", main[1], [(main[1], Status.PLAN_TO_WATCH)], True)
        add(
            "dropped the first, planned the second: it goes",
            main[1],
            [(main[0], Status.DROPPED), (main[1], Status.PLAN_TO_WATCH)],
            False,
        )
    for j in range(len(main) - 1):
        completed = [(m, done) for m in main[: j + 1]]
        add(f"completed {j + 1}: the next is offered", main[j + 1], completed, True)
        if j + 2 < len(main):
            add(f"completed {j + 1}: the one after waits", main[j + 2], completed, False)
    for side, _needs in franchise.side_stories:
        path = franchise.prefix(side)[:-1]
        add("side story once what it needs is completed", side, [(m, done) for m in path], True)
        add("side story one step earlier", side, [(m, done) for m in path[:-1]], False)
    for recap in franchise.recaps:
        add("recaps are never picks", recap, [(m, done) for m in main], False)
    return out


@dataclass
class Score:
    entry_right: int = 0
    entry_total: int = 0
    decisions_right: int = 0
    decisions_total: int = 0
    skipped_franchises: int = 0  # entry point missing from the catalogue
    skipped_decisions: int = 0  # an item of the decision missing from the catalogue
    failures: list[str] = field(default_factory=list)

    @property
    def entry_accuracy(self) -> float:
        return self.entry_right / self.entry_total if self.entry_total else 0.0

    @property
    def decision_accuracy(self) -> float:
        return self.decisions_right / self.decisions_total if self.decisions_total else 0.0


def _animelist(entries: Iterable[tuple[int, Status]]) -> AnimeList:
    rows = [ListEntry(mal_id=m, status=s) for m, s in entries]
    return AnimeList(source="mal", username="fixture", entries=rows)


def score(catalog: Catalog, franchises: Sequence[Franchise]) -> Score:
    index = EligibilityIndex(catalog, FranchiseIndex.build(catalog))
    options = RecommendOptions()
    result = Score()
    for franchise in franchises:
        present = [m for m in franchise.members if catalog.index_of(m) is not None]
        entry = catalog.index_of(franchise.entry_point)
        if entry is None:
            result.skipped_franchises += 1
        else:
            result.entry_total += 1
            answer = index.eligible(_animelist(()), options, today=TODAY)
            offered = {m for m in present if answer.mask[catalog.index_of(m)]}  # type: ignore[index]
            members = {catalog.index_of(m) for m in present}
            elsewhere = {
                catalog[later].mal_id
                for later, to in answer.redirects.items()
                if later in members and to != entry
            }
            if offered == {franchise.entry_point} and not elsewhere:
                result.entry_right += 1
            else:
                result.failures.append(
                    f"{franchise.name}: entry {franchise.entry_point}, offered {sorted(offered)}"
                    + (f", redirected elsewhere {sorted(elsewhere)}" if elsewhere else "")
                )
        for decision in decisions(franchise):
            ids = [decision.mal_id, *(m for m, _ in decision.entries)]
            if any(catalog.index_of(m) is None for m in ids):
                result.skipped_decisions += 1
                continue
            result.decisions_total += 1
            answer = index.eligible(_animelist(decision.entries), options, today=TODAY)
            got = bool(answer.mask[catalog.index_of(decision.mal_id)])  # type: ignore[index]
            if got == decision.eligible:
                result.decisions_right += 1
            else:
                result.failures.append(
                    f"{decision.franchise}: {decision.title} ({decision.mal_id}, list "
                    f"{[(m, s.value) for m, s in decision.entries]}): expected "
                    f"{decision.eligible}, got {got}"
                )
    return result
