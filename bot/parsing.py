"""Command lines -> typed commands, shared by every front end.

The console and Telegram hand over the text the user typed; Discord builds the same tokens from its
typed slash-command options, so one grammar (and one set of error messages) serves all three.
Every failure is a `CommandError` whose message can be shown to the user as it is.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from bot.replies import parse_payload
from bot.settings import SOURCES, WEEKDAYS
from inference.catalog import MEDIA_TYPES

# Echoing a long paste back helps nobody.
_ECHO_LIMIT = 40
# Phones turn "--" into a dash; these are read as "--" at the start of a token.
_DASHES = ("\u2014", "\u2013", "\u2012", "\u2015")


class CommandError(Exception):
    """The command could not be understood; the message says why and what to type instead."""


def shown(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 1] + "…"


@dataclass(frozen=True, slots=True)
class RecommendCommand:
    username: str | None = None
    source: str | None = None
    count: int | None = None
    genres: tuple[str, ...] = ()
    exclude_genres: tuple[str, ...] = ()
    media_types: tuple[str, ...] = ()
    adventurous: float = 0.0
    adult: bool = False
    unaired: bool = False
    plan_to_watch: bool = True
    file: str | None = None  # a path; only the console may read local files


@dataclass(frozen=True, slots=True)
class LinkCommand:
    username: str
    source: str | None = None


@dataclass(frozen=True, slots=True)
class UnlinkCommand:
    pass


@dataclass(frozen=True, slots=True)
class SubscribeCommand:
    weekday: str | None = None
    hour: int | None = None
    tz: str | None = None


@dataclass(frozen=True, slots=True)
class UnsubscribeCommand:
    pass


@dataclass(frozen=True, slots=True)
class HelpCommand:
    pass


@dataclass(frozen=True, slots=True)
class MoreCommand:
    pass


@dataclass(frozen=True, slots=True)
class FeedbackCommand:
    """ "seen" or "not_interested", for a position in the last reply or a title id (buttons)."""

    kind: str
    position: int | None = None
    mal_id: int | None = None


Command = (
    RecommendCommand
    | LinkCommand
    | UnlinkCommand
    | SubscribeCommand
    | UnsubscribeCommand
    | HelpCommand
    | MoreCommand
    | FeedbackCommand
)

COMMAND_NAMES = (
    "recommend",
    "link",
    "unlink",
    "subscribe",
    "unsubscribe",
    "help",
    "more",
    "seen",
    "notinterested",
)
HELP_POINTER = "I did not understand that. Commands start with a slash; send /help to see them."


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"Could not read that command: {message}. Send /help for the options.")


# Built once: constructing an argparse parser costs more than parsing with it, and a burst of
# commands is parsed on the event loop.
@functools.cache
def _recommend_parser() -> _Parser:
    p = _Parser(prog="/recommend", add_help=False, allow_abbrev=False)
    p.add_argument("username", nargs="?")
    p.add_argument("--source", choices=SOURCES)
    p.add_argument("--count", type=int)
    p.add_argument("--genre", action="append", default=[])
    p.add_argument("--exclude-genre", action="append", default=[])
    p.add_argument("--type", action="append", default=[], dest="types")
    p.add_argument("--adventurous", type=float, default=0.0)
    p.add_argument("--adult", action="store_true")
    p.add_argument("--unaired", action="store_true")
    p.add_argument("--no-plan-to-watch", action="store_true")
    p.add_argument("--file")
    return p


@functools.cache
def _link_parser() -> _Parser:
    p = _Parser(prog="/link", add_help=False, allow_abbrev=False)
    p.add_argument("username")
    p.add_argument("--source", choices=SOURCES)
    return p


def tokenize(text: str) -> list[str]:
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise CommandError(
            "Could not read that command: a quote is not closed. Send /help for the options."
        ) from None
    return ["--" + t.lstrip("".join(_DASHES)) if t.startswith(_DASHES) else t for t in tokens]


def parse_command(line: str) -> Command:
    """One line as typed ("/recommend NAME --count 5"); CommandError for anything else."""
    text = line.strip()
    if not text.startswith("/"):
        raise CommandError(HELP_POINTER)
    head, _, rest = text.partition(" ")
    # Telegram groups address commands as /recommend@SomeBot.
    name = head[1:].split("@", 1)[0].lower()
    return parse_tokens(name, tokenize(rest))


def parse_tokens(name: str, tokens: Sequence[str]) -> Command:
    """A command by name with its argument tokens (Discord builds these from typed options)."""
    tokens = list(tokens)
    if name == "recommend":
        return _recommend(tokens)
    if name == "link":
        ns = _link_parser().parse_args(tokens)
        return LinkCommand(username=ns.username, source=ns.source)
    if name in ("seen", "notinterested", "not_interested"):
        kind = "seen" if name == "seen" else "not_interested"
        if len(tokens) != 1 or not re.fullmatch(r"[0-9]{1,3}", tokens[0]):
            raise CommandError(f"Usage: /{name} N, where N is a pick's number in the last reply.")
        return FeedbackCommand(kind=kind, position=int(tokens[0]))
    if name == "subscribe":
        return _subscribe(tokens)
    simple: dict[str, Command] = {
        "unlink": UnlinkCommand(),
        "unsubscribe": UnsubscribeCommand(),
        "help": HelpCommand(),
        "start": HelpCommand(),  # Telegram sends /start when a user opens the bot
        "more": MoreCommand(),
    }
    if name in simple:
        if tokens:
            raise CommandError(f"/{name} takes no options.")
        return simple[name]
    raise CommandError(f"Unknown command /{shown(name)}. Send /help to see the commands.")


def _recommend(tokens: list[str]) -> RecommendCommand:
    ns = _recommend_parser().parse_args(tokens)
    types = tuple(t.strip().lower() for t in ns.types)
    unknown = [t for t in types if t not in MEDIA_TYPES]
    if unknown:
        raise CommandError(
            f"Unknown type {shown(unknown[0])!r}; choose from {', '.join(MEDIA_TYPES)}."
        )
    if ns.file is not None and ns.username is not None:
        raise CommandError("Give either a username or --file, not both.")
    return RecommendCommand(
        username=ns.username,
        source=ns.source,
        count=ns.count,
        genres=tuple(ns.genre),
        exclude_genres=tuple(ns.exclude_genre),
        media_types=types,
        adventurous=ns.adventurous,
        adult=ns.adult,
        unaired=ns.unaired,
        plan_to_watch=not ns.no_plan_to_watch,
        file=ns.file,
    )


def parse_weekday(text: str) -> str:
    key = text.strip().lower()
    matches = [d for d in WEEKDAYS if len(key) >= 2 and d.startswith(key)]
    if len(matches) != 1:
        raise CommandError(f"{shown(text)!r} is not a day of the week (monday ... sunday).")
    return matches[0]


def parse_hour(text: str) -> int:
    match = re.fullmatch(r"([0-9]{1,2})(?::00)?", text.strip())
    if match is None or not 0 <= int(match.group(1)) <= 23:
        raise CommandError(f"{shown(text)!r} is not an hour; use 0 to 23 (e.g. 18 or 18:00).")
    return int(match.group(1))


def parse_timezone(text: str) -> str:
    name = text.strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise CommandError(
            f"{shown(name)!r} is not a time zone; use a name such as Europe/Berlin or UTC."
        ) from None
    return name


def _subscribe(tokens: list[str]) -> SubscribeCommand:
    if len(tokens) > 3:
        raise CommandError(
            "Usage: /subscribe [WEEKDAY] [HOUR] [TIME ZONE], e.g. /subscribe friday 18 Europe/Berlin"
        )
    parsers = (parse_weekday, parse_hour, parse_timezone)
    values = [parse(token) for parse, token in zip(parsers, tokens, strict=False)]
    values += [None] * (3 - len(values))
    weekday, hour, tz = values
    return SubscribeCommand(weekday=weekday, hour=hour, tz=tz)  # type: ignore[arg-type]


def button_payload_command(payload: str) -> Command | None:
    """The command a button stands for ("seen:5114", "more"...), or None if it is not ours."""
    parsed = parse_payload(payload)
    if parsed is None:
        return None
    action, mal_id = parsed
    if action == "more":
        return MoreCommand()
    if action == "subscribe":
        return SubscribeCommand()
    return FeedbackCommand(kind=action, mal_id=mal_id)
