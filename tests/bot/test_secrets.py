"""No secret in any log record across a run (DESIGN §7)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from telegram import Update

from bot.app import Runtime
from bot.logs import REDACTED, install_redaction
from bot.scheduler import WeeklyDeliveries
from bot.telegram_app import TelegramFrontEnd
from tests.bot.conftest import MAL_CLIENT_ID
from tests.bot.test_telegram import TOKEN, FakeBotApi, message_update

DISCORD_TOKEN = "discord-token-MTIzNDU2Nzg5.secret"


def record_text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text


async def test_a_run_logs_no_secret(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    install_redaction([TOKEN, MAL_CLIENT_ID, DISCORD_TOKEN])  # as bot.app.main does
    caplog.set_level(logging.DEBUG)
    api = FakeBotApi()
    api.blocked.add(1)
    front = TelegramFrontEnd(runtime.service, TOKEN, runtime.settings, request=api)
    await front.app.initialize()
    try:
        for n, line in enumerate(
            ["/recommend malfan --source mal", "/recommend secretive --source mal", "/link malfan"]
        ):
            await front.app.process_update(
                Update.de_json(message_update(n + 1, line), front.app.bot)
            )
        await runtime.storage.link("telegram", "1", "mal", "malfan")
        await runtime.storage.subscribe("telegram", "1", "1", "monday", 0, "UTC", now=0.0)
        deliveries = WeeklyDeliveries(
            runtime.storage, runtime.service, {"telegram": front}, runtime.limits
        )
        await deliveries.run_once()
    finally:
        await front.app.shutdown()
    assert len(caplog.records) > 5  # the run did log
    for record in caplog.records:
        text = record_text(record)
        for secret in (TOKEN, MAL_CLIENT_ID, DISCORD_TOKEN):
            assert secret not in text, record.name


def test_redaction_masks_messages_args_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-value-for-redaction"
    install_redaction([secret])
    log = logging.getLogger("tests.redaction")
    with caplog.at_level(logging.INFO):
        log.info("token is %s", secret)
        try:
            raise RuntimeError(f"bad url https://x/bot{secret}/getMe")
        except RuntimeError:
            log.exception("failed")
    texts: list[Any] = [record_text(r) for r in caplog.records]
    assert all(secret not in t for t in texts)
    assert REDACTED in texts[0]
