"""`python -m training catalog --live`: the catalogue from AniList's GraphQL API (docs/data-formats.md#catalogue).

Pages of 50 media are fetched until `hasNextPage` is false (AniList caps `pageInfo.total` and
`lastPage`, so they cannot be trusted). ~20k anime is ~400 requests, ~15 minutes at AniList's
real pace, so every fetched page is appended to a state file at once; a build that stops
(network, Ctrl-C, a crash) continues from the page after the last one saved.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from inference.animelist import PartialDate
from inference.catalog import FRANCHISE_RELATIONS, Catalog, CatalogItem, franchise_ids
from inference.config import SourceSettings, load_toml, source_settings
from inference.errors import CatalogError, ListSourceError
from inference.http import RateLimiter, ServiceClient, make_http_client, read_json

ANILIST_URL = "https://graphql.anilist.co"
PER_PAGE = 50  # AniList's maximum
STATE_VERSION = 1

# `sort: ID` keeps page N the same set of media across a resume hours later: new anime get higher
# ids and land on the last pages instead of shifting everything. Relation nodes carry `type` so
# manga relations (whose idMal is a MyAnimeList *manga* id) are not mistaken for anime.
PAGE_QUERY = """
query ($page: Int, $perPage: Int) {
  Page(page: $page, perPage: $perPage) {
    pageInfo { hasNextPage }
    media(type: ANIME, sort: ID) {
      id idMal title { romaji english } format episodes duration season seasonYear status
      startDate { year month day } endDate { year month day }
      genres tags { name rank isMediaSpoiler } coverImage { medium }
      popularity averageScore isAdult
      relations { edges { relationType node { id idMal type } } }
    }
  }
}
"""

FORMATS = {
    "TV": "tv",
    "TV_SHORT": "tv",
    "MOVIE": "movie",
    "SPECIAL": "special",
    "OVA": "ova",
    "ONA": "ona",
    "MUSIC": "music",
}
STATUSES = {
    "FINISHED": "finished",
    "RELEASING": "airing",
    "NOT_YET_RELEASED": "not_yet_aired",
    "CANCELLED": "cancelled",
    "HIATUS": "hiatus",
}
# AniList's ALTERNATIVE is MyAnimeList's "alternative version"; every other type is kept, lower-cased
# ("prequel", "sequel", "parent", "side_story", "spin_off", "summary", "compilation", "contains",
# "character", "adaptation", "source", "other"): `inference.franchise` reads them.
RELATION_NAMES = {"ALTERNATIVE": "alternative_version"}
# Relations that make one franchise whatever else is related: a story chain, other versions,
# recaps. Side stories and spin-offs join their parent's franchise too, unless they hang off two
# franchises (a crossover such as a parody of several shows joins none of them).
STRONG_RELATIONS = (FRANCHISE_RELATIONS - {"parent", "side_story"}) | {"contains"}
# Held by a parent, pointing at a child that AniList answers with PARENT.
CHILD_RELATIONS = frozenset({"side_story", "spin_off"})
# AniList answers OTHER (and older CHARACTER edges) with PARENT as well: no franchise link.
NOT_CHILD_RELATIONS = frozenset({"other", "character"})
# Relation types followed through an AniList-only medium (S1 -> an unmapped special -> S2).
CHAIN_RELATIONS = frozenset({"prequel", "sequel"})
# Tags voted this relevant (0–100) or more are kept; spoiler tags never are (they go into chat).
MIN_TAG_RANK = 60


# ----- resumable page store ---------------------------------------------------------------


class PageStore:
    """Fetched pages, one JSON line each, appended as they arrive.

    A line cut short by a crash is ignored on reading, so the worst case is fetching that one
    page again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        pages: list[dict[str, Any]] = []
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    page = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line: everything before it is good
                if page.get("version") != STATE_VERSION or page.get("page") != len(pages) + 1:
                    raise CatalogError(
                        f"{self.path} does not continue this build (delete it to start over)"
                    )
                pages.append(page)
        return pages

    def append(self, page: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(page, ensure_ascii=False, separators=(",", ":")) + "\n")
            f.flush()


