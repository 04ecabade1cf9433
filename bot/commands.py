"""The platform-neutral command layer: a user and a command in, a `Reply` out, never an exception.

Every front end calls `CommandService.handle_line` (typed text) or `execute` (an already parsed
command, e.g. from a button). Behind it: the list sources (bounded concurrency, SQLite list cache),
the engine (bounded concurrency), the per-user cooldown, and storage for accounts, subscriptions,
feedback and each user's last results (/more, /seen N), so that any process over a shared store can
answer a follow-up to a reply another one made. Feedback is honoured in every later recommendation:
seen and not-interested titles are excluded from the user's picks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot import metrics
from bot.limits import Limits, wait_message
from bot.parsing import (
    Command,
    CommandError,
    FeedbackCommand,
    GroupCommand,
    GroupMember,
    HelpCommand,
    LinkCommand,
    MoreCommand,
    RecommendCommand,
    SimilarCommand,
    SubscribeCommand,
    UnlinkCommand,
    UnsubscribeCommand,
    parse_command,
    shown,
)
from bot.replies import Button, Reply
from bot.settings import BotSettings
from bot.storage import Storage, StoredSession, Subscription
from inference.animelist import AnimeList
from inference.config import MAL_CLIENT_ID_ENV
from inference.engine import Engine
from inference.errors import (
    AnimerecError,
    BadExportFile,
    ConfigError,
    ExportTooLarge,
    InvalidUsername,
    ListSourceError,
    UserNotFound,
)
from inference.group import MIN_MEMBERS, GroupTooSmall
from inference.http import service_display_name
from inference.options import RecommendOptions
from inference.similar import SimilarOptions, UnknownTitle
from inference.sources.fetch import ListSources
from inference.sources.mal_xml import parse_mal_export, read_export_file
from inference.sources.usernames import validate_anilist_username, validate_mal_username

log = logging.getLogger(__name__)

CONSOLE = "console"
INTERNAL_ERROR = "Something went wrong on our side; please try again later."


@dataclass(frozen=True, slots=True)
class UserRef:
    """Who is asking: the platform, the user's id there, and where a DM to them goes."""

    platform: str
    user_id: str
    chat_id: str

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a command (a MyAnimeList export), already read."""

    filename: str
    data: bytes


@dataclass(slots=True)
class Session:
    """What /more and "/seen N" need: the last list, its options and what was shown."""

    anime_list: AnimeList
    options: RecommendOptions
    shown_ids: set[int] = field(default_factory=set)
    last_cards: list[tuple[int, str]] = field(default_factory=list)  # (mal_id, title)
    service: str | None = None
    username: str | None = None

    def state_json(self) -> str:
        """Everything but the list, as the store keeps it."""
        o = self.options
        return json.dumps(
            {
                "options": {
                    "count": o.count,
                    "media_types": None if o.media_types is None else sorted(o.media_types),
                    "include_genres": list(o.include_genres),
                    "exclude_genres": list(o.exclude_genres),
                    "plan_to_watch": o.plan_to_watch,
                    "unaired": o.unaired,
                    "adult": o.adult,
                    "adventurous": o.adventurous,
                    "exclude_mal_ids": sorted(o.exclude_mal_ids),
                    "plan_to_watch_max": o.plan_to_watch_max,
                },
                "shown_ids": sorted(self.shown_ids),
                "last_cards": [[mal_id, title] for mal_id, title in self.last_cards],
                "service": self.service,
                "username": self.username,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_stored(cls, stored: StoredSession) -> Session:
        """The inverse of `state_json` and the list's `to_json`; ValueError (or KeyError,
        TypeError) when the stored form is not one this version wrote."""
        state = json.loads(stored.state)
        o = state["options"]
        options = RecommendOptions(
            count=int(o["count"]),
            media_types=None if o["media_types"] is None else frozenset(o["media_types"]),
            include_genres=tuple(o["include_genres"]),
            exclude_genres=tuple(o["exclude_genres"]),
            plan_to_watch=bool(o["plan_to_watch"]),
            unaired=bool(o["unaired"]),
            adult=bool(o["adult"]),
            adventurous=float(o["adventurous"]),
            exclude_mal_ids=frozenset(int(i) for i in o["exclude_mal_ids"]),
            plan_to_watch_max=int(o["plan_to_watch_max"]),
        )
        return cls(
            AnimeList.from_json(stored.list_body),
            options,
            shown_ids={int(i) for i in state["shown_ids"]},
            last_cards=_cards(state),
            service=state["service"],
            username=state["username"],
        )


def _cards(state: dict[str, Any] | None) -> list[tuple[int, str]]:
    """The (mal_id, title) of the last reply's picks, from a stored session state."""
    if state is None:
        return []
    try:
        return [(int(mal_id), str(title)) for mal_id, title in state["last_cards"]]
    except (KeyError, TypeError, ValueError):
        return []


