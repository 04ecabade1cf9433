"""Command lines -> typed commands, shared by every front end.

The console and Telegram hand over the text the user typed; Discord builds the same tokens from its
typed slash-command options, so one grammar (and one set of error messages) serves all three.
Every failure is a `CommandError` whose message can be shown to the user as it is.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.replies import parse_payload
from bot.settings import SOURCES, WEEKDAYS
from inference.catalog import MEDIA_TYPES

# Echoing a long paste back helps nobody.
_ECHO_LIMIT = 64
# A genre or type name is a word or two; a longer value is a paste, refused before any lookup.
_VALUE_LIMIT = 64
# The longest catalogue titles are about 150 characters; anything longer is a paste.
_TITLE_LIMIT = 200
# What a command line may hold when no setting says otherwise ([bot] max_line_chars).
DEFAULT_MAX_LINE_CHARS = 4000
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
class GroupMember:
    """One member of a group request: a username (with its site when written `name@mal`), or a
    chat mention (`<@123>` on Discord) of someone who linked their list."""

    name: str
    source: str | None = None
    mention: str | None = None  # the platform user id of a mentioned user

    @property
    def label(self) -> str:
        return self.name if self.mention is None else f"<@{self.mention}>"


@dataclass(frozen=True, slots=True)
class GroupCommand:
    """`/recommend alice bob carol`: picks for everyone; the options are the usual ones."""

    members: tuple[GroupMember, ...]
    request: RecommendCommand


@dataclass(frozen=True, slots=True)
class SimilarCommand:
    """`/similar TITLE`: titles like one title, minus the asking user's list when known."""

    title: str
    username: str | None = None
    source: str | None = None
    count: int | None = None
    franchise: bool = False
    adult: bool = False
    unaired: bool = False


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
    | GroupCommand
    | SimilarCommand
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
    "similar",
)
HELP_POINTER = "I did not understand that. Commands start with a slash; send /help to see them."
STALE_BUTTON = "That button is not one I can answer any more; send /recommend for fresh picks."


@dataclass(frozen=True, slots=True)
class _Option:
    """One `--name` of a command: a flag, a single value, or a value that may repeat."""

    dest: str
    kind: str = "value"  # "flag" | "value" | "list"
    convert: Callable[[str], Any] = str
    what: str = "a value"  # said when the value does not convert
    choices: tuple[str, ...] = ()


_RECOMMEND_OPTIONS: dict[str, _Option] = {
    "--source": _Option("source", choices=SOURCES),
    "--count": _Option("count", convert=lambda raw: int(_short(raw)), what="a whole number"),
    "--genre": _Option("genres", kind="list"),
    "--exclude-genre": _Option("exclude_genres", kind="list"),
    "--type": _Option("types", kind="list"),
    "--adventurous": _Option(
        "adventurous", convert=lambda raw: float(_short(raw)), what="a number from 0 to 1"
    ),
    "--adult": _Option("adult", kind="flag"),
    "--unaired": _Option("unaired", kind="flag"),
    "--no-plan-to-watch": _Option("no_plan_to_watch", kind="flag"),
    "--file": _Option("file"),
}


def _short(raw: str) -> str:
    """A number worth converting is short; a 3,000-digit one is refused, not echoed back whole."""
    if len(raw) > 32:
        raise ValueError(raw)
    return raw


_LINK_OPTIONS: dict[str, _Option] = {"--source": _Option("source", choices=SOURCES)}

_SIMILAR_OPTIONS: dict[str, _Option] = {
    "--user": _Option("username"),
    "--source": _Option("source", choices=SOURCES),
    "--count": _RECOMMEND_OPTIONS["--count"],
    "--franchise": _Option("franchise", kind="flag"),
    "--adult": _Option("adult", kind="flag"),
    "--unaired": _Option("unaired", kind="flag"),
}
SIMILAR_USAGE = (
    "Usage: /similar TITLE [--count N] [--franchise] [--user NAME] [--source mal|anilist]"
)
# Group requests (docs/architecture.md#serving): at most this many names, each optionally `name@mal`/`name@anilist`.
MAX_GROUP = 8
_MENTION = re.compile(r"<@!?([0-9]{1,20})>")
_MEMBER_SOURCE = re.compile(r"(?i)^(.+)@(mal|anilist)$")