def _truncate_torn_tail(path: Path, good_pages: int) -> None:
    """Drop anything after the last complete page so new pages append cleanly."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) > good_pages:
        path.write_text("".join(lines[:good_pages]), encoding="utf-8")


# ----- fetching -----------------------------------------------------------------------------


async def fetch_pages(
    client: ServiceClient,
    store: PageStore,
    *,
    progress: bool = True,
    max_pages: int | None = None,
) -> list[dict[str, Any]]:
    """Every page of anime media, resuming after the pages `store` already holds."""
    pages = store.read()
    _truncate_torn_tail(store.path, len(pages))
    bar = tqdm(
        desc="AniList pages", unit="page", initial=len(pages), disable=not progress, leave=False
    )
    try:
        while not pages or pages[-1]["has_next"]:
            if max_pages is not None and len(pages) >= max_pages:
                break
            number = len(pages) + 1
            media, has_next = await _fetch_page(client, number)
            page = {"version": STATE_VERSION, "page": number, "has_next": has_next, "media": media}
            store.append(page)
            pages.append(page)
            bar.update(1)
    finally:
        bar.close()
    return pages


async def _fetch_page(client: ServiceClient, number: int) -> tuple[list[dict[str, Any]], bool]:
    request = client.http.build_request(
        "POST",
        ANILIST_URL,
        json={"query": PAGE_QUERY, "variables": {"page": number, "perPage": PER_PAGE}},
        headers={"Accept": "application/json"},
    )
    # AniList answers an outage with 403 "temporarily disabled": worth the same retries as a 429.
    response = await client.send(request, retry_on=lambda r: r.status_code == 403)
    body = read_json(response, "anilist")
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors or response.status_code != 200:
        message = "; ".join(str(e.get("message", e)) for e in errors or [] if isinstance(e, dict))
        raise CatalogError(
            f"AniList refused page {number} (HTTP {response.status_code}): {message or 'no detail'}"
        )
    try:
        page = body["data"]["Page"]
        media = page["media"]
        has_next = bool(page["pageInfo"]["hasNextPage"])
    except (KeyError, TypeError) as exc:
        raise CatalogError(f"AniList's answer for page {number} has no Page.media") from exc
    if not isinstance(media, list):
        raise CatalogError(f"AniList's answer for page {number} has no media list")
    return media, has_next


# ----- media -> catalogue -------------------------------------------------------------------


def _date(raw: Any) -> PartialDate | None:
    if not isinstance(raw, dict):
        return None
    return PartialDate.from_parts(raw.get("year"), raw.get("month"), raw.get("day"))


def catalog_from_media(media: list[dict[str, Any]], info: dict[str, Any]) -> Catalog:
    """Items keyed by MAL id (AniList-only anime are left out and counted), in MAL id order."""
    by_anilist = {m["id"]: m for m in media if isinstance(m, dict) and isinstance(m.get("id"), int)}
    # Franchises over AniList ids, every medium included: an AniList-only special can still be
    # the link between two seasons that MyAnimeList knows.
    graph: dict[int, list[tuple[str, int]]] = {}
    for anilist_id, m in by_anilist.items():
        graph[anilist_id] = [
            (_relation_name(edge.get("relationType")), edge["node"]["id"])
            for edge in (m.get("relations") or {}).get("edges") or []
            if (edge.get("node") or {}).get("type") == "ANIME"
            and isinstance(edge["node"].get("id"), int)
        ]
    components = franchise_components(graph)

    kept: dict[int, dict[str, Any]] = {}
    duplicates = 0
    for m in by_anilist.values():
        mal_id = m.get("idMal")
        if not isinstance(mal_id, int) or mal_id <= 0:
            continue
        if mal_id in kept:
            duplicates += 1
            continue
        kept[mal_id] = m
    # A franchise is named by the smallest MAL id in its component.
    smallest: dict[int, int] = defaultdict(lambda: 1 << 62)
    for mal_id, m in kept.items():
        root = components[m["id"]]
        smallest[root] = min(smallest[root], mal_id)

    items = [
        _item(mal_id, m, smallest[components[m["id"]]], by_anilist)
        for mal_id, m in sorted(kept.items())
    ]
    info = dict(info)
    info.update(
        {
            "franchise_method": "relations",
            "franchises": len({it.franchise_id for it in items}),
            "anilist_media": len(by_anilist),
            "left_out_without_mal_id": len(by_anilist) - len(kept) - duplicates,
            "left_out_duplicate_mal_id": duplicates,
            "missing_fields": [],
        }
    )
    return Catalog(items, info)


def franchise_components(graph: dict[int, list[tuple[str, int]]]) -> dict[int, int]:
    """AniList id -> franchise id: components over `STRONG_RELATIONS`, then each side story or
    spin-off joined to its parent's component when all its parents are in one (see
    `STRONG_RELATIONS`). Ids outside `graph` still connect, as in `franchise_ids`."""
    strong = franchise_ids(graph, STRONG_RELATIONS)
    parents: dict[int, set[int]] = defaultdict(set)
    for a, edges in graph.items():
        for kind, b in edges:
            if kind in CHILD_RELATIONS:
                parents[b].add(a)
            elif kind == "parent":
                back = {k for k, target in graph.get(b, ()) if target == a}
                if not back & NOT_CHILD_RELATIONS:
                    parents[a].add(b)
    joined: dict[int, list[tuple[str, int]]] = {
        a: [(k, b) for k, b in edges if k in STRONG_RELATIONS] for a, edges in graph.items()
    }
    for child, ps in parents.items():
        own = strong.get(child, child)
        others = {strong.get(p, p) for p in ps} - {own}
        if len(others) <= 1 and child in joined:
            joined[child] += [("parent", p) for p in ps]
    return franchise_ids(joined, STRONG_RELATIONS | {"parent"})


def _relation_name(kind: Any) -> str:
    kind = str(kind or "OTHER")
    return RELATION_NAMES.get(kind, kind.lower())


def _item(
    mal_id: int, m: dict[str, Any], franchise: int, by_anilist: dict[int, dict[str, Any]]
) -> CatalogItem:
    title = m.get("title") or {}
    relations: list[tuple[str, int]] = []
    for edge in (m.get("relations") or {}).get("edges") or []:
        node = edge.get("node") or {}
        if node.get("type") != "ANIME":
            continue
        kind = _relation_name(edge.get("relationType"))
        target = node.get("idMal")
        if not isinstance(target, int):
            # The relation's own node may lack idMal while the full medium has it.
            target = (by_anilist.get(node.get("id", -1)) or {}).get("idMal")
        if isinstance(target, int):
            relations.append((kind, target))
        elif kind in CHAIN_RELATIONS:
            relations += [(kind, t) for t in _through_unmapped(node.get("id"), kind, by_anilist)]
    tags = sorted(
        (t for t in m.get("tags") or [] if not t.get("isMediaSpoiler")),
        key=lambda t: -(t.get("rank") or 0),
    )
    score = m.get("averageScore")
    start = _date(m.get("startDate"))
    return CatalogItem(
        mal_id=mal_id,
        title=title.get("romaji") or title.get("english") or f"AniList {m['id']}",
        anilist_id=m["id"],
        title_english=title.get("english"),
        media_type=FORMATS.get(m.get("format") or ""),
        episodes=m.get("episodes"),
        episode_minutes=m.get("duration"),
        start_date=start,
        end_date=_date(m.get("endDate")),
        season=(m.get("season") or "").lower() or None,
        season_year=m.get("seasonYear") or (start.year if start else None),
        airing_status=STATUSES.get(m.get("status") or ""),
        genres=tuple(m.get("genres") or ()),
        tags=tuple(t["name"] for t in tags if (t.get("rank") or 0) >= MIN_TAG_RANK),
        picture_url=(m.get("coverImage") or {}).get("medium"),
        popularity=m.get("popularity"),
        mean_score=score / 10 if isinstance(score, int | float) else None,
        adult=bool(m.get("isAdult")),
        relations=tuple(relations),
        franchise_id=franchise,
    )


def _through_unmapped(
    anilist_id: Any, kind: str, by_anilist: dict[int, dict[str, Any]]
) -> list[int]:
    """The MAL ids reached from an AniList-only medium by following `kind` edges (its sequel's
    sequel...) until media MyAnimeList knows: the chain S1 -> unmapped special -> S2 keeps S1 as
    S2's prequel."""
    found: list[int] = []
    stack, seen = [anilist_id], {anilist_id}
    while stack:
        m = by_anilist.get(stack.pop())
        for edge in ((m or {}).get("relations") or {}).get("edges") or []:
            node = edge.get("node") or {}
            if node.get("type") != "ANIME" or _relation_name(edge.get("relationType")) != kind:
                continue
            if node.get("id") in seen:
                continue
            seen.add(node.get("id"))
            target = node.get("idMal") or (by_anilist.get(node.get("id", -1)) or {}).get("idMal")
            if isinstance(target, int):
                found.append(target)
            else:
                stack.append(node.get("id"))
    return found


