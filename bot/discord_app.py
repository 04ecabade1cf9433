"""The Discord front end (discord.py 2.x): slash commands over the command layer.

Each command defers first (Discord wants an answer within 3 s; a recommendation can take longer)
and answers with followups: one embed per pick (title linked, cover as thumbnail) within Discord's
limits (title 256, description 4096, 25 fields of 1024, footer 2048, 6000 characters and 10 embeds per
message), and buttons whose custom ids carry the action and the title ("animerec:seen:5114"), handled
in `on_interaction` so they keep working after a restart. A closed DM raises Forbidden, which pauses
the subscription.

The client is an `AutoShardedClient`: every shard in this process, or the subset `[discord]
shard_ids` names (one process per subset). Slash commands are registered by the process running
shard 0 only, and only when they changed: a hash of the command payload Discord receives is kept in
the store per scope (global, or the `[discord] dev_guild_id` guild) and per application, and a
matching hash skips the sync (Discord rate-limits command registration, and a global sync takes
a while to reach every client).

`run_forever` is one connection attempt for the supervisor in `bot.supervisor`: a rejected token or
a refused intent is permanent (`permanent_failure` says why), a network or gateway failure is
retried. discord.py reconnects a live gateway itself; the supervisor covers what it gives up on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot.commands import Attachment, CommandService, UserRef
from bot.parsing import (
    STALE_BUTTON,
    Command,
    CommandError,
    SubscribeCommand,
    button_payload_command,
    parse_hour,
    parse_timezone,
    parse_tokens,
    parse_weekday,
    tokenize,
)
from bot.replies import Button, Reply, score_text
from bot.scheduler import DeliveryForbidden
from bot.settings import WEEKDAYS, BotSettings
from bot.storage import Storage
from inference.config import DISCORD_TOKEN_ENV
from inference.errors import ConfigError

log = logging.getLogger(__name__)

PLATFORM = "discord"
CUSTOM_ID_PREFIX = "animerec:"

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
MESSAGE_TOTAL_LIMIT = 6000
EMBEDS_PER_MESSAGE = 10
BUTTONS_PER_ROW = 5
MAX_ROWS = 5
# Gateway close codes that no reconnect can cure: authentication failed, invalid shard, sharding
# required, invalid API version, invalid intents, disallowed intents.
PERMANENT_CLOSE_CODES = frozenset({4004, 4010, 4011, 4012, 4013, 4014})


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class EmbedSpec:
    """An embed's parts before the limits are applied."""

    title: str | None = None
    url: str | None = None
    description: str = ""
    thumbnail: str | None = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    footer: str | None = None

    def build(self, budget: int = MESSAGE_TOTAL_LIMIT) -> discord.Embed:
        """The embed, every part cut to its limit and the whole to `budget` characters."""
        title = cut(self.title, TITLE_LIMIT) if self.title else None
        footer = cut(self.footer, FOOTER_LIMIT) if self.footer else None
        fields = [
            (cut(name, FIELD_NAME_LIMIT), cut(value, FIELD_VALUE_LIMIT))
            for name, value in self.fields[:FIELDS_LIMIT]
        ]
        fixed = len(title or "") + len(footer or "")
        kept: list[tuple[str, str]] = []
        for name, value in fields:
            if fixed + len(name) + len(value) > budget:
                break
            kept.append((name, value))
            fixed += len(name) + len(value)
        room = max(0, min(DESCRIPTION_LIMIT, budget - fixed))
        description = cut(self.description, room) if room else ""
        embed = discord.Embed(title=title, url=self.url, description=description or None)
        if self.thumbnail:
            embed.set_thumbnail(url=self.thumbnail)
        for name, value in kept:
            embed.add_field(name=name, value=value, inline=False)
        if footer:
            embed.set_footer(text=footer)
        return embed


def reply_specs(reply: Reply) -> list[EmbedSpec]:
    specs: list[EmbedSpec] = []
    if reply.heading or reply.lines or reply.notes:
        specs.append(
            EmbedSpec(
                title=reply.heading,
                description="\n".join(reply.lines),
                footer="\n".join(reply.notes) or None,
            )
        )
    for position, rec in enumerate(reply.cards, start=1):
        details = [f"({rec.title_other})"] if rec.title_other else []
        details.append(rec.facts_line())
        if rec.genres:
            details.append(", ".join(rec.genres))
        score = score_text(rec)
        if score:
            details.append(score)
        details.extend(f"*{why}*" for why in rec.why)
        specs.append(
            EmbedSpec(
                title=f"{position}. {rec.title}",
                url=rec.url,
                description="\n".join(d for d in details if d),
                thumbnail=rec.picture_url,
            )
        )
    return specs


