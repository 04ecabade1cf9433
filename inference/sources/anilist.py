"""A public AniList list through GraphQL (docs/data-formats.md#anilist-graphql).

`normalize_anilist_entry` and `collection_rows` are the pure steps; `fetch_anilist_list` walks the
chunks over a `ServiceClient`, reads `errors` on every answer (they come with HTTP 200 too) and turns
them into typed failures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx

from inference.animelist import (
    LARGEST_REAL_LIST,
    MAX_LIST_ENTRIES,
    AnimeList,
    ListEntry,
    PartialDate,
    Status,
    unix_time,
)
from inference.errors import ListTooLarge, PrivateList, ServiceUnavailable, UserNotFound
from inference.http import ServiceClient, read_json

log = logging.getLogger(__name__)

ANILIST_URL = "https://graphql.anilist.co"
# The user's name is only ever the $name variable; scores forced to POINT_100, else they come in the
# user's own format.
LIST_QUERY = """
query ($name: String, $chunk: Int) {
  MediaListCollection(userName: $name, type: ANIME, chunk: $chunk, perChunk: 500,
                      forceSingleCompletedList: true) {
    hasNextChunk
    user { id name }
    lists {
      isCustomList
      entries {
        mediaId status score(format: POINT_100) progress repeat updatedAt
        startedAt { year month day }
        completedAt { year month day }
        media { idMal format episodes }
      }
    }
  }
}
""".strip()
# 500 per chunk: a guard against a chunk loop, far beyond any real list.
ANILIST_MAX_CHUNKS = 100

# REPEATING is mapped separately: watching, and a rewatch.
_STATUSES = {
    "CURRENT": Status.WATCHING,
    "PLANNING": Status.PLAN_TO_WATCH,
    "COMPLETED": Status.COMPLETED,
    "DROPPED": Status.DROPPED,
    "PAUSED": Status.ON_HOLD,
    "REPEATING": Status.WATCHING,
}


def anilist_request(username: str, chunk: int) -> httpx.Request:
    return httpx.Request(
        "POST",
        ANILIST_URL,
        json={"query": LIST_QUERY, "variables": {"name": username, "chunk": chunk}},
        headers={"Accept": "application/json"},
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def anilist_media_id(row: Mapping[str, Any]) -> int | None:
    """The AniList anime id of a list row (`mediaId`, or `media.id` in Page{mediaList} answers)."""
    media_id = _int(row.get("mediaId"))
    if media_id is None:
        media = row.get("media")
        media_id = _int(media.get("id")) if isinstance(media, dict) else None
    return media_id


def resolve_mal_id(row: Mapping[str, Any], anilist_to_mal: Mapping[int, int]) -> int | None:
    """The row's MyAnimeList id: AniList's own `idMal`, else the catalogue's mapping, else None."""
    media = row.get("media")
    id_mal = _int(media.get("idMal")) if isinstance(media, dict) else None
    if id_mal is not None and id_mal > 0:
        return id_mal
    media_id = anilist_media_id(row)
    return anilist_to_mal.get(media_id) if media_id is not None else None


def _date(value: Any) -> PartialDate | None:
    # Most FuzzyDates are all-null: leave before checking every part.
    if not isinstance(value, dict) or not value.get("year"):
        return None
    return PartialDate.from_parts(
        _int(value.get("year")), _int(value.get("month")), _int(value.get("day"))
    )


def normalize_anilist_entry(
    row: Mapping[str, Any], anilist_to_mal: Mapping[int, int]
) -> ListEntry | None:
    """One list row as a ListEntry; None when it has no MyAnimeList id or an unknown status."""
    mal_id = resolve_mal_id(row, anilist_to_mal)
    raw_status = row.get("status")
    status = _STATUSES.get(raw_status) if isinstance(raw_status, str) else None
    if mal_id is None or status is None:
        return None
    raw_score = row.get("score")
    score = (
        raw_score / 10
        if isinstance(raw_score, int | float) and not isinstance(raw_score, bool) and raw_score > 0
        else None
    )
    return ListEntry(
        mal_id=mal_id,
        status=status,
        rewatching=raw_status == "REPEATING",
        score=min(score, 10.0) if score is not None else None,
        episodes_watched=max(0, _int(row.get("progress")) or 0),
        updated_at=unix_time(_int(row.get("updatedAt"))),
        started=_date(row.get("startedAt")),
        finished=_date(row.get("completedAt")),
    )


