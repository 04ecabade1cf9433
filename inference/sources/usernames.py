"""Username checks that run before any request is built (docs/data-formats.md#usernames).

A name that passes can only contain ASCII letters, digits and (MyAnimeList) `_`/`-`, so nothing a
user types can change a URL's shape or a query; requests still carry it only as a bound parameter.
"""

from __future__ import annotations

import re

from inference.errors import InvalidUsername

_MAL_NAME = re.compile(r"[A-Za-z0-9_-]{2,16}")
_ANILIST_NAME = re.compile(r"[A-Za-z0-9]{2,20}")
# Echoing a long paste back into a chat reply helps nobody.
_ECHO_LIMIT = 32


def _shown(name: str) -> str:
    return name if len(name) <= _ECHO_LIMIT else name[: _ECHO_LIMIT - 1] + "…"


def validate_mal_username(name: str) -> str:
    """The name, trimmed, if it can be a MyAnimeList username; else InvalidUsername."""
    trimmed = name.strip()
    if not _MAL_NAME.fullmatch(trimmed):
        raise InvalidUsername(
            f"'{_shown(trimmed)}' is not a valid MyAnimeList username "
            "(2 to 16 letters, digits, _ or -).",
            service="mal",
        )
    return trimmed


def validate_anilist_username(name: str) -> str:
    """The name, trimmed, if it can be an AniList username; else InvalidUsername."""
    trimmed = name.strip()
    if not _ANILIST_NAME.fullmatch(trimmed):
        raise InvalidUsername(
            f"'{_shown(trimmed)}' is not a valid AniList username (2 to 20 letters and digits).",
            service="anilist",
        )
    return trimmed