# ----- entry points -------------------------------------------------------------------------


def default_state_path(out: Path) -> Path:
    return out.with_name(out.name.split(".")[0] + ".live-pages.jsonl")


async def build_live(
    http: httpx.AsyncClient,
    settings: SourceSettings,
    state_path: Path,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    progress: bool = True,
    max_pages: int | None = None,
) -> Catalog:
    """Fetch (or finish fetching) every page, then build the catalogue from them."""
    limiter = RateLimiter(settings.anilist.requests_per_minute, sleep=sleep)
    client = ServiceClient("anilist", http, settings.anilist, limiter=limiter, sleep=sleep)
    pages = await fetch_pages(client, PageStore(state_path), progress=progress, max_pages=max_pages)
    media = [m for page in pages for m in page["media"]]
    info = {
        "source": "live: AniList GraphQL",
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "pages": len(pages),
        "complete": not pages or not pages[-1]["has_next"],
    }
    return catalog_from_media(media, info)


def run_live(out: Path, *, state_path: Path | None = None) -> Catalog:
    """Build from AniList with the project's settings; failures say how to resume."""
    settings = source_settings(load_toml())
    state = state_path or default_state_path(out)

    async def go() -> Catalog:
        async with make_http_client(settings) as http:
            return await build_live(http, settings, state)

    def kept() -> str:
        return f"the pages fetched so far are kept in {state}: run the same command again to resume"

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        raise CatalogError(f"interrupted; {kept()}") from None
    except (ListSourceError, CatalogError) as exc:
        raise CatalogError(f"{exc}; {kept()}") from exc