def _unreadable(what: str) -> CommandError:
    return CommandError(f"Could not read that command: {what}. Send /help for the options.")


def _read_options(
    command: str, tokens: Sequence[str], options: dict[str, _Option]
) -> tuple[list[str], dict[str, Any]]:
    """(positional words, values by option) in one pass over the tokens.

    argparse does the same job in time quadratic in the number of options (and copies an
    "append" list on every repeat), which a pasted line turned into seconds of event-loop time.
    """
    positionals: list[str] = []
    values: dict[str, Any] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("--") or token == "--":
            positionals.append(token)
            continue
        name, has_inline, inline = token.partition("=")
        option = options.get(name)
        if option is None:
            raise _unreadable(f"/{command} has no option {shown(name)}")
        if option.kind == "flag":
            if has_inline:
                raise _unreadable(f"{name} takes no value")
            values[option.dest] = True
            continue
        if has_inline:
            raw = inline
        elif index < len(tokens) and not (tokens[index].startswith("--") and tokens[index] != "--"):
            raw = tokens[index]
            index += 1
        else:
            raise _unreadable(f"{name} needs a value")
        if option.choices and raw not in option.choices:
            raise _unreadable(
                f"{name} must be one of {', '.join(option.choices)}, not {shown(raw)!r}"
            )
        try:
            value = option.convert(raw)
        except ValueError:
            raise _unreadable(f"{name} must be {option.what}, not {shown(raw)!r}") from None
        if option.kind == "list":
            values.setdefault(option.dest, []).append(value)
        else:
            values[option.dest] = value
    return positionals, values


# POSIX shell words, as shlex.split reads them, in one regex pass: shlex builds each token by
# repeated string concatenation, which made a 1 MB line take tens of seconds.
_WORD_PIECE = re.compile(
    r"""(?P<space>[ \t\r\n]+)
    |'(?P<single>[^']*)'
    |"(?P<double>(?:[^"\\]|\\.)*)"
    |\\(?P<escaped>.)
    |(?P<plain>[^ \t\r\n'"\\]+)
    |(?P<open>['"\\])""",
    re.VERBOSE | re.DOTALL,
)
_DOUBLE_QUOTED_ESCAPE = re.compile(r'\\(["\\])')


def tokenize(text: str) -> list[str]:
    """Split like a POSIX shell (quotes group words, backslash escapes), in linear time."""
    tokens: list[str] = []
    pieces: list[str] = []
    in_word = False
    for match in _WORD_PIECE.finditer(text):
        kind = match.lastgroup
        if kind == "space":
            if in_word:
                tokens.append("".join(pieces))
                pieces.clear()
                in_word = False
            continue
        if kind == "open":
            what = "a quote is not closed" if match.group() != "\\" else "it ends in a backslash"
            raise CommandError(f"Could not read that command: {what}. Send /help for the options.")
        value = match.group(kind) if kind else ""
        if kind == "double":
            value = _DOUBLE_QUOTED_ESCAPE.sub(r"\1", value)
        pieces.append(value)
        in_word = True
    if in_word:
        tokens.append("".join(pieces))
    return ["--" + t.lstrip("".join(_DASHES)) if t.startswith(_DASHES) else t for t in tokens]


def check_line_length(text: str, max_chars: int = DEFAULT_MAX_LINE_CHARS) -> None:
    """Refuse a command longer than any real one before any work is spent on it."""
    if len(text) > max_chars:
        raise CommandError(
            f"That command is {len(text):,} characters long; the limit is {max_chars:,}. "
            "Send /help for the options."
        )


def parse_command(line: str, *, max_chars: int = DEFAULT_MAX_LINE_CHARS) -> Command:
    """One line as typed ("/recommend NAME --count 5"); CommandError for anything else."""
    check_line_length(line, max_chars)
    text = line.strip()
    if not text.startswith("/"):
        raise CommandError(HELP_POINTER)
    head, _, rest = text.partition(" ")
    # Telegram groups address commands as /recommend@SomeBot.
    name = head[1:].split("@", 1)[0].lower()
    return parse_tokens(name, tokenize(rest), max_chars=max_chars)


