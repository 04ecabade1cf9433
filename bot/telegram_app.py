"""The Telegram front end (python-telegram-bot 21/22): a thin adapter over the command layer.

Replies are HTML (every user or catalogue string escaped) in messages of at most 4096 characters,
split on line boundaries; buttons are inline keyboards whose callback data is small ("seen:5114").
A MyAnimeList export sent as a document (caption optional, e.g. "/recommend --count 5") is read and
recommended for. A DM the user has blocked raises Forbidden, which pauses their subscription.

Updates arrive by long polling, or in webhook mode by POSTs to PTB's web server, which refuses
(403) any request without the secret token header Telegram was given with the webhook. Every call
to the Bot API goes through PTB's `AIORateLimiter` (about 30 messages a second overall, 20 a minute
per group). The command menu (`set_my_commands`) is the parser's command list; it is sent only when
it differs from the one last sent for this bot (a hash in the store).

`run_forever` is one connection attempt for the supervisor in `bot.supervisor`: a rejected token is
permanent (`permanent_failure` says why, naming the variable), a network failure is retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import logging
from collections.abc import Callable

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest

from bot.commands import Attachment, CommandService, UserRef
from bot.parsing import (
    COMMAND_NAMES,
    HELP_POINTER,
    STALE_BUTTON,
    RecommendCommand,
    button_payload_command,
    parse_command,
)
from bot.replies import Reply, detail_lines
from bot.scheduler import DeliveryForbidden, SendRateLimited
from bot.settings import BotSettings
from bot.storage import Storage
from inference.config import TELEGRAM_TOKEN_ENV
from inference.errors import ConfigError

log = logging.getLogger(__name__)

PLATFORM = "telegram"
MESSAGE_LIMIT = 4096
# One raw string (an error echo, a title) is capped before escaping, so no cut splits an entity.
TEXT_PIECE_LIMIT = 600  # escaped, at most 6 times longer: still under one message
# The Bot API lets bots download files up to 20 MB.
DOWNLOAD_LIMIT = 20 * 1024 * 1024
# A call answered 429 (RetryAfter) waits as long as Telegram asks and is tried again this often
# before the error reaches the caller.
RATE_LIMIT_RETRIES = 2

# The command menu's line for each command the parser knows (bot.parsing.COMMAND_NAMES); /start
# stays out of the menu, as Telegram clients show it on their own.
MENU_DESCRIPTIONS = {
    "recommend": "Anime picks from your list: /recommend NAME",
    "similar": "Titles like one you name: /similar TITLE",
    "link": "Remember your list: /link NAME",
    "unlink": "Forget your linked list",
    "subscribe": "Weekly picks by DM: /subscribe [WEEKDAY] [HOUR] [TIME ZONE]",
    "unsubscribe": "Stop the weekly picks",
    "help": "Commands, and which model answers",
    "more": "More picks like the last ones",
    "seen": "Mark pick N as seen: /seen N",
    "notinterested": "Hide pick N from now on: /notinterested N",
}


def menu_commands() -> list[BotCommand]:
    """The menu, in the parser's order; a command added there without a description here still
    shows, with its name."""
    return [BotCommand(name, MENU_DESCRIPTIONS.get(name, f"/{name}")) for name in COMMAND_NAMES]


def menu_hash(commands: list[BotCommand]) -> str:
    text = json.dumps([[c.command, c.description] for c in commands], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def esc(text: str) -> str:
    if len(text) > TEXT_PIECE_LIMIT:
        text = text[: TEXT_PIECE_LIMIT - 1] + "…"
    return html.escape(text, quote=True)


def reply_blocks(reply: Reply) -> list[str]:
    """The reply as HTML blocks (a block is never split across two messages unless it must be)."""
    blocks: list[str] = []
    if reply.heading:
        blocks.append(f"<b>{esc(reply.heading)}</b>")
    blocks.extend(esc(line) for line in reply.lines)
    for position, rec in enumerate(reply.cards, start=1):
        lines = [f'<b>{position}. <a href="{esc(rec.url)}">{esc(rec.title)}</a></b>']
        lines.extend(esc(line) for line in detail_lines(rec))
        lines.extend(f"<i>{esc(why)}</i>" for why in rec.why)
        blocks.append("\n".join(lines))
    blocks.extend(f"<i>{esc(note)}</i>" for note in reply.notes)
    return blocks


def split_messages(blocks: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Join blocks with blank lines into messages of at most `limit` characters."""
    pieces: list[str] = []
    for block in blocks:
        if len(block) <= limit:
            pieces.append(block)
            continue
        # Only a block of many lines can be this long; its lines are each short and well-formed.
        pieces.extend(line[:limit] for line in block.split("\n"))
    messages: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}\n\n{piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
        else:
            messages.append(current)
            current = piece
    if current:
        messages.append(current)
    return messages or ["…"]


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.cards:
        return None
    rows = [
        [
            InlineKeyboardButton(f"{b.label} #{position}", callback_data=b.payload())
            for b in reply.card_buttons(position)
        ]
        for position in range(1, len(reply.cards) + 1)
    ]
    if reply.buttons:
        rows.append(
            [InlineKeyboardButton(b.label, callback_data=b.payload()) for b in reply.buttons]
        )
    return InlineKeyboardMarkup(rows)


class TelegramFrontEnd:
    def __init__(
        self,
        service: CommandService,
        token: str,
        settings: BotSettings,
        *,
        request: BaseRequest | None = None,
        base_url: str | None = None,
        webhook_secret: str | None = None,
        storage: Storage | None = None,
    ) -> None:
        """`base_url` replaces https://api.telegram.org/bot (a local Bot API server); the token is
        appended to it. `webhook_secret` is required in webhook mode. `storage` keeps the hash of
        the command menu last sent (the command layer's store by default)."""
        if settings.telegram.mode == "webhook" and not webhook_secret:
            raise ConfigError("Telegram webhook mode needs a secret token")
        self.service = service
        self.settings = settings
        self.webhook_secret = webhook_secret
        # Weekly DMs refused part way: chat -> (its messages, how many went out). One per chat.
        self._delivered_parts: dict[int, tuple[list[str], int]] = {}
        self.storage = storage if storage is not None else service.storage
        builder = (
            Application.builder()
            .token(token)
            .concurrent_updates(True)
            .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
        )
        if base_url is not None:
            builder = builder.base_url(base_url)
        if request is not None:
            builder = builder.request(request).get_updates_request(request)
        self.app = builder.build()
        self.app.add_handler(CommandHandler(["start", *COMMAND_NAMES], self._on_command))
        self.app.add_handler(CallbackQueryHandler(self._on_button))
        self.app.add_handler(MessageHandler(filters.Document.ALL, self._on_document))
        self.app.add_handler(
            MessageHandler(filters.ChatType.PRIVATE & filters.TEXT, self._on_stray_text)
        )
        self.app.add_error_handler(self._on_error)

    async def run_forever(self) -> None:
        """Connect (checking the token), send the command menu if it changed, then poll or serve
        the webhook until cancelled; a failure raises.

        Each step is undone only once it has succeeded: stopping what never started would raise
        a RuntimeError that hides the real failure. The Application can be entered again after.
        """
        async with self.app:
            await self.register_menu()
            await self.app.start()
            try:
                assert self.app.updater is not None
                await self._start_updates()
                try:
                    await asyncio.Event().wait()
                finally:
                    await self.app.updater.stop()
            finally:
                await self.app.stop()

    async def _start_updates(self) -> None:
        updater = self.app.updater
        assert updater is not None
        section = self.settings.telegram
        if section.mode != "webhook":
            # Also removes a webhook left from webhook mode: Telegram refuses polling while set.
            await updater.start_polling()
            return
        # Sets the webhook (URL and secret) with Telegram, then listens; PTB answers 403 to any
        # POST whose X-Telegram-Bot-Api-Secret-Token header is missing or wrong.
        await updater.start_webhook(
            listen=section.listen,
            port=section.port,
            url_path=section.url_path,
            webhook_url=section.public_url,
            secret_token=self.webhook_secret,
        )
        log.info("telegram: webhook listening on %s:%d", section.listen, section.port)

    async def register_menu(self) -> None:
        """Send the command menu when it differs from the last one sent for this bot.

        A failure is logged, not raised: the commands work without the menu, and the next
        connection tries again.
        """
        commands = menu_commands()
        digest = menu_hash(commands)
        key = f"telegram:commands:{self.app.bot.id}"
        if await self.storage.meta(key) == digest:
            return
        try:
            await self.app.bot.set_my_commands(commands)
        except TelegramError as exc:
            log.warning("telegram: could not set the command menu", exc_info=exc)
            return
        await self.storage.set_meta(key, digest)
        log.info("telegram: command menu set (%d commands)", len(commands))

    # ----- incoming -------------------------------------------------------------------------

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = _user_ref(update)
        if message is None or user is None or message.text is None:
            return
        reply = await self.service.handle_line(user, message.text)
        await self._answer(message.chat_id, reply)

    async def _on_stray_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is not None:
            await self._answer(message.chat_id, Reply.failure(HELP_POINTER))

    async def _on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = _user_ref(update)
        if message is None or user is None or message.document is None:
            return
        caption = (message.caption or "").strip() or "/recommend"
        try:
            command = parse_command(caption)
        except Exception:
            command = RecommendCommand()
        if not isinstance(command, RecommendCommand):
            await self._answer(
                message.chat_id, Reply.failure("Send a list export with /recommend.")
            )
            return
        document = message.document
        limit = min(self.settings.bot.max_attachment_bytes, DOWNLOAD_LIMIT)
        if document.file_size is not None and document.file_size > limit:
            await self._answer(
                message.chat_id,
                Reply.failure(
                    f"That file is larger than {limit // 2**20} MB; send your MyAnimeList export (.xml or .xml.gz)."
                ),
            )
            return
        try:
            file = await document.get_file()
            data = bytes(await file.download_as_bytearray())
        except TelegramError as exc:
            # File URLs carry the token; the record factory of inference.redaction masks it.
            log.warning("telegram: could not download a document", exc_info=exc)
            await self._answer(
                message.chat_id,
                Reply.failure("I could not download that file; please send it again."),
            )
            return
        attachment = Attachment(document.file_name or "export.xml", data)
        reply = await self.service.execute(user, command, attachment)
        await self._answer(message.chat_id, reply)

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        user = _user_ref(update)
        if query is None or user is None:
            return
        await query.answer()
        command = button_payload_command(query.data or "")
        if command is None:  # forged, or from an older version of the buttons
            reply = Reply.failure(STALE_BUTTON)
        else:
            reply = await self.service.execute(user, command)
        chat = update.effective_chat
        await self._answer(chat.id if chat is not None else int(user.chat_id), reply)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # The command layer never raises; this is a Telegram failure (network, a refused send).
        log.warning("telegram: update failed", exc_info=context.error)

    # ----- outgoing -------------------------------------------------------------------------

    async def _answer(self, chat_id: int, reply: Reply) -> None:
        await self._send_messages(chat_id, split_messages(reply_blocks(reply)), keyboard(reply))

    async def _send_messages(
        self,
        chat_id: int,
        messages: list[str],
        markup: InlineKeyboardMarkup | None,
        *,
        start: int = 0,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        """Sends messages[start:], calling `on_sent(i)` after message i went out."""
        for index in range(start, len(messages)):
            last = index == len(messages) - 1
            await self.app.bot.send_message(
                chat_id=chat_id,
                text=messages[index],
                parse_mode=ParseMode.HTML,
                reply_markup=markup if last else None,
                disable_web_page_preview=True,
            )
            if on_sent is not None:
                on_sent(index)

    @property
    def ready(self) -> bool:
        """Connected and receiving updates: weekly DMs wait while the platform reconnects."""
        updater = self.app.updater
        return self.app.running and (updater is None or updater.running)

    async def send(self, chat_id: str, reply: Reply) -> None:
        """A weekly DM; a blocked bot or a never-started chat raises DeliveryForbidden, flood
        control SendRateLimited. A DM of several messages refused part way resumes after its last
        delivered message when the same reply is sent to the same chat again, so the scheduler's
        resend never repeats a message."""
        chat = int(chat_id)
        messages = split_messages(reply_blocks(reply))
        resume = self._delivered_parts.pop(chat, None)
        start = resume[1] if resume is not None and resume[0] == messages else 0

        def sent(index: int) -> None:
            nonlocal start
            start = index + 1

        try:
            await self._send_messages(chat, messages, keyboard(reply), start=start, on_sent=sent)
        except Forbidden as exc:
            raise DeliveryForbidden(exc.message) from None
        except RetryAfter as exc:
            if start > 0:
                self._delivered_parts[chat] = (messages, start)
            raise SendRateLimited(exc.retry_after) from None  # int or (PTB 23) timedelta


def permanent_failure(exc: BaseException) -> str | None:
    """Why a failed connection must not be retried (one line, naming what to fix), or None."""
    if isinstance(exc, InvalidToken):
        return (
            f"Telegram rejected the token in {TELEGRAM_TOKEN_ENV} (revoked or mistyped); "
            "set the token @BotFather gave"
        )
    if isinstance(exc, ConfigError):
        return str(exc)
    return None


def is_transient(exc: BaseException) -> bool:
    """A network failure or throttling: reconnecting later can succeed."""
    return isinstance(exc, (NetworkError, RetryAfter, OSError))


def _user_ref(update: Update) -> UserRef | None:
    user = update.effective_user
    if user is None:
        return None
    # A DM goes to the user's private chat, whose id is the user's id, wherever they asked from.
    return UserRef(PLATFORM, str(user.id), str(user.id))