def collection_rows(collection: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every row of a MediaListCollection chunk: status lists first, then custom lists.

    Custom lists repeat rows of the status lists, but an entry hidden from the status lists lives
    only there, so they are read too and the caller dedupes by media id.
    """
    lists = collection.get("lists")
    if not isinstance(lists, list):
        raise _unreadable()
    ordered = sorted(
        (group for group in lists if isinstance(group, dict)),
        key=lambda group: group.get("isCustomList") is True,
    )
    for group in ordered:
        entries = group.get("entries")
        if isinstance(entries, list):
            yield from (row for row in entries if isinstance(row, dict))


def _unreadable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "AniList sent a list we could not read; please try again later.", service="anilist"
    )


def _error_messages(payload: Mapping[str, Any]) -> list[tuple[str, int | None]]:
    errors = payload.get("errors")
    if not isinstance(errors, list):
        return []
    found = []
    for error in errors:
        if isinstance(error, dict):
            message = error.get("message")
            found.append((message if isinstance(message, str) else "", _int(error.get("status"))))
    return found


def collection_or_raise(payload: Any, http_status: int, username: str) -> Mapping[str, Any]:
    """The MediaListCollection of one answer, or the typed failure its `errors` describe."""
    if not isinstance(payload, dict):
        raise _unreadable()
    errors = _error_messages(payload)
    data = payload.get("data")
    collection = data.get("MediaListCollection") if isinstance(data, dict) else None
    messages = " | ".join(message for message, _ in errors).lower()
    if "private user" in messages:
        raise PrivateList(f"AniList user '{username}' has a private list.", service="anilist")
    if http_status == 404 or any(status == 404 for _, status in errors) or "not found" in messages:
        raise UserNotFound(f"AniList has no user named '{username}'.", service="anilist")
    if "temporarily disabled" in messages or http_status == 403:
        raise ServiceUnavailable(
            "AniList is temporarily down; please try again later.", service="anilist"
        )
    if errors or http_status != 200:
        log.error("anilist: HTTP %d, errors: %s", http_status, messages or "none")
        raise ServiceUnavailable(
            "AniList refused our request; please try again later.", service="anilist"
        )
    if not isinstance(collection, dict):
        raise _unreadable()
    return collection


def merge_rows(rows: dict[int, Mapping[str, Any]], collection: Mapping[str, Any]) -> None:
    """Add a chunk's rows to `rows` (by AniList media id), keeping the first of any repeat."""
    for row in collection_rows(collection):
        media_id = anilist_media_id(row)
        if media_id is not None and media_id not in rows:
            rows[media_id] = row


async def fetch_anilist_list(
    service: ServiceClient,
    username: str,
    anilist_to_mal: Mapping[int, int],
    *,
    max_entries: int = MAX_LIST_ENTRIES,
) -> AnimeList:
    """The whole list of an already validated `username`, every chunk read.

    A list of more than `max_entries` rows is ListTooLarge, raised as soon as the chunks read so
    far pass the cap: the rest is never fetched.
    """
    rows: dict[int, Mapping[str, Any]] = {}
    for chunk in range(1, ANILIST_MAX_CHUNKS + 1):
        response = await service.send(anilist_request(username, chunk))
        collection = collection_or_raise(
            read_json(response, "anilist"), response.status_code, username
        )
        merge_rows(rows, collection)
        if len(rows) > max_entries:
            raise ListTooLarge(
                f"AniList user '{username}' has more than {max_entries:,} entries on their list, "
                f"more than can be read here (the largest real lists have about "
                f"{LARGEST_REAL_LIST:,}).",
                service="anilist",
            )
        if collection.get("hasNextChunk") is not True:
            break
    else:
        log.error("anilist: hasNextChunk still true after %d chunks", ANILIST_MAX_CHUNKS)
        raise _unreadable()
    return build_anilist_list(username, rows.values(), anilist_to_mal)


def build_anilist_list(
    username: str, rows: Iterable[Mapping[str, Any]], anilist_to_mal: Mapping[int, int]
) -> AnimeList:
    """Normalize deduped rows; rows with no MyAnimeList id are dropped and counted."""
    result = AnimeList(source="anilist", username=username)
    seen: set[int] = set()
    for row in rows:
        entry = normalize_anilist_entry(row, anilist_to_mal)
        if entry is None:
            if resolve_mal_id(row, anilist_to_mal) is None:
                result.unmapped_entries += 1
            continue
        # Two AniList entries can share one MyAnimeList id (AniList splits some MAL entries).
        if entry.mal_id not in seen:
            seen.add(entry.mal_id)
            result.entries.append(entry)
    return result