def parse_tokens(
    name: str, tokens: Sequence[str], *, max_chars: int = DEFAULT_MAX_LINE_CHARS
) -> Command:
    """A command by name with its argument tokens (Discord builds these from typed options)."""
    tokens = list(tokens)
    check_line_length(" ".join(tokens), max_chars)
    if name == "recommend":
        return _recommend(tokens)
    if name == "link":
        words, values = _read_options(name, tokens, _LINK_OPTIONS)
        if len(words) != 1:
            raise CommandError("Usage: /link NAME [--source mal|anilist]")
        return LinkCommand(username=words[0], source=values.get("source"))
    if name in ("seen", "notinterested", "not_interested"):
        kind = "seen" if name == "seen" else "not_interested"
        if len(tokens) != 1 or not re.fullmatch(r"[0-9]{1,3}", tokens[0]):
            raise CommandError(f"Usage: /{name} N, where N is a pick's number in the last reply.")
        return FeedbackCommand(kind=kind, position=int(tokens[0]))
    if name == "subscribe":
        return _subscribe(tokens)
    if name == "similar":
        return _similar(tokens)
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


def _recommend(tokens: list[str]) -> RecommendCommand | GroupCommand:
    words, values = _read_options("recommend", tokens, _RECOMMEND_OPTIONS)
    if len(words) > MAX_GROUP:
        raise CommandError(
            f"A group is at most {MAX_GROUP} names, but I read {len(words)}. "
            "Send /help for the options."
        )
    username = words[0] if len(words) == 1 else None
    types = tuple(t.strip().lower() for t in values.get("types", ()))
    unknown = [t for t in types if t not in MEDIA_TYPES]
    if unknown:
        raise CommandError(
            f"Unknown type {shown(unknown[0])!r}; choose from {', '.join(MEDIA_TYPES)}."
        )
    genres = tuple(values.get("genres", ()))
    exclude_genres = tuple(values.get("exclude_genres", ()))
    for genre in (*genres, *exclude_genres):
        if len(genre) > _VALUE_LIMIT:
            raise CommandError(f"Unknown genre {shown(genre)!r}: genre names are short words.")
    file = values.get("file")
    if file is not None and words:
        raise CommandError("Give either a username or --file, not both.")
    request = RecommendCommand(
        username=username,
        source=values.get("source"),
        count=values.get("count"),
        genres=genres,
        exclude_genres=exclude_genres,
        media_types=types,
        adventurous=values.get("adventurous", 0.0),
        adult=values.get("adult", False),
        unaired=values.get("unaired", False),
        plan_to_watch=not values.get("no_plan_to_watch", False),
        file=file,
    )
    if len(words) <= 1:
        return request
    members = _group_members(words)
    if len(members) == 1:  # the same name twice is one list
        return replace(request, username=words[0])
    return GroupCommand(members=members, request=request)


def _group_members(words: Sequence[str]) -> tuple[GroupMember, ...]:
    """Each word as a member; a repeated name (case aside) counts once."""
    members: list[GroupMember] = []
    seen: set[tuple[str, str | None]] = set()
    for word in words:
        mention = _MENTION.fullmatch(word)
        if mention is not None:
            member = GroupMember(name=word, mention=mention.group(1))
        elif (named := _MEMBER_SOURCE.match(word)) is not None:
            member = GroupMember(name=named.group(1), source=named.group(2).lower())
        else:
            member = GroupMember(name=word)
        key = (member.mention or member.name.lower(), None if member.mention else member.source)
        if key not in seen:
            seen.add(key)
            members.append(member)
    return tuple(members)


def _similar(tokens: list[str]) -> SimilarCommand:
    words, values = _read_options("similar", tokens, _SIMILAR_OPTIONS)
    title = " ".join(words).strip()
    if not title:
        raise CommandError(SIMILAR_USAGE)
    if len(title) > _TITLE_LIMIT:
        raise CommandError(f"{shown(title)!r} is longer than any title; {SIMILAR_USAGE[7:]}")
    return SimilarCommand(
        title=title,
        username=values.get("username"),
        source=values.get("source"),
        count=values.get("count"),
        franchise=values.get("franchise", False),
        adult=values.get("adult", False),
        unaired=values.get("unaired", False),
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
