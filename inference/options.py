"""What a user can ask of one recommendation request, checked before any work is done.

`RecommendOptions` is shared by the CLI, the bot commands and the engine. It validates what it can
on its own (counts, ranges, media types); genre names depend on the catalogue, so
`resolve_genres` checks them against the catalogue's genres and returns their canonical spelling.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from inference.catalog import MEDIA_TYPES, Catalog

MAX_COUNT = 25  # one chat message (Discord allows 25 embed fields)


@dataclass(frozen=True, slots=True)
class RecommendOptions:
    """One request's options.

    `media_types` None means every type. `include_genres` keeps items with at least one of them;
    `exclude_genres` drops items with any of them. Plan-to-watch entries stay eligible when
    `plan_to_watch` is on, but at most `plan_to_watch_max` of the picks come from there.
    `adventurous` runs from 0 (familiar: the model's utility as it is) to 1 (adventurous: very
    popular titles are pushed down, see `inference.rerank.adventure_utilities`).
    `exclude_mal_ids` are titles the user marked "seen" or "not interested".
    """

    count: int = 10
    media_types: frozenset[str] | None = None
    include_genres: tuple[str, ...] = ()
    exclude_genres: tuple[str, ...] = ()
    plan_to_watch: bool = True
    unaired: bool = False
    adult: bool = False
    adventurous: float = 0.0
    exclude_mal_ids: frozenset[int] = field(default_factory=frozenset)
    plan_to_watch_max: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise ValueError(f"count must be a whole number, not {self.count!r}")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be between 1 and {MAX_COUNT}, not {self.count}")
        if self.media_types is not None:
            types = frozenset(t.strip().lower() for t in self.media_types)
            unknown = sorted(types - set(MEDIA_TYPES))
            if unknown:
                raise ValueError(
                    f"unknown media type(s) {', '.join(map(repr, unknown))}; "
                    f"choose from {', '.join(MEDIA_TYPES)}"
                )
            if not types:
                raise ValueError("media types, when given, must name at least one type")
            object.__setattr__(self, "media_types", types)
        if not isinstance(self.adventurous, int | float) or not 0.0 <= self.adventurous <= 1.0:
            raise ValueError(
                f"adventurous must be between 0 (familiar) and 1 (adventurous), "
                f"not {self.adventurous!r}"
            )
        if self.plan_to_watch_max < 0:
            raise ValueError("plan_to_watch_max cannot be negative")
        overlap = {g.lower() for g in self.include_genres} & {
            g.lower() for g in self.exclude_genres
        }
        if overlap:
            raise ValueError(f"genre(s) both included and excluded: {', '.join(sorted(overlap))}")
        object.__setattr__(self, "include_genres", tuple(self.include_genres))
        object.__setattr__(self, "exclude_genres", tuple(self.exclude_genres))
        object.__setattr__(self, "exclude_mal_ids", frozenset(self.exclude_mal_ids))

    def resolve_genres(
        self, catalog: Catalog, known: dict[str, str] | None = None
    ) -> RecommendOptions:
        """These options with genre names spelled as the catalogue spells them.

        Matching ignores case; a name the catalogue does not know raises ValueError with the
        closest known names, so "/recommend --genre scifi" gets a useful answer. `known` is
        `catalog_genres(catalog)` when the caller keeps it (it scans the whole catalogue).
        """
        if not self.include_genres and not self.exclude_genres:
            return self
        known = catalog_genres(catalog) if known is None else known
        return replace(
            self,
            include_genres=_canonical(self.include_genres, known),
            exclude_genres=_canonical(self.exclude_genres, known),
        )


def catalog_genres(catalog: Catalog) -> dict[str, str]:
    """lower-case genre name -> the catalogue's spelling."""
    return {g.lower(): g for item in catalog for g in item.genres}


def _canonical(names: Iterable[str], known: dict[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        key = name.strip().lower()
        if key in known:
            out.append(known[key])
            continue
        close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
        hint = (
            f"did you mean {', '.join(known[c] for c in close)}?"
            if close
            else f"known genres: {', '.join(sorted(known.values()))}"
        )
        raise ValueError(f"unknown genre {name!r}; {hint}")
    return tuple(out)
