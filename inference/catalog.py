"""The anime catalogue: one row of metadata per vocabulary item (docs/data-formats.md#catalogue).

`Catalog.items[i]` is the item with vocabulary index `i`; the model's outputs are indexed the same
way, so the order of `items` is part of a model bundle and never changes once a model is trained.

File format (`save_catalog` / `load_catalog`), JSON, optionally gzipped (`.json.gz`):

    {"format": "animerec-catalog", "version": 1,
     "info": {...free-form facts: source, built_at, missing fields, franchise method...},
     "items": [{"mal_id": 1, "title": "Cowboy Bebop", "media_type": "tv", ...}, ...]}

Each item is an object whose keys are `CatalogItem` field names; a field left at its default
(None, empty, False) is omitted. Dates are "YYYY", "YYYY-MM" or "YYYY-MM-DD"; `relations` is a list
of [relation type, MAL id] pairs. A reader refuses another `format` or `version` rather than guess.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from inference.animelist import PartialDate
from inference.errors import CatalogError

FORMAT_NAME = "animerec-catalog"
FORMAT_VERSION = 1

MEDIA_TYPES = ("tv", "movie", "ova", "ona", "special", "music", "tv_special")
AIRING_STATUSES = ("finished", "airing", "not_yet_aired", "cancelled", "hiatus")
SEASONS = ("winter", "spring", "summer", "fall")

# Relation types that keep two entries in one franchise (docs/data-formats.md#catalogue). "alternative_version" is
# MyAnimeList's name and "alternative" AniList's for the same thing; AniList's "compilation" is what
# MyAnimeList calls a summary (a recap film cut from a series). Adaptations and "other" are left
# out: they join unrelated shows. Spin-offs are left out here too; the live builder
# (`training.catalog_live.franchise_components`) joins a spin-off or side story to its parent's
# franchise only when it hangs off one franchise, so a crossover merges nothing.
FRANCHISE_RELATIONS = frozenset(
    {
        "sequel",
        "prequel",
        "side_story",
        "parent",
        "summary",
        "compilation",
        "alternative",
        "alternative_version",
        "full_story",
    }
)


@dataclass(frozen=True, slots=True)
class CatalogItem:
    mal_id: int
    title: str
    anilist_id: int | None = None
    title_english: str | None = None
    media_type: str | None = None  # one of MEDIA_TYPES
    episodes: int | None = None
    episode_minutes: int | None = None
    start_date: PartialDate | None = None
    season: str | None = None  # one of SEASONS
    season_year: int | None = None
    airing_status: str | None = None  # one of AIRING_STATUSES
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    picture_url: str | None = None
    popularity: int | None = None  # members / list count
    mean_score: float | None = None  # 0–10
    adult: bool = False
    relations: tuple[tuple[str, int], ...] = ()  # (relation type such as "sequel", MAL id)
    franchise_id: int | None = None
    end_date: PartialDate | None = None


class Catalog:
    """The items in vocabulary order, with lookups by MAL and AniList id."""

    def __init__(self, items: Iterable[CatalogItem], info: Mapping[str, Any] | None = None) -> None:
        self.items: list[CatalogItem] = list(items)
        self.info: dict[str, Any] = dict(info or {})
        self._index: dict[int, int] = {}
        for i, item in enumerate(self.items):
            if item.mal_id in self._index:
                raise CatalogError(f"MAL id {item.mal_id} appears twice in the catalogue")
            self._index[item.mal_id] = i
        self._anilist: dict[int, int] = {
            item.anilist_id: item.mal_id for item in self.items if item.anilist_id is not None
        }

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[CatalogItem]:
        return iter(self.items)

    def __getitem__(self, index: int) -> CatalogItem:
        return self.items[index]

    def by_mal_id(self, mal_id: int) -> CatalogItem | None:
        index = self._index.get(mal_id)
        return None if index is None else self.items[index]

    def index_of(self, mal_id: int) -> int | None:
        return self._index.get(mal_id)

    def mal_id_for_anilist(self, anilist_id: int) -> int | None:
        return self._anilist.get(anilist_id)

    @property
    def anilist_to_mal(self) -> dict[int, int]:
        return dict(self._anilist)

    def franchise_members(self, franchise_id: int) -> list[CatalogItem]:
        return [item for item in self.items if item.franchise_id == franchise_id]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = self.parent.setdefault(x, x)
        while root != self.parent[root]:
            root = self.parent[root]
        while x != root:  # path compression keeps later finds flat
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def franchise_ids(
    relations: Mapping[int, Iterable[tuple[str, int]]],
    kinds: frozenset[str] = FRANCHISE_RELATIONS,
) -> dict[int, int]:
    """MAL id -> franchise id: connected components over the franchise relation types.

    `relations` maps each catalogue MAL id to its (relation type, MAL id) pairs. Targets outside
    the catalogue still connect (two seasons joined through a special the catalogue lacks stay one
    franchise). A franchise's id is the smallest catalogue MAL id in it, so it is stable across
    rebuilds as long as that entry stays.
    """
    uf = _UnionFind()
    for mal_id, pairs in relations.items():
        uf.find(mal_id)
        for kind, other in pairs:
            if kind in kinds:
                uf.union(mal_id, other)
    smallest: dict[int, int] = {}
    for mal_id in relations:
        root = uf.find(mal_id)
        smallest[root] = min(mal_id, smallest.get(root, mal_id))
    return {mal_id: smallest[uf.find(mal_id)] for mal_id in relations}


# ----- file format ------------------------------------------------------------------------------

_FIELD_NAMES = tuple(f.name for f in fields(CatalogItem))
_DEFAULTS = {f.name: f.default for f in fields(CatalogItem)}


def item_to_json(item: CatalogItem) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELD_NAMES:
        value = getattr(item, name)
        if name not in ("mal_id", "title") and value == _DEFAULTS[name]:
            continue
        if isinstance(value, PartialDate):
            value = str(value)
        elif name == "relations":
            value = [[kind, target] for kind, target in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def _expect(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise CatalogError(f"{where}: {what}")


def _opt_int(value: Any, where: str, name: str) -> int | None:
    if value is None:
        return None
    _expect(
        isinstance(value, int) and not isinstance(value, bool), where, f"{name} must be an integer"
    )
    return int(value)


def _opt_str(
    value: Any, where: str, name: str, allowed: tuple[str, ...] | None = None
) -> str | None:
    if value is None:
        return None
    _expect(isinstance(value, str), where, f"{name} must be a string")
    if allowed is not None:
        _expect(value in allowed, where, f"{name} {value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _opt_date(value: Any, where: str, name: str) -> PartialDate | None:
    if value is None:
        return None
    _expect(isinstance(value, str), where, f"{name} must be a date string")
    date = PartialDate.parse(value)
    _expect(date is not None, where, f"{name} {value!r} is not a date")
    return date


def _str_tuple(value: Any, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    _expect(
        isinstance(value, list) and all(isinstance(v, str) for v in value),
        where,
        f"{name} must be a list of strings",
    )
    return tuple(value)


def item_from_json(raw: Any, where: str) -> CatalogItem:
    _expect(isinstance(raw, dict), where, "an item must be an object")
    unknown = sorted(set(raw) - set(_FIELD_NAMES))
    _expect(not unknown, where, f"unknown field(s) {', '.join(unknown)}")
    mal_id = _opt_int(raw.get("mal_id"), where, "mal_id")
    _expect(mal_id is not None and mal_id > 0, where, "mal_id must be a positive integer")
    title = raw.get("title")
    _expect(isinstance(title, str) and bool(title), where, "title must be a non-empty string")
    relations_raw = raw.get("relations") or []
    _expect(
        isinstance(relations_raw, list)
        and all(
            isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and isinstance(r[1], int)
            for r in relations_raw
        ),
        where,
        "relations must be a list of [type, MAL id] pairs",
    )
    mean_score = raw.get("mean_score")
    _expect(
        mean_score is None
        or (isinstance(mean_score, int | float) and not isinstance(mean_score, bool)),
        where,
        "mean_score must be a number",
    )
    adult = raw.get("adult", False)
    _expect(isinstance(adult, bool), where, "adult must be true or false")
    assert mal_id is not None  # for mypy: checked just above
    return CatalogItem(
        mal_id=mal_id,
        title=str(title),
        anilist_id=_opt_int(raw.get("anilist_id"), where, "anilist_id"),
        title_english=_opt_str(raw.get("title_english"), where, "title_english"),
        media_type=_opt_str(raw.get("media_type"), where, "media_type", MEDIA_TYPES),
        episodes=_opt_int(raw.get("episodes"), where, "episodes"),
        episode_minutes=_opt_int(raw.get("episode_minutes"), where, "episode_minutes"),
        start_date=_opt_date(raw.get("start_date"), where, "start_date"),
        season=_opt_str(raw.get("season"), where, "season", SEASONS),
        season_year=_opt_int(raw.get("season_year"), where, "season_year"),
        airing_status=_opt_str(raw.get("airing_status"), where, "airing_status", AIRING_STATUSES),
        genres=_str_tuple(raw.get("genres"), where, "genres"),
        tags=_str_tuple(raw.get("tags"), where, "tags"),
        picture_url=_opt_str(raw.get("picture_url"), where, "picture_url"),
        popularity=_opt_int(raw.get("popularity"), where, "popularity"),
        mean_score=None if mean_score is None else float(mean_score),
        adult=adult,
        relations=tuple((kind, target) for kind, target in relations_raw),
        franchise_id=_opt_int(raw.get("franchise_id"), where, "franchise_id"),
        end_date=_opt_date(raw.get("end_date"), where, "end_date"),
    )


def catalog_to_json(catalog: Catalog) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "info": catalog.info,
        "items": [item_to_json(item) for item in catalog.items],
    }


def catalog_from_json(document: Any, where: str = "catalogue") -> Catalog:
    _expect(isinstance(document, dict), where, "not a catalogue (the top level is not an object)")
    _expect(
        document.get("format") == FORMAT_NAME,
        where,
        f"not a catalogue file (format is {document.get('format')!r}, expected {FORMAT_NAME!r})",
    )
    version = document.get("version")
    _expect(
        version == FORMAT_VERSION,
        where,
        f"catalogue format version {version!r} is not supported (this code reads version "
        f"{FORMAT_VERSION}); rebuild it with `python -m training catalog`",
    )
    info = document.get("info", {})
    _expect(isinstance(info, dict), where, "info must be an object")
    items_raw = document.get("items")
    _expect(isinstance(items_raw, list), where, "items must be a list")
    items = [item_from_json(raw, f"{where}, item {i}") for i, raw in enumerate(items_raw)]
    try:
        return Catalog(items, info)
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _is_gzip_path(path: Path) -> bool:
    return path.suffix == ".gz"


def save_catalog(catalog: Catalog, path: Path | str) -> None:
    """Write the catalogue as JSON (gzipped when the name ends in .gz), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(catalog_to_json(catalog), ensure_ascii=False, separators=(",", ":"))
    raw = data.encode("utf-8")
    if _is_gzip_path(path):
        # mtime=0 so the same catalogue always gives the same bytes (bundle hashes stay stable).
        raw = gzip.compress(raw, compresslevel=9, mtime=0)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(raw)
    tmp.replace(path)


def load_catalog(path: Path | str) -> Catalog:
    """Read a catalogue written by `save_catalog`; CatalogError says what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CatalogError(
            f"catalogue not found: {path} (build one with `python -m training catalog`)"
        ) from None
    except OSError as exc:
        raise CatalogError(f"cannot read catalogue {path}: {exc.strerror or exc}") from None
    if raw.startswith(b"\x1f\x8b"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CatalogError(f"{path}: corrupt gzip data ({exc})") from None
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: not valid JSON ({exc})") from None
    return catalog_from_json(document, str(path))
