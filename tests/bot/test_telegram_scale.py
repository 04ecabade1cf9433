"""Telegram at scale: the rate limiter, the command menu, and webhook mode with its secret token.

The Bot API is the recording `BaseRequest` fake of test_telegram; webhook updates are real HTTP
POSTs over loopback to PTB's own webhook server (tornado), bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram.ext import AIORateLimiter

from bot import telegram_app
from bot.app import (
    TELEGRAM_WEBHOOK_SECRET_ENV,
    Runtime,
    environment_secrets,
    read_secrets,
)
from bot.parsing import COMMAND_NAMES
from bot.settings import BotSettings, TelegramSection, bot_settings
from bot.telegram_app import MENU_DESCRIPTIONS, TelegramFrontEnd, menu_commands
from inference.catalog import Catalog
from inference.engine import Engine
from inference.errors import ConfigError
from tests.bot.test_telegram import BOT_USER, TOKEN, FakeBotApi, message_update

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq3-webhook_secret-0123456789abcdefXYZ"
PUBLIC_URL = "https://bot.example.org/tg-updates"
# Hang guard only: every wait below ends on an event or a connection long before this.
GUARD_S = 60.0


@pytest.fixture(scope="session")
def engine(catalog: Catalog) -> Engine:
    """/help is the only command answered here; the lightest engine will do."""
    return Engine.without_model(catalog)


class RepliesBotApi(FakeBotApi):
    """The fake Bot API, with an event set on each message the bot sends."""

    def __init__(self) -> None:
        super().__init__()
        self.replied = asyncio.Event()

    async def do_request(self, url: str, method: str, request_data: Any = None, **kw: Any) -> Any:
        answer = await super().do_request(url, method, request_data, **kw)
        if url.endswith("/sendMessage"):
            self.replied.set()
        return answer


def calls_named(api: FakeBotApi, name: str) -> list[dict[str, Any]]:
    return [params for n, params in api.calls if n == name]


def menu_sent(params: dict[str, Any]) -> list[tuple[str, str]]:
    commands = params["commands"]
    commands = json.loads(commands) if isinstance(commands, str) else commands
    return [(c["command"], c["description"]) for c in commands]


@pytest.fixture
async def telegram(runtime: Runtime) -> Any:
    api = FakeBotApi()
    front = TelegramFrontEnd(runtime.service, TOKEN, runtime.settings, request=api)
    await front.app.initialize()
    try:
        yield front, api
    finally:
        await front.app.shutdown()


# ----- the rate limiter ---------------------------------------------------------------------------


async def test_every_bot_api_call_goes_through_the_rate_limiter(
    telegram: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    front, api = telegram
    limiter = front.app.bot.rate_limiter
    assert isinstance(limiter, AIORateLimiter)
    passed: list[str] = []
    original = AIORateLimiter.process_request

    async def counting(self: AIORateLimiter, *args: Any, **kwargs: Any) -> Any:
        passed.append(kwargs["endpoint"])
        return await original(self, *args, **kwargs)

    # The class is slotted: its method is wrapped where it is defined.
    monkeypatch.setattr(AIORateLimiter, "process_request", counting)
    await front.app.process_update(
        telegram_app.Update.de_json(message_update(1, "/help"), front.app.bot)
    )
    assert passed == ["sendMessage"] and len(api.sent()) == 1


# ----- the command menu ---------------------------------------------------------------------------


async def test_the_menu_is_the_parsers_commands_each_described_and_in_the_help(
    telegram: Any, runtime: Runtime
) -> None:
    front, api = telegram
    await front.register_menu()
    (params,) = calls_named(api, "setMyCommands")
    sent = menu_sent(params)
    assert [name for name, _ in sent] == list(COMMAND_NAMES)
    assert set(MENU_DESCRIPTIONS) == set(COMMAND_NAMES)  # a new command needs its menu line
    assert all(1 <= len(description) <= 256 for _, description in sent)
    help_text = "\n".join(runtime.service.help().lines)
    # Every other command the menu offers is explained in /help (which need not list itself).
    missing = [name for name, _ in sent if name != "help" and f"/{name}" not in help_text]
    assert not missing, f"in the menu but not in /help: {missing}"


async def test_the_menu_is_sent_only_when_it_changed(
    telegram: Any, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    front, api = telegram
    await front.register_menu()
    await front.register_menu()
    assert len(calls_named(api, "setMyCommands")) == 1
    # A restart with the same store and the same commands sends nothing.
    second = FakeBotApi()
    restarted = TelegramFrontEnd(runtime.service, TOKEN, runtime.settings, request=second)
    await restarted.app.initialize()
    try:
        await restarted.register_menu()
        assert calls_named(second, "setMyCommands") == []
        monkeypatch.setitem(MENU_DESCRIPTIONS, "more", "Five more picks")
        await restarted.register_menu()
        (params,) = calls_named(second, "setMyCommands")
        assert ("more", "Five more picks") in menu_sent(params)
    finally:
        await restarted.app.shutdown()


async def test_a_failed_menu_is_logged_and_sent_on_the_next_connection(
    telegram: Any, caplog: pytest.LogCaptureFixture
) -> None:
    front, api = telegram
    api.unreachable.add("setMyCommands")
    with caplog.at_level(logging.WARNING, logger="bot.telegram_app"):
        await front.register_menu()  # does not raise: the commands work without a menu
    (record,) = caplog.records
    # Formatted as a handler would: redaction may have moved the traceback into exc_text.
    text = logging.Formatter("%(message)s").format(record)
    assert "command menu" in text and "Traceback" in text and "NetworkError" in text
    api.unreachable.clear()
    await front.register_menu()
    assert len(calls_named(api, "setMyCommands")) == 1


def test_menu_commands_follow_the_parser_order() -> None:
    assert [c.command for c in menu_commands()] == list(COMMAND_NAMES)


# ----- settings and the secret --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"mode": "webhook"}, r'^\[telegram\] mode = "webhook" needs public_url'),
        (
            {"mode": "webhook", "public_url": "http://bot.example.org/tg"},
            r"^\[telegram\] public_url must start with https://",
        ),
        ({"mode": "hook"}, r'^\[telegram\] mode must be one of "polling", "webhook"'),
        ({"port": 0}, r"^\[telegram\] port must be from 1 to 65535, not 0$"),
        ({"port": 70000}, r"^\[telegram\] port must be from 1 to 65535, not 70000$"),
        (
            {"mode": "webhook", "public_url": PUBLIC_URL, "listen": ""},
            r'^\[telegram\] mode = "webhook" needs listen',
        ),
    ],
)
def test_bad_webhook_settings_are_one_clear_error(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bot_settings({"telegram": table})


def webhook_settings(**overrides: Any) -> BotSettings:
    table = {"enabled": True, "mode": "webhook", "public_url": PUBLIC_URL, **overrides}
    return bot_settings({"telegram": table})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", r"is enabled but ANIMEREC_TELEGRAM_WEBHOOK_SECRET is not set in the environment$"),
        ("short-secret", r"must be 16 to 256 characters long; make one with python -c"),
        ("x" * 257, r"must be 16 to 256 characters long"),
        ("has spaces and é in it 0123456789", r"may hold only A-Z, a-z, 0-9, _ and -;"),
    ],
)
def test_webhook_mode_refuses_a_missing_or_weak_secret(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("ANIMEREC_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv(TELEGRAM_WEBHOOK_SECRET_ENV, value)
    with pytest.raises(ConfigError, match=message) as caught:
        read_secrets(webhook_settings())
    assert "\n" not in str(caught.value)
    if value:
        assert value not in str(caught.value)


def test_the_webhook_secret_is_read_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIMEREC_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv(TELEGRAM_WEBHOOK_SECRET_ENV, SECRET)
    secrets = read_secrets(webhook_settings())
    assert secrets.telegram_webhook_secret == SECRET
    assert SECRET in secrets.values() and SECRET in environment_secrets()
    polling = bot_settings({"telegram": {"enabled": True}})
    assert read_secrets(polling).telegram_webhook_secret is None


async def test_the_front_end_refuses_webhook_mode_without_a_secret(runtime: Runtime) -> None:
    settings = dataclasses.replace(runtime.settings, telegram=webhook_settings().telegram)
    with pytest.raises(ConfigError, match="secret"):
        TelegramFrontEnd(runtime.service, TOKEN, settings, request=FakeBotApi())


def test_webhook_mode_without_a_secret_stops_start_up_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[telegram]\nenabled = true\nmode = "webhook"\npublic_url = "{PUBLIC_URL}"\n'
        f'[storage]\npath = "{tmp_path / "bot.sqlite3"}"\n'
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANIMEREC_")}
    done = subprocess.run(
        [sys.executable, "-m", "bot"],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, "ANIMEREC_CONFIG": str(config), "ANIMEREC_TELEGRAM_TOKEN": TOKEN},
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        'error: Telegram webhook mode ([telegram] mode = "webhook") is enabled but '
        "ANIMEREC_TELEGRAM_WEBHOOK_SECRET is not set in the environment"
    ]


# ----- webhook mode over loopback -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def post_when_listening(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """The first POST waits for the server to accept connections (it starts in the background)."""
    deadline = asyncio.get_running_loop().time() + GUARD_S
    while True:
        try:
            return await client.post(url, content=json.dumps(body), headers=headers)
        except httpx.ConnectError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_webhook_updates_need_the_secret_token(runtime: Runtime) -> None:
    port = free_port()
    section = TelegramSection(
        enabled=True,
        mode="webhook",
        listen="127.0.0.1",
        port=port,
        url_path="tg-updates",
        public_url=PUBLIC_URL,
    )
    settings = dataclasses.replace(runtime.settings, telegram=section)
    api = RepliesBotApi()
    front = TelegramFrontEnd(runtime.service, TOKEN, settings, request=api, webhook_secret=SECRET)
    task = asyncio.create_task(front.run_forever())
    url = f"http://127.0.0.1:{port}/tg-updates"
    json_type = {"Content-Type": "application/json"}
    try:
        async with httpx.AsyncClient(timeout=GUARD_S) as client:
            missing = await post_when_listening(client, url, message_update(1, "/help"), json_type)
            wrong = await client.post(
                url,
                content=json.dumps(message_update(2, "/help")),
                headers={**json_type, "X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
            )
            assert (missing.status_code, wrong.status_code) == (403, 403)
            assert api.sent() == []
            right = await client.post(
                url,
                content=json.dumps(message_update(3, "/help")),
                headers={**json_type, "X-Telegram-Bot-Api-Secret-Token": SECRET},
            )
            assert right.status_code == 200
            await asyncio.wait_for(api.replied.wait(), GUARD_S)
        assert front.ready
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (reply,) = api.sent()
    assert "/recommend" in reply["text"] and int(reply["chat_id"]) == 42
    # Telegram was told where to post and which secret to send; the menu went first.
    (webhook,) = calls_named(api, "setWebhook")
    assert (webhook["url"], webhook["secret_token"]) == (PUBLIC_URL, SECRET)
    names = [name for name, _ in api.calls]
    assert names.index("getMe") < names.index("setMyCommands") < names.index("setWebhook")
    assert "getUpdates" not in names
    assert not front.app.running


def test_the_fake_bot_is_the_one_the_webhook_serves() -> None:
    # The menu hash key uses the bot id from getMe: it must be the fake bot's.
    assert BOT_USER["id"] == int(TOKEN.split(":")[0])