@dataclass
class Message:
    embeds: list[discord.Embed]
    positions: list[int]  # the picks (1-based) whose embeds this message carries


def pack_messages(reply: Reply) -> list[Message]:
    """The reply's embeds grouped into messages of at most 10 embeds and 6000 characters."""
    specs = reply_specs(reply)
    offset = 0 if not (reply.heading or reply.lines or reply.notes) else 1
    messages: list[Message] = []
    current = Message([], [])
    total = 0
    for index, spec in enumerate(specs):
        embed = spec.build()
        if current.embeds and (
            len(current.embeds) == EMBEDS_PER_MESSAGE or total + len(embed) > MESSAGE_TOTAL_LIMIT
        ):
            messages.append(current)
            current, total = Message([], []), 0
        current.embeds.append(embed)
        total += len(embed)
        if index >= offset:
            current.positions.append(index - offset + 1)
    if current.embeds:
        messages.append(current)
    return messages


def custom_id(button: Button) -> str:
    return CUSTOM_ID_PREFIX + button.payload()


def build_view(reply: Reply, positions: list[int], *, last: bool) -> discord.ui.View | None:
    buttons = [b for p in positions for b in reply.card_buttons(p)]
    if last:
        buttons.extend(reply.buttons)
    buttons = buttons[: BUTTONS_PER_ROW * MAX_ROWS]
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for index, b in enumerate(buttons):
        label = b.label if b.position is None else f"{b.label} #{b.position}"
        style = discord.ButtonStyle.primary if b.action == "more" else discord.ButtonStyle.secondary
        view.add_item(
            discord.ui.Button(
                label=cut(label, 80),
                custom_id=custom_id(b),
                style=style,
                row=index // BUTTONS_PER_ROW,
            )
        )
    return view


async def _stale_button() -> Reply:
    return Reply.failure(STALE_BUTTON)


def button_command(custom: str) -> Command | None:
    if not custom.startswith(CUSTOM_ID_PREFIX):
        return None
    return button_payload_command(custom[len(CUSTOM_ID_PREFIX) :])


def recommend_tokens(
    username: str | None, source: str | None, count: int | None, filters: str | None
) -> list[str]:
    tokens: list[str] = []
    if username:
        tokens.append(username)
    if source:
        tokens += ["--source", source]
    if count is not None:
        tokens += ["--count", str(count)]
    if filters:
        tokens += tokenize(filters)
    return tokens


SOURCE_CHOICES = [
    app_commands.Choice(name="MyAnimeList", value="mal"),
    app_commands.Choice(name="AniList", value="anilist"),
]
WEEKDAY_CHOICES = [app_commands.Choice(name=d.capitalize(), value=d) for d in WEEKDAYS]


def commands_hash(tree: app_commands.CommandTree[Any], guild: discord.abc.Snowflake | None) -> str:
    """A stable digest of what `tree.sync(guild=guild)` would send: names, descriptions, options,
    their types and choices. Sorted and canonical JSON, so it is the same in every process."""
    payload = sorted(
        (command.to_dict(tree) for command in tree.get_commands(guild=guild)),
        key=lambda c: (c.get("type", 1), c["name"]),
    )
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def commands_meta_key(application_id: int, guild_id: int | None) -> str:
    """The store key of the last synced hash: per application (a new bot token starts afresh)
    and per scope."""
    scope = "global" if guild_id is None else f"guild:{guild_id}"
    return f"discord:commands:{application_id}:{scope}"


def make_client(settings: BotSettings) -> discord.AutoShardedClient:
    """All shards (shard_count 0: as many as Discord recommends), or the configured subset."""
    section = settings.discord
    options: dict[str, Any] = {}
    if section.shard_count:
        options["shard_count"] = section.shard_count
    if section.shard_ids:
        options["shard_ids"] = list(section.shard_ids)
    return discord.AutoShardedClient(intents=discord.Intents.default(), **options)


