"""The Telegram adapter through python-telegram-bot with a fake Bot API at the network edge."""

from __future__ import annotations

import gzip
import html
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.error import InvalidToken, NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.app import Runtime
from bot.commands import Attachment
from bot.parsing import RecommendCommand
from bot.replies import Reply
from bot.scheduler import DeliveryForbidden
from bot.telegram_app import (
    MESSAGE_LIMIT,
    TelegramFrontEnd,
    is_transient,
    permanent_failure,
    reply_blocks,
    split_messages,
)
from inference.catalog import Catalog
from inference.engine import Engine
from inference.redaction import REDACTED, install_redaction
from tests.bot.conftest import CONSOLE_USER


@pytest.fixture(scope="session")
def engine(catalog: Catalog) -> Engine:
    """These tests check rendering (cover thumbnails, escaping of titles with markup characters),
    which needs the bot catalogue's titles and covers rather than the default bundle's."""
    return Engine.without_model(catalog)


TOKEN = "123456789:AAH-secret-telegram-token-value-xyz"
EXPORT = Path(__file__).resolve().parents[2] / "examples" / "example-export.xml"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "animerec", "username": "animerec_bot"}


class FakeBotApi(BaseRequest):
    """Answers like the Bot API and records every call (method name, parameters)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.files: dict[str, bytes] = {}
        self.blocked: set[int] = set()
        # Methods (and file downloads: "file") that fail as an unreachable network would.
        self.unreachable: set[str] = set()
        self._message_id = 100

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        name = "file" if "/file/bot" in url else url.rsplit("/", 1)[1]
        if name in self.unreachable:
            # As httpx reports it: the message carries the URL, and so the token.
            raise NetworkError(f"httpx.ConnectError: All connection attempts failed: {url}")
        if name == "file":
            return 200, self.files[url.rsplit("/", 1)[1]]
        params = dict(request_data.parameters) if request_data else {}
        self.calls.append((name, params))
        if name == "getMe":
            return self._ok(BOT_USER)
        if name == "sendMessage":
            chat_id = int(params["chat_id"])
            if chat_id in self.blocked:
                body = {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user",
                }
                return 403, json.dumps(body).encode()
            self._message_id += 1
            return self._ok(
                {
                    "message_id": self._message_id,
                    "date": 1_700_000_000,
                    "chat": {"id": chat_id, "type": "private"},
                    "text": params["text"],
                }
            )
        if name in ("answerCallbackQuery", "setMyCommands", "setWebhook", "deleteWebhook"):
            return self._ok(True)
        if name == "getFile":
            file_id = params["file_id"]
            return self._ok(
                {
                    "file_id": file_id,
                    "file_unique_id": "u" + file_id,
                    "file_path": f"documents/{file_id}",
                }
            )
        return 400, json.dumps({"ok": False, "error_code": 400, "description": "unknown"}).encode()

    @staticmethod
    def _ok(result: Any) -> tuple[int, bytes]:
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def sent(self) -> list[dict[str, Any]]:
        return [p for name, p in self.calls if name == "sendMessage"]


USER = {"id": 42, "is_bot": False, "first_name": "Ann <b>", "username": "ann"}
CHAT = {"id": 42, "type": "private", "first_name": "Ann"}


def message_update(update_id: int, text: str | None = None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": 1_700_000_000,
        "chat": CHAT,
        "from": USER,
    }
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            length = len(text.split(" ", 1)[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    message.update(extra)
    return {"update_id": update_id, "message": message}


@pytest.fixture
async def telegram(runtime: Runtime) -> Any:
    api = FakeBotApi()
    front = TelegramFrontEnd(runtime.service, TOKEN, runtime.settings, request=api)
    await front.app.initialize()
    try:
        yield front, api
    finally:
        await front.app.shutdown()


async def feed(front: TelegramFrontEnd, data: dict[str, Any]) -> None:
    await front.app.process_update(Update.de_json(data, front.app.bot))


def buttons_of(params: dict[str, Any]) -> list[str]:
    markup = params.get("reply_markup")
    if markup is None:
        return []
    markup = json.loads(markup) if isinstance(markup, str) else markup
    return [b["callback_data"] for row in markup["inline_keyboard"] for b in row]


async def test_recommend_answers_in_escaped_html_with_a_keyboard(telegram: Any) -> None:
    front, api = telegram
    await feed(front, message_update(1, "/recommend@animerec_bot malfan --count 3"))
    sent = api.sent()
    assert sent and all(p["parse_mode"] == "HTML" for p in sent)
    text = "\n".join(p["text"] for p in sent)
    # Catalogue titles contain "<" and "&": escaped, inside our own tags.
    assert "&lt;" in text and "&amp;" in text and "<Action>" not in text
    assert re.search(r'<b>1\. <a href="https://myanimelist\.net/anime/\d+">', text)
    data = buttons_of(sent[-1])
    assert "more" in data and "subscribe" in data
    assert sum(d.startswith("seen:") for d in data) == 3
    assert all(len(d.encode()) <= 64 for d in data)


async def test_buttons_store_feedback_and_give_more(telegram: Any, runtime: Runtime) -> None:
    front, api = telegram
    await feed(front, message_update(1, "/recommend malfan --count 3"))
    seen = next(d for d in buttons_of(api.sent()[-1]) if d.startswith("seen:"))
    mal_id = int(seen.split(":")[1])
    callback = {
        "update_id": 2,
        "callback_query": {
            "id": "cb1",
            "from": USER,
            "chat_instance": "ci",
            "data": seen,
            "message": {"message_id": 101, "date": 1_700_000_000, "chat": CHAT, "text": "x"},
        },
    }
    await feed(front, callback)
    assert ("answerCallbackQuery", {"callback_query_id": "cb1"}) in [
        (n, {k: v for k, v in p.items() if k == "callback_query_id"}) for n, p in api.calls
    ]
    assert await runtime.storage.feedback("telegram", "42") == {mal_id: "seen"}
    assert "Noted" in api.sent()[-1]["text"]


async def test_a_sent_export_document_is_read(telegram: Any) -> None:
    front, api = telegram
    api.files["doc1"] = gzip.compress(EXPORT.read_bytes())
    document = {
        "file_id": "doc1",
        "file_unique_id": "udoc1",
        "file_name": "animelist.xml.gz",
        "file_size": 900,
    }
    await feed(front, message_update(3, None, document=document, caption="/recommend --count 2"))
    text = api.sent()[-1]["text"]
    assert "<b>1. " in text and "<b>2. " in text and "<b>3. " not in text


async def test_stray_text_gets_the_help_pointer(telegram: Any) -> None:
    front, api = telegram
    await feed(front, message_update(4, "hello there"))
    assert "/help" in api.sent()[-1]["text"]


async def test_blocked_dm_raises_delivery_forbidden(telegram: Any) -> None:
    front, api = telegram
    api.blocked.add(77)
    with pytest.raises(DeliveryForbidden):
        await front.send("77", Reply.text("hi"))
    await front.send("78", Reply.text("hi & bye"))
    assert api.sent()[-1]["text"] == "hi &amp; bye"


async def test_long_replies_split_on_line_boundaries(runtime: Runtime) -> None:
    reply = await runtime.service.execute(
        CONSOLE_USER,
        RecommendCommand(count=25),
        Attachment("x.xml", EXPORT.read_bytes()),
    )
    for rec in reply.cards:
        rec.why.extend(["because " + "very long reason & more " * 20] * 3)
    blocks = reply_blocks(reply)
    messages = split_messages(blocks)
    assert len(messages) > 1
    assert all(len(m) <= MESSAGE_LIMIT for m in messages)
    assert "\n\n".join(messages) == "\n\n".join(blocks)  # nothing lost, no block cut
    huge = split_messages([html.escape("x" * 10_000)])
    assert all(len(m) <= MESSAGE_LIMIT for m in huge)


def logged_text(record: logging.LogRecord) -> str:
    return logging.Formatter("%(message)s").format(record)


async def test_a_failed_update_is_logged_with_its_traceback_and_no_token(
    telegram: Any, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction([TOKEN])  # as bot.app.main does
    front, api = telegram
    api.unreachable.add("sendMessage")
    with caplog.at_level(logging.WARNING, logger="bot.telegram_app"):
        await feed(front, message_update(5, "/help"))
    (record,) = caplog.records
    text = logged_text(record)
    assert "update failed" in text
    assert "Traceback" in text and "NetworkError: httpx.ConnectError" in text
    assert TOKEN not in text and REDACTED in text


async def test_a_failed_download_is_logged_with_its_traceback_and_no_token(
    telegram: Any, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction([TOKEN])
    front, api = telegram
    api.unreachable.add("file")
    document = {"file_id": "doc2", "file_unique_id": "udoc2", "file_name": "list.xml"}
    with caplog.at_level(logging.WARNING, logger="bot.telegram_app"):
        await feed(front, message_update(6, None, document=document))
    (record,) = caplog.records
    text = logged_text(record)
    assert "could not download" in text and "NetworkError" in text and "Traceback" in text
    assert TOKEN not in text
    assert "send it again" in api.sent()[-1]["text"]


def test_failures_are_classified_permanent_or_transient() -> None:
    rejected = permanent_failure(InvalidToken(f"The token `{TOKEN}` was rejected"))
    assert rejected is not None and "ANIMEREC_TELEGRAM_TOKEN" in rejected
    assert TOKEN not in rejected
    for retried in (NetworkError("Bad Gateway"), TimedOut(), OSError("unreachable")):
        assert permanent_failure(retried) is None and is_transient(retried)
    assert not is_transient(RuntimeError("a bug"))


@pytest.mark.parametrize("data", ["seen:²", "seen:٣", "not_interested:-1", "more:1", "zzz"])
async def test_a_forged_button_is_answered(telegram: Any, data: str) -> None:
    front, api = telegram
    press = {
        "update_id": 9,
        "callback_query": {
            "id": "cb9",
            "from": USER,
            "chat_instance": "ci",
            "data": data,
            "message": {"message_id": 101, "date": 1_700_000_000, "chat": CHAT, "text": "x"},
        },
    }
    await feed(front, press)
    assert api.sent() and "button" in api.sent()[-1]["text"]


async def test_not_ready_for_weekly_dms_until_polling(telegram: Any) -> None:
    front, _ = telegram
    assert not front.ready  # initialized, not started
    await front.app.start()
    try:
        assert not front.ready  # started, but not polling yet
    finally:
        await front.app.stop()
