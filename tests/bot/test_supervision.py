"""Each chat platform is supervised on its own: retries with backoff, permanent stops, isolation.

The supervisor is driven with recorded sleeps and a fixed clock (no waiting, no timing); the
adapters are the real python-telegram-bot and discord.py ones with fakes at the network edge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import discord
import pytest
from telegram.error import NetworkError

from bot import discord_app, telegram_app
from bot.app import NoPlatformLeft, Runtime, run_chat_platforms
from bot.supervisor import Backoff, Platform, supervise_all, supervise_platform
from inference.errors import ConfigError
from tests.bot.test_telegram import TOKEN, FakeBotApi, message_update

NO_JITTER = Backoff(first_s=1.0, max_s=4.0, jitter=0.0, healthy_s=100.0)
# Hang guard only: every wait below ends on an event long before this.
GUARD_S = 60.0


class Sleeps:
    """Records the supervisor's delays instead of waiting; a runaway retry loop fails the test."""

    def __init__(self, limit: int = 50) -> None:
        self.delays: list[float] = []
        self.limit = limit

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if len(self.delays) > self.limit:
            raise AssertionError(f"still retrying after {self.limit} failures")
        await asyncio.sleep(0)  # let the test's other tasks run, as a real sleep would


def permanent_if_config(exc: BaseException) -> str | None:
    return str(exc) if isinstance(exc, ConfigError) else None


def transient_if_os(exc: BaseException) -> bool:
    return isinstance(exc, OSError)


def scripted(*outcomes: BaseException | None) -> tuple[Callable[[], Any], list[int]]:
    """A connect that raises the given exceptions in turn (None: returns normally)."""
    calls: list[int] = []

    async def connect() -> None:
        calls.append(len(calls) + 1)
        outcome = outcomes[len(calls) - 1]
        if outcome is not None:
            raise outcome

    return connect, calls


async def test_transient_failures_are_retried_with_doubling_delays_up_to_the_cap() -> None:
    connect, calls = scripted(*[OSError("network unreachable")] * 4, ConfigError("bad token"))
    sleeps = Sleeps()
    platform = Platform("chat", connect, permanent_if_config, transient_if_os)
    reason = await supervise_platform(platform, backoff=NO_JITTER, sleep=sleeps, clock=lambda: 0.0)
    assert calls == [1, 2, 3, 4, 5]
    assert sleeps.delays == [1.0, 2.0, 4.0, 4.0]
    assert reason == "chat: bad token"


async def test_a_healthy_connection_starts_the_delays_over() -> None:
    now = [0.0]

    async def connect() -> None:
        now[0] += 1000.0  # each connection held longer than healthy_s before failing
        if now[0] > 3000.0:
            raise ConfigError("done")
        raise OSError("reset by peer")

    sleeps = Sleeps()
    platform = Platform("chat", connect, permanent_if_config, transient_if_os)
    await supervise_platform(platform, backoff=NO_JITTER, sleep=sleeps, clock=lambda: now[0])
    assert sleeps.delays == [1.0, 1.0, 1.0]


async def test_jitter_stays_within_its_fraction() -> None:
    connect, _ = scripted(*[OSError("x")] * 30, ConfigError("stop"))
    sleeps = Sleeps()
    policy = Backoff(first_s=1.0, max_s=1.0, jitter=0.2)
    platform = Platform("chat", connect, permanent_if_config, transient_if_os)
    await supervise_platform(platform, backoff=policy, sleep=sleeps, clock=lambda: 0.0)
    assert len(sleeps.delays) == 30 and all(0.8 <= d <= 1.2 for d in sleeps.delays)


async def test_failures_are_logged_transient_in_one_line_unexpected_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect, _ = scripted(OSError("dns failure"), RuntimeError("a bug"), ConfigError("rejected"))
    platform = Platform("chat", connect, permanent_if_config, transient_if_os)
    with caplog.at_level(logging.INFO, logger="bot.supervisor"):
        await supervise_platform(platform, backoff=NO_JITTER, sleep=Sleeps(), clock=lambda: 0.0)
    transient, unexpected, permanent = caplog.records
    assert transient.levelno == logging.WARNING and transient.exc_info is None
    assert "OSError: dns failure" in transient.getMessage()
    assert unexpected.levelno == logging.ERROR and unexpected.exc_info is not None
    assert permanent.levelno == logging.ERROR
    assert permanent.getMessage() == "chat stopped: rejected"


async def test_a_platform_that_returns_is_gone() -> None:
    connect, calls = scripted(None)
    platform = Platform("chat", connect, permanent_if_config, transient_if_os)
    reason = await supervise_platform(platform, backoff=NO_JITTER, sleep=Sleeps())
    assert calls == [1] and reason == "chat: shut down on its own"


async def test_one_platform_stopping_leaves_the_other_serving() -> None:
    served: list[str] = []
    requests: asyncio.Queue[str] = asyncio.Queue()
    failed = asyncio.Event()

    async def failing() -> None:
        failed.set()
        raise ConfigError("token rejected")

    async def serving() -> None:
        while (item := await requests.get()) != "quit":
            served.append(item)

    task = asyncio.create_task(
        supervise_all(
            [
                Platform("first", failing, permanent_if_config, transient_if_os),
                Platform("second", serving, permanent_if_config, transient_if_os),
            ],
            backoff=NO_JITTER,
            sleep=Sleeps(),
        )
    )
    await requests.put("before")
    await asyncio.wait_for(failed.wait(), GUARD_S)
    await requests.put("after")
    await requests.put("quit")
    reasons = await asyncio.wait_for(task, GUARD_S)
    assert served == ["before", "after"]
    assert reasons == ["first: token rejected", "second: shut down on its own"]