class DiscordFrontEnd:
    def __init__(
        self, service: CommandService, settings: BotSettings, *, storage: Storage | None = None
    ) -> None:
        """`storage` keeps the synced command hash; the command layer's store by default."""
        self.service = service
        self.settings = settings
        self.storage = storage if storage is not None else service.storage
        self.client = make_client(settings)
        self.tree = app_commands.CommandTree(self.client)
        guild_id = settings.discord.dev_guild_id
        self.sync_guild = discord.Object(id=guild_id) if guild_id else None
        self._synced = False
        self._register()
        if self.sync_guild is not None:
            # Guild commands appear at once; the global ones stay as they are on Discord.
            self.tree.copy_global_to(guild=self.sync_guild)
        self.client.event(self.on_ready)
        self.client.event(self.on_interaction)

    async def run_forever(self, token: str) -> None:
        """Log in and hold the gateway until cancelled; a failure raises."""
        if self.client.is_closed():
            # A failed attempt closed the client, and a closed client's connect returns at once
            # without connecting; clear() opens it again.
            self.client.clear()
        async with self.client:
            await self.client.start(token)

    async def on_ready(self) -> None:
        if not self._synced:
            self._synced = await self.sync_commands()

    async def sync_commands(self) -> bool:
        """Register the slash commands if they changed since the last sync of this scope.

        True when Discord has the current commands (synced now, or already) or when another
        process registers them; False when the sync failed (logged; the next ready retries).
        """
        if not self.settings.discord.registers_commands:
            log.info("discord: slash commands are registered by the process running shard 0")
            return True
        application_id = self.client.application_id
        if application_id is None:  # only before login; on_ready comes after it
            raise app_commands.MissingApplicationID
        guild = self.sync_guild
        key = commands_meta_key(application_id, None if guild is None else guild.id)
        digest = commands_hash(self.tree, guild)
        where = "globally" if guild is None else f"in guild {guild.id}"
        if await self.storage.meta(key) == digest:
            log.info("discord: slash commands unchanged, not synced %s", where)
            return True
        try:
            await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            # Not fatal: the commands Discord already has keep working; a later ready retries.
            log.warning("discord: slash command sync %s failed", where, exc_info=exc)
            return False
        await self.storage.set_meta(key, digest)
        log.info("discord: slash commands synced %s", where)
        return True

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type != discord.InteractionType.component:
            return
        data: Any = interaction.data or {}
        custom = str(data.get("custom_id", ""))
        if not custom.startswith(CUSTOM_ID_PREFIX):
            return  # not one of our buttons
        command = button_command(custom)
        if command is None:  # ours in form, but forged or from an older version
            await self._respond(interaction, _stale_button())
            return
        await self._respond(interaction, self.service.execute(_user_ref(interaction), command))

    # ----- commands -------------------------------------------------------------------------

    def _register(self) -> None:
        front = self

        @self.tree.command(name="recommend", description="Anime recommendations from a list")
        @app_commands.describe(
            username="MyAnimeList or AniList username (optional once linked)",
            source="which site the username is on",
            count="how many picks (1-25)",
            filters='more options, e.g. "--genre Comedy --type movie --adventurous 0.5"',
            export="a MyAnimeList XML export (.xml or .xml.gz) instead of a username",
        )
        @app_commands.choices(source=SOURCE_CHOICES)
        async def recommend(
            interaction: discord.Interaction,
            username: str | None = None,
            source: str | None = None,
            count: app_commands.Range[int, 1, 25] | None = None,
            filters: str | None = None,
            export: discord.Attachment | None = None,
        ) -> None:
            await front._respond(
                interaction, front._recommend(interaction, username, source, count, filters, export)
            )

        @self.tree.command(
            name="link", description="Remember your list for /recommend and /subscribe"
        )
        @app_commands.choices(source=SOURCE_CHOICES)
        async def link(
            interaction: discord.Interaction, username: str, source: str | None = None
        ) -> None:
            tokens = [username] + (["--source", source] if source else [])
            await front._respond(interaction, front._run_tokens(interaction, "link", tokens))

        @self.tree.command(name="unlink", description="Forget your linked list")
        async def unlink(interaction: discord.Interaction) -> None:
            await front._respond(interaction, front._run_tokens(interaction, "unlink", []))

        @self.tree.command(name="subscribe", description="Weekly recommendations by DM")
        @app_commands.describe(
            weekday="day of the week", hour="hour of the day (0-23)", timezone="e.g. Europe/Berlin"
        )
        @app_commands.choices(weekday=WEEKDAY_CHOICES)
        async def subscribe(
            interaction: discord.Interaction,
            weekday: str | None = None,
            hour: app_commands.Range[int, 0, 23] | None = None,
            timezone: str | None = None,
        ) -> None:
            await front._respond(
                interaction, front._subscribe(interaction, weekday, hour, timezone)
            )

        @self.tree.command(name="unsubscribe", description="Stop the weekly recommendations")
        async def unsubscribe(interaction: discord.Interaction) -> None:
            await front._respond(interaction, front._run_tokens(interaction, "unsubscribe", []))

        @self.tree.command(name="help", description="Commands, and which model answers")
        async def help_(interaction: discord.Interaction) -> None:
            await front._respond(interaction, front._run_tokens(interaction, "help", []))

    async def _run_tokens(
        self, interaction: discord.Interaction, name: str, tokens: list[str]
    ) -> Reply:
        try:
            command = parse_tokens(name, tokens, max_chars=self.settings.bot.max_line_chars)
        except CommandError as exc:
            return Reply.failure(str(exc))
        return await self.service.execute(_user_ref(interaction), command)

    async def _recommend(
        self,
        interaction: discord.Interaction,
        username: str | None,
        source: str | None,
        count: int | None,
        filters: str | None,
        export: discord.Attachment | None,
    ) -> Reply:
        try:
            command = parse_tokens(
                "recommend",
                recommend_tokens(username, source, count, filters),
                max_chars=self.settings.bot.max_line_chars,
            )
        except CommandError as exc:
            return Reply.failure(str(exc))
        attachment = None
        if export is not None:
            limit = self.settings.bot.max_attachment_bytes
            if export.size > limit:
                return Reply.failure(
                    f"That file is larger than {limit // 2**20} MB; "
                    "send your MyAnimeList export (.xml or .xml.gz)."
                )
            try:
                attachment = Attachment(export.filename, await export.read())
            except discord.HTTPException:
                return Reply.failure("I could not download that file; please send it again.")
        return await self.service.execute(_user_ref(interaction), command, attachment)

    async def _subscribe(
        self,
        interaction: discord.Interaction,
        weekday: str | None,
        hour: int | None,
        timezone: str | None,
    ) -> Reply:
        try:
            command = SubscribeCommand(
                weekday=None if weekday is None else parse_weekday(weekday),
                hour=None if hour is None else parse_hour(str(hour)),
                tz=None if timezone is None else parse_timezone(timezone),
            )
        except CommandError as exc:
            return Reply.failure(str(exc))
        return await self.service.execute(_user_ref(interaction), command)

    # ----- answering ------------------------------------------------------------------------

    async def _respond(self, interaction: discord.Interaction, work: Any) -> None:
        """Defer at once, compute, then answer with followups."""
        task = asyncio.ensure_future(work)  # started before the defer's network round trip
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as exc:
            log.warning("discord: could not defer", exc_info=exc)
            task.cancel()
            return
        reply: Reply = await task
        messages = pack_messages(reply)
        for index, message in enumerate(messages):
            view = build_view(reply, message.positions, last=index == len(messages) - 1)
            kwargs: dict[str, Any] = {"embeds": message.embeds}
            if view is not None:
                kwargs["view"] = view
            await interaction.followup.send(**kwargs)

    @property
    def ready(self) -> bool:
        """Logged in with the gateway up: weekly DMs wait while the platform reconnects."""
        return self.client.is_ready() and not self.client.is_closed()

    async def send(self, chat_id: str, reply: Reply) -> None:
        """A weekly DM; closed DMs raise DeliveryForbidden."""
        try:
            user = await self.client.fetch_user(int(chat_id))
            messages = pack_messages(reply)
            for index, message in enumerate(messages):
                view = build_view(reply, message.positions, last=index == len(messages) - 1)
                kwargs: dict[str, Any] = {"embeds": message.embeds}
                if view is not None:
                    kwargs["view"] = view
                await user.send(**kwargs)
        except discord.Forbidden as exc:
            raise DeliveryForbidden(exc.text or "Forbidden") from None