class CommandService:
    def __init__(
        self,
        *,
        engine: Engine,
        sources: ListSources,
        storage: Storage,
        settings: BotSettings,
        limits: Limits,
        mal_available: bool,
    ) -> None:
        self.engine = engine
        self.sources = sources
        self.storage = storage
        self.settings = settings
        self.limits = limits
        self.mal_available = mal_available
        self._fetching: dict[tuple[str, str], asyncio.Future[AnimeList]] = {}

    # ----- entry points ---------------------------------------------------------------------

    async def handle_line(
        self, user: UserRef, line: str, attachment: Attachment | None = None
    ) -> Reply:
        try:
            command = parse_command(line, max_chars=self.settings.bot.max_line_chars)
        except CommandError as exc:
            return Reply.failure(str(exc))
        return await self.execute(user, command, attachment)

    @metrics.counts_replies
    async def execute(
        self, user: UserRef, command: Command, attachment: Attachment | None = None
    ) -> Reply:
        try:
            async with self.limits.commands:
                return await self._dispatch(user, command, attachment)
        except CommandError as exc:
            return Reply.failure(str(exc))
        except (ListSourceError, ConfigError) as exc:
            return Reply.failure(str(exc))
        except AnimerecError as exc:
            log.warning("command %s failed", type(command).__name__, exc_info=exc)
            return Reply.failure(str(exc))
        except Exception:
            log.exception("command %s failed", type(command).__name__)
            self.limits.cooldown.release(user.key)
            return Reply.failure(INTERNAL_ERROR)

    async def _dispatch(
        self, user: UserRef, command: Command, attachment: Attachment | None
    ) -> Reply:
        if isinstance(command, RecommendCommand):
            return await self._recommend(user, command, attachment)
        if isinstance(command, MoreCommand):
            return await self._more(user)
        if isinstance(command, FeedbackCommand):
            return await self._feedback(user, command)
        if isinstance(command, LinkCommand):
            return await self._link(user, command)
        if isinstance(command, UnlinkCommand):
            removed = await self.storage.unlink(user.platform, user.user_id)
            return Reply.text("Unlinked your list." if removed else "No list was linked.")
        if isinstance(command, SubscribeCommand):
            return await self._subscribe(user, command)
        if isinstance(command, UnsubscribeCommand):
            removed = await self.storage.unsubscribe(user.platform, user.user_id)
            return Reply.text(
                "You will get no more weekly recommendations."
                if removed
                else "You had no weekly subscription."
            )
        if isinstance(command, HelpCommand):
            return self.help()
        if isinstance(command, SimilarCommand):
            return await self._similar(user, command)
        if isinstance(command, GroupCommand):
            return await self._group(user, command)
        raise CommandError("Unknown command. Send /help to see the commands.")

    # ----- /help ----------------------------------------------------------------------------

    def help(self) -> Reply:
        info = self.engine.info
        return Reply(
            heading="animerec: anime recommendations from your list",
            lines=[
                "/recommend [NAME] [--source mal|anilist] [--count N] [--genre G]... "
                "[--exclude-genre G]... [--type tv|movie|ova|ona|special|music|tv_special]... "
                "[--adventurous 0..1] [--adult] [--unaired] [--no-plan-to-watch]",
                "   (or attach a MyAnimeList XML export; on the console: /recommend --file PATH)",
                "/recommend NAME NAME... (2-8 names, name@mal or name@anilist per member): "
                "picks for a group",
                "/similar TITLE [--count N] [--franchise] [--user NAME] [--source mal|anilist]: "
                "more like one title",
                "/link NAME [--source mal|anilist] · /unlink: remember your list",
                "/subscribe [WEEKDAY] [HOUR] [TIME ZONE] · /unsubscribe: weekly recommendations",
                "/more · /seen N · /notinterested N: follow-ups to the last recommendations",
                f"Default site: {service_display_name(self._default_source())}.",
                f"Model: {info.name} (version {info.version}), trained on {info.trained_on}.",
            ],
        )

    # ----- /recommend and /more -------------------------------------------------------------

    async def _recommend(
        self, user: UserRef, command: RecommendCommand, attachment: Attachment | None
    ) -> Reply:
        options = build_options(command, self.settings.bot.default_count)
        wait = self._cooldown(user)
        if wait > 0:
            return Reply.failure(wait_message(wait))
        service: str | None = None
        username: str | None = None
        local = attachment is not None or command.file is not None
        try:
            if attachment is not None:
                anime_list = await self._read_attachment(attachment)
            elif command.file is not None:
                anime_list = await self._read_local_file(user, command.file)
            else:
                service, username, explicit = await self._target(user, command)
                anime_list = await self._fetch(service, username, explicit_source=explicit)
        except (AnimerecError, CommandError) as exc:
            # A refusal that cost no outside request (a bad file, a bad name, a missing link)
            # costs no wait either; a fetch that reached the service keeps its cooldown.
            if local or isinstance(exc, CommandError | InvalidUsername | ConfigError):
                self.limits.cooldown.release(user.key)
            raise
        feedback = await self.storage.feedback(user.platform, user.user_id)
        options = _with_excluded(options, feedback)
        session = Session(anime_list, options, service=service, username=username)
        return await self._run(user, session, heading=_heading(anime_list))

    async def _more(self, user: UserRef) -> Reply:
        session = await self._session(user)
        if session is None:
            return Reply.failure("Ask for recommendations first: /recommend NAME")
        wait = self._cooldown(user)
        if wait > 0:
            return Reply.failure(wait_message(wait))
        feedback = await self.storage.feedback(user.platform, user.user_id)
        session.options = _with_excluded(session.options, feedback, session.shown_ids)
        return await self._run(user, session, heading="More recommendations", more=True)

    async def _run(
        self, user: UserRef, session: Session, *, heading: str, more: bool = False
    ) -> Reply:
        async with self.limits.inference:
            try:
                result = await self.engine.recommend(session.anime_list, session.options)
            except ValueError as exc:  # an unknown genre, found against the catalogue
                self.limits.cooldown.release(user.key)
                return Reply.failure(f"{exc}.")
        cards = result.recommendations
        session.shown_ids.update(r.mal_id for r in cards)
        session.last_cards = [(r.mal_id, r.title) for r in cards]
        await self._remember(user, session, new_list=not more)
        if not cards:
            return Reply(
                lines=[_nothing_left(session.options, more=more)], notes=list(result.notes)
            )
        return Reply(
            heading=heading,
            cards=cards,
            notes=list(result.notes),
            buttons=[Button("more", "More"), Button("subscribe", "Weekly")],
        )

    def _cooldown(self, user: UserRef) -> float:
        # The console's one local user is the operator: there is nobody for them to starve.
        return 0.0 if user.platform == CONSOLE else self.limits.cooldown.try_acquire(user.key)

    async def _remember(self, user: UserRef, session: Session, *, new_list: bool) -> None:
        """Keep the user's session in the store for /more and /seen N (from any process). The
        store bounds them by count and by the list entries they hold together (one 30k-entry list
        weighs as much as a few hundred ordinary ones); a /more rewrites the state, not the list."""
        list_body = await asyncio.to_thread(session.anime_list.to_json) if new_list else None
        bot = self.settings.bot
        await self.storage.save_session(
            user.platform,
            user.user_id,
            session.state_json(),
            list_body,
            len(session.anime_list),
            max_sessions=bot.sessions_max,
            max_entries=bot.sessions_max_entries,
        )

    async def _session(self, user: UserRef) -> Session | None:
        stored = await self.storage.session(user.platform, user.user_id)
        if stored is None:
            return None
        try:
            # Decoding a long list takes milliseconds: off the loop, like the list cache.
            return await asyncio.to_thread(Session.from_stored, stored)
        except (ValueError, KeyError, TypeError):
            log.warning("a stored session could not be read; it is ignored", exc_info=True)
            return None

    async def _session_state(self, user: UserRef) -> dict[str, Any] | None:
        """The stored session's state without its list (for /seen N and the Weekly button)."""
        state = await self.storage.session_state(user.platform, user.user_id)
        if state is None:
            return None
        try:
            data = json.loads(state)
        except ValueError:
            log.warning("a stored session could not be read; it is ignored", exc_info=True)
            return None
        return data if isinstance(data, dict) else None

    async def kept_session_entries(self) -> int:
        """List entries held by the /more sessions of every user together."""
        return await self.storage.session_entries()

    async def _target(self, user: UserRef, command: RecommendCommand) -> tuple[str, str, bool]:
        """(service, username, whether the user chose the service) for a by-name request."""
        if command.username is not None:
            return command.source or self._default_source(), command.username, bool(command.source)
        account = await self.storage.account(user.platform, user.user_id)
        if account is None:
            raise CommandError(
                "Tell me whose list to use: /recommend NAME, or link yours once with /link NAME."
            )
        return command.source or account.service, account.username, True

    def _default_source(self) -> str:
        choice = self.settings.bot.default_source
        if choice == "auto":
            return "mal" if self.mal_available else "anilist"
        return choice

    async def _fetch(self, service: str, username: str, *, explicit_source: bool) -> AnimeList:
        # Checked before the cache so a bad name never reaches the database as a key.
        name = (validate_mal_username if service == "mal" else validate_anilist_username)(username)
        ttl = self.settings.storage.list_cache_ttl_s
        cached = await self.storage.cached_list(service, name, ttl)
        if cached is not None:
            return cached
        # Requests for the same list while it is being fetched share that one fetch.
        key = (service, name.lower())
        pending = self._fetching.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_and_cache(service, name))
            self._fetching[key] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(key, None))
        try:
            return await asyncio.shield(pending)
        except UserNotFound as exc:
            if explicit_source:
                raise
            other = "anilist" if service == "mal" else "mal"
            raise UserNotFound(
                f"{exc} (I looked on {service_display_name(service)}; "
                f"add --source {other} to look on {service_display_name(other)}.)",
                service=service,
            ) from None
        except ConfigError as exc:
            if service != "mal":
                raise
            raise ConfigError(
                f"{exc}. Use --source anilist, or ask the bot's operator to set {MAL_CLIENT_ID_ENV}."
            ) from None

    @metrics.counts_fetch_failures
    async def _fetch_and_cache(self, service: str, name: str) -> AnimeList:
        async with self.limits.fetches:
            if service == "mal":
                anime_list = await self.sources.fetch_mal_list(name)
            else:
                anime_list = await self.sources.fetch_anilist_list(name)
        await self.storage.cache_list(service, name, anime_list)
        return anime_list

    async def _read_attachment(self, attachment: Attachment) -> AnimeList:
        limit = self.settings.bot.max_attachment_bytes
        if len(attachment.data) > limit:
            raise CommandError(
                f"That file is larger than {limit // (1024 * 1024)} MB; "
                "a MyAnimeList export (.xml or .xml.gz) is much smaller."
            )
        return await self._parse_export(attachment.data)

    async def _parse_export(self, data: bytes) -> AnimeList:
        # Parsing costs CPU and memory like inference does, so it waits for the same admission:
        # a few large files at once cannot push the process out of memory.
        async with self.limits.inference:
            try:
                return await asyncio.to_thread(
                    parse_mal_export, data, max_entries=self.settings.bot.max_list_entries
                )
            except ExportTooLarge:
                raise  # its own message says how many entries are allowed
            except BadExportFile as exc:
                raise BadExportFile(
                    f"That file is not a readable MyAnimeList export: {exc}"
                ) from None

    async def _read_local_file(self, user: UserRef, path_text: str) -> AnimeList:
        if user.platform != CONSOLE:
            # A chat user must never name a file on the bot's machine.
            raise CommandError("Attach your MyAnimeList export to the message instead of --file.")
        path = Path(os.path.expanduser(path_text))
        limit = self.settings.bot.max_attachment_bytes
        try:
            # Regular files only, and never more than the limit read: a FIFO or /dev/zero is
            # refused instead of blocking the worker or filling memory.
            data = await asyncio.to_thread(read_export_file, path, limit, shown_as=shown(path_text))
        except BadExportFile as exc:
            message = str(exc)
            raise CommandError(message[:1].upper() + message[1:] + ".") from None
        return await self._parse_export(data)

    # ----- /similar and group requests ------------------------------------------------------

    async def _similar(self, user: UserRef, command: SimilarCommand) -> Reply:
        feedback = await self.storage.feedback(user.platform, user.user_id)
        try:
            options = SimilarOptions(
                count=self.settings.bot.default_count if command.count is None else command.count,
                franchise=command.franchise,
                adult=command.adult,
                unaired=command.unaired,
                exclude_mal_ids=frozenset(feedback),
            )
        except ValueError as exc:
            raise CommandError(f"{str(exc)[:300]}.") from None
        wait = self._cooldown(user)
        if wait > 0:
            return Reply.failure(wait_message(wait))
        notes: list[str] = []
        anime_list: AnimeList | None = None
        if command.username is not None:
            service = command.source or self._default_source()
            try:
                anime_list = await self._fetch(
                    service, command.username, explicit_source=command.source is not None
                )
            except (AnimerecError, CommandError) as exc:
                # As for /recommend: a fetch that reached the service keeps its cooldown.
                if isinstance(exc, CommandError | InvalidUsername | ConfigError):
                    self.limits.cooldown.release(user.key)
                raise
        else:
            account = await self.storage.account(user.platform, user.user_id)
            if account is not None:
                # A linked list that cannot be read now costs the answer nothing but a note.
                try:
                    anime_list = await self._fetch(
                        account.service, account.username, explicit_source=True
                    )
                except AnimerecError as exc:
                    notes.append(
                        f"Your linked list could not be read ({exc}); titles on it may appear."
                    )
        async with self.limits.inference:
            try:
                result = await self.engine.similar(command.title, options, anime_list)
            except UnknownTitle as exc:
                self.limits.cooldown.release(user.key)
                return Reply.failure(str(exc))
        if not result.recommendations:
            return Reply(
                lines=[f"I found nothing like {result.query_title} to recommend."],
                notes=notes + list(result.notes),
            )
        return Reply(
            heading=result.heading, cards=result.recommendations, notes=notes + list(result.notes)
        )

    async def _group(self, user: UserRef, command: GroupCommand) -> Reply:
        options = build_options(command.request, self.settings.bot.default_count)
        wait = self._cooldown(user)
        if wait > 0:
            return Reply.failure(wait_message(wait))
        default_source = command.request.source
        fetched = await asyncio.gather(
            *(self._member_list(user, m, default_source) for m in command.members),
            return_exceptions=True,
        )
        members: list[tuple[str, AnimeList]] = []
        lines: list[str] = []
        for member, outcome in zip(command.members, fetched, strict=True):
            if isinstance(outcome, AnimerecError | CommandError):
                lines.append(f"Left out {member.label}: {outcome}")
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                label, anime_list = outcome
                members.append((label, anime_list))
        if len(members) < MIN_MEMBERS:
            return Reply(
                lines=[
                    *lines,
                    f"A group needs at least {MIN_MEMBERS} readable lists; "
                    f"I could read {len(members)}.",
                ],
                error=True,
            )
        feedback = await self.storage.feedback(user.platform, user.user_id)
        options = _with_excluded(options, feedback)
        async with self.limits.inference:
            try:
                result = await self.engine.recommend_group(members, options)
            except ValueError as exc:  # an unknown genre, found against the catalogue
                return Reply.failure(f"{exc}.")
            except GroupTooSmall as exc:  # lists the model cannot read: the user's to fix
                return Reply(lines=[*lines, *_cold_members(exc), str(exc)], error=True)
        names = [label for label, _ in members]
        heading = "Recommendations for " + (
            f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]
        )
        if not result.recommendations:
            return Reply(lines=[*lines, _nothing_left(options, more=False)], notes=result.notes)
        return Reply(
            heading=heading, lines=lines, cards=result.recommendations, notes=list(result.notes)
        )

    async def _member_list(
        self, user: UserRef, member: GroupMember, default_source: str | None
    ) -> tuple[str, AnimeList]:
        """(how the reply names the member, their list) for one member of a group request."""
        if member.mention is not None:
            account = await self.storage.account(user.platform, member.mention)
            if account is None:
                raise CommandError("they have not linked a list (/link NAME)")
            anime_list = await self._fetch(account.service, account.username, explicit_source=True)
            return account.username, anime_list
        source = member.source or default_source
        anime_list = await self._fetch(
            source or self._default_source(), member.name, explicit_source=source is not None
        )
        return member.name, anime_list

    # ----- feedback -------------------------------------------------------------------------

    async def _feedback(self, user: UserRef, command: FeedbackCommand) -> Reply:
        if command.mal_id is not None:
            mal_id = command.mal_id
            index = self.engine.catalog.index_of(mal_id)
            # The same naming as the picks ([engine] title_language).
            title = (
                self.engine.explainer.titles.name(index)
                if index is not None
                else (f"title {mal_id}")
            )
        else:
            cards = _cards(await self._session_state(user))
            if not cards:
                return Reply.failure("There are no recommendations to refer to; /recommend first.")
            position = command.position or 0
            if not 1 <= position <= len(cards):
                return Reply.failure(f"Choose a number from 1 to {len(cards)}.")
            mal_id, title = cards[position - 1]
        await self.storage.add_feedback(user.platform, user.user_id, mal_id, command.kind)
        what = "you have seen" if command.kind == "seen" else "you are not interested in"
        return Reply.text(f"Noted: {what} {title}. It will not be recommended to you again.")

    # ----- accounts and subscriptions -------------------------------------------------------

    async def _link(self, user: UserRef, command: LinkCommand) -> Reply:
        service = command.source or self._default_source()
        # Fetching proves the user exists and the list is public (and warms the cache).
        await self._fetch(service, command.username, explicit_source=command.source is not None)
        name = command.username.strip()
        await self.storage.link(user.platform, user.user_id, service, name)
        return Reply.text(
            f"Linked {name} on {service_display_name(service)}. "
            "Now /recommend and /subscribe use it."
        )

    async def _subscribe(self, user: UserRef, command: SubscribeCommand) -> Reply:
        lines: list[str] = []
        account = await self.storage.account(user.platform, user.user_id)
        if account is None:
            state = await self._session_state(user) or {}
            service, username = state.get("service"), state.get("username")
            if not isinstance(service, str) or not isinstance(username, str):
                return Reply.failure(
                    "Weekly recommendations need your list: link it first with /link NAME."
                )
            await self.storage.link(user.platform, user.user_id, service, username)
            lines.append(
                f"Linked {username} on {service_display_name(service)} "
                "for your weekly recommendations."
            )
        # Only what the user typed changes: a bare /subscribe (or the Weekly button) keeps the
        # day, hour and zone they chose before, and falls back to the defaults only at first.
        defaults = self.settings.scheduler
        existing = await self.storage.subscription(user.platform, user.user_id)
        weekday = command.weekday or (existing.weekday if existing else defaults.default_weekday)
        hour = command.hour
        if hour is None:
            hour = existing.hour if existing else defaults.default_hour
        tz = command.tz or (existing.tz if existing else defaults.default_timezone)
        if (
            existing is not None
            and existing.active
            and (existing.weekday, existing.hour, existing.tz) == (weekday, hour, tz)
        ):
            lines.append(
                f"You are already subscribed: {_schedule(existing)}. "
                "/subscribe WEEKDAY HOUR TIME ZONE changes it; /unsubscribe stops it."
            )
            return Reply(lines=lines)
        sub = await self.storage.subscribe(
            user.platform, user.user_id, user.chat_id, weekday, hour, tz
        )
        lines.append(f"Subscribed: {_schedule(sub)}. /unsubscribe stops them.")
        return Reply(lines=lines)

    # ----- weekly -------------------------------------------------------------------------

    async def weekly_reply(self, subscription: Subscription) -> Reply:
        """What a subscriber's weekly DM says; failures become a message to them, not an error."""
        user = UserRef(subscription.platform, subscription.user_id, subscription.chat_id)
        try:
            account = await self.storage.account(user.platform, user.user_id)
            if account is None:
                return Reply.failure(
                    "Your weekly recommendations need a linked list: /link NAME, then they resume."
                )
            anime_list = await self._fetch(account.service, account.username, explicit_source=True)
            feedback = await self.storage.feedback(user.platform, user.user_id)
            options = _with_excluded(
                RecommendOptions(count=self.settings.bot.default_count), feedback
            )
            session = Session(
                anime_list, options, service=account.service, username=account.username
            )
            reply = await self._run(user, session, heading="Your weekly recommendations")
        except (AnimerecError, CommandError) as exc:
            return Reply.failure(f"Your weekly recommendations could not be made: {exc}")
        reply.buttons = [b for b in reply.buttons if b.action != "subscribe"]
        return reply