async def test_no_platform_left_is_one_line_with_every_reason() -> None:
    async def rejected() -> None:
        raise ConfigError("token rejected")

    async def refused() -> None:
        raise ConfigError("intent refused")

    with pytest.raises(NoPlatformLeft) as caught:
        await run_chat_platforms(
            [
                Platform("telegram", rejected, permanent_if_config, transient_if_os),
                Platform("discord", refused, permanent_if_config, transient_if_os),
            ]
        )
    text = str(caught.value)
    assert "\n" not in text
    assert text == (
        "no chat platform is left running: telegram: token rejected; discord: intent refused"
    )


class PollingBotApi(FakeBotApi):
    """The fake Bot API with long polling: scripted failures, then updates, then a held poll."""

    def __init__(self, updates: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.fail: dict[str, int] = {}  # method -> how many calls fail with a network error
        self.updates = updates or []
        self.release_updates = asyncio.Event()
        self.polling = asyncio.Event()
        self.replied = asyncio.Event()

    async def do_request(self, url: str, method: str, request_data: Any = None, **kw: Any) -> Any:
        name = url.rsplit("/", 1)[1]
        if self.fail.get(name, 0) > 0:
            self.fail[name] -= 1
            self.calls.append((name, {}))
            raise NetworkError(f"connect failed for {url}")
        if name == "deleteWebhook":
            self.calls.append((name, {}))
            return self._ok(True)
        if name == "getUpdates":
            params = dict(request_data.parameters) if request_data else {}
            self.calls.append((name, params))
            if not params.get("timeout"):
                return self._ok([])  # the last call on stopping, which marks updates as read
            self.polling.set()
            await self.release_updates.wait()
            if self.updates:
                batch, self.updates = self.updates, []
                return self._ok(batch)
            await asyncio.Event().wait()  # a long poll that never ends (until cancelled)
        answer = await super().do_request(url, method, request_data, **kw)
        if name == "sendMessage":
            self.replied.set()
        return answer


def telegram_platform(front: telegram_app.TelegramFrontEnd) -> Platform:
    return Platform(
        "telegram", front.run_forever, telegram_app.permanent_failure, telegram_app.is_transient
    )


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_telegram_reconnects_after_network_failures_at_each_start_step(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    api = PollingBotApi()
    api.fail = {"getMe": 1, "deleteWebhook": 1}
    front = telegram_app.TelegramFrontEnd(runtime.service, TOKEN, runtime.settings, request=api)
    sleeps = Sleeps()
    with caplog.at_level(logging.INFO, logger="bot.supervisor"):
        task = asyncio.create_task(
            supervise_platform(telegram_platform(front), backoff=NO_JITTER, sleep=sleeps)
        )
        await asyncio.wait_for(api.polling.wait(), GUARD_S)
        await stop(task)
    names = [name for name, _ in api.calls]
    # A failed getMe, then a failed webhook bootstrap after start: each undone cleanly and retried.
    # The command menu, sent once, is not sent again on the retry.
    assert names[:7] == [
        "getMe",
        "getMe",
        "setMyCommands",
        "deleteWebhook",
        "getMe",
        "deleteWebhook",
        "getUpdates",
    ]
    assert sleeps.delays == [1.0, 2.0]
    ours = [r for r in caplog.records if r.name == "bot.supervisor"]
    assert [r.levelno for r in ours] == [logging.WARNING, logging.WARNING]
    assert all("NetworkError" in r.getMessage() for r in ours)
    assert not front.app.running


async def test_telegram_keeps_serving_when_discord_is_rejected(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = PollingBotApi(updates=[message_update(1, "/help")])
    telegram = telegram_app.TelegramFrontEnd(runtime.service, TOKEN, runtime.settings, request=api)
    discord_front = discord_app.DiscordFrontEnd(runtime.service, runtime.settings)

    async def rejected_login(token: str) -> dict[str, Any]:
        raise discord.LoginFailure("Improper token has been passed.")

    monkeypatch.setattr(discord_front.client.http, "static_login", rejected_login)

    async def connect_discord() -> None:
        try:
            await discord_front.run_forever("discord-token")
        finally:
            api.release_updates.set()  # Telegram's update arrives only once Discord is down

    platforms = [
        telegram_platform(telegram),
        Platform(
            "discord", connect_discord, discord_app.permanent_failure, discord_app.is_transient
        ),
    ]
    senders: dict[str, Any] = {"telegram": telegram, "discord": discord_front}
    with caplog.at_level(logging.INFO, logger="bot.supervisor"):
        task = asyncio.create_task(
            run_chat_platforms(platforms, senders=senders, backoff=NO_JITTER)
        )
        await asyncio.wait_for(api.replied.wait(), GUARD_S)
        assert not task.done()
        # Weekly DMs for Discord users wait for a process whose Discord runs.
        assert list(senders) == ["telegram"]
        assert telegram.ready  # polling: its weekly DMs go out
        await stop(task)
    assert "/recommend" in api.sent()[-1]["text"]  # the /help reply
    stopped = [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.supervisor" and r.levelno == logging.ERROR
    ]
    assert stopped == [
        "discord stopped: Discord rejected the token in ANIMEREC_DISCORD_TOKEN (revoked or mistyped)"
    ]