def permanent_failure(exc: BaseException) -> str | None:
    """Why a failed connection must not be retried (one line, naming what to fix), or None."""
    if isinstance(exc, discord.LoginFailure):
        return f"Discord rejected the token in {DISCORD_TOKEN_ENV} (revoked or mistyped)"
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return "Discord refused a privileged intent; enable it for this bot in the Developer Portal"
    if isinstance(exc, discord.ConnectionClosed) and exc.code in PERMANENT_CLOSE_CODES:
        if exc.code == 4004:
            return f"Discord rejected the token in {DISCORD_TOKEN_ENV} (revoked or mistyped)"
        return f"Discord closed the gateway with code {exc.code}"
    if isinstance(exc, ConfigError):
        return str(exc)
    return None


def is_transient(exc: BaseException) -> bool:
    """A network, gateway or server failure: reconnecting later can succeed."""
    if isinstance(exc, discord.HTTPException):
        return exc.status >= 500 or exc.status == 429
    return isinstance(
        exc, (OSError, aiohttp.ClientError, discord.GatewayNotFound, discord.ConnectionClosed)
    )


def _user_ref(interaction: discord.Interaction) -> UserRef:
    user_id = str(interaction.user.id)
    # Weekly DMs go to the user; Discord opens the DM channel from the user id.
    return UserRef(PLATFORM, user_id, user_id)