def build_options(command: RecommendCommand, default_count: int) -> RecommendOptions:
    """The request's options, checked; CommandError (not ValueError) for the user to read."""
    try:
        return RecommendOptions(
            count=default_count if command.count is None else command.count,
            media_types=frozenset(command.media_types) if command.media_types else None,
            include_genres=command.genres,
            exclude_genres=command.exclude_genres,
            plan_to_watch=command.plan_to_watch,
            unaired=command.unaired,
            adult=command.adult,
            adventurous=command.adventurous,
        )
    except ValueError as exc:
        raise CommandError(f"{str(exc)[:300]}.") from None


def _with_excluded(
    options: RecommendOptions, feedback: dict[int, str], shown_ids: set[int] | None = None
) -> RecommendOptions:
    excluded = set(options.exclude_mal_ids) | set(feedback) | (shown_ids or set())
    return replace(options, exclude_mal_ids=frozenset(excluded))


def _cold_members(exc: GroupTooSmall) -> list[str]:
    return [
        f"Left out {name}: no title on their list is in the model's catalogue."
        for name in exc.left_out
    ]


def _schedule(sub: Subscription) -> str:
    return f"recommendations every {sub.weekday.capitalize()} at {sub.hour:02d}:00 ({sub.tz})"


def _nothing_left(options: RecommendOptions, *, more: bool) -> str:
    """Why a reply has no picks, blaming filters only when the user set some."""
    filtered = bool(options.include_genres or options.exclude_genres or options.media_types)
    if filtered:
        return (
            "No more titles match those options; try fewer filters."
            if more
            else "No titles match those options; try fewer filters."
        )
    if more:
        return (
            "That is every title I can recommend from this list for now. "
            "Try /recommend with --adventurous 0.5 for less familiar picks."
        )
    return "I found nothing left to recommend from this list."


def _heading(anime_list: AnimeList) -> str:
    who = anime_list.username or "your list"
    return f"Recommendations for {who}"
