"""Discord at scale: shards, and slash commands synced only when they changed.

discord.py's HTTP layer is faked at `HTTPClient.request` (every REST call passes through it) and
the shard launcher at `launch_shard` (which opens the gateway websocket); the command tree, its
payload and the store holding the synced hash are real.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.http import Route

from bot.app import Runtime
from bot.discord_app import DiscordFrontEnd, commands_hash, commands_meta_key
from bot.settings import BotSettings, DiscordSection, bot_settings
from inference.catalog import Catalog
from inference.engine import Engine
from inference.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
APP_ID = 424242
SLASH_COMMANDS = ["help", "link", "recommend", "similar", "subscribe", "unlink", "unsubscribe"]


@pytest.fixture(scope="session")
def engine(catalog: Catalog) -> Engine:
    """No test here recommends; the lightest engine will do."""
    return Engine.without_model(catalog)


class ServerErrorResponse:
    status = 503
    reason = "Service Unavailable"


class FakeDiscordRest:
    """Stands in for `HTTPClient.request`: records each call, answers like Discord."""

    def __init__(self, recommended_shards: int = 1) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.failures = 0  # how many calls fail with a 503 first
        self.recommended_shards = recommended_shards

    async def __call__(self, route: Route, **kwargs: Any) -> Any:
        path = route.url.removeprefix(Route.BASE)
        self.calls.append((route.method, path, kwargs.get("json")))
        if self.failures:
            self.failures -= 1
            raise discord.DiscordServerError(ServerErrorResponse(), "upstream")  # type: ignore[arg-type]
        if path == "/gateway/bot":
            return {
                "url": "wss://gateway.discord.gg",
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        if route.method == "PUT" and path.endswith("/commands"):
            return [
                {**command, "id": str(9000 + n), "application_id": str(APP_ID), "version": "1"}
                for n, command in enumerate(kwargs["json"])
            ]
        raise AssertionError(f"unexpected Discord call {route.method} {path}")

    def syncs(self) -> list[tuple[str, list[str]]]:
        """Each command upload: its path and the command names it carried."""
        return [
            (path, sorted(c["name"] for c in payload))
            for method, path, payload in self.calls
            if method == "PUT"
        ]


def front_end(runtime: Runtime, rest: FakeDiscordRest, **discord_settings: Any) -> DiscordFrontEnd:
    settings = dataclasses.replace(runtime.settings, discord=DiscordSection(**discord_settings))
    front = DiscordFrontEnd(runtime.service, settings, storage=runtime.storage)
    front.client.http.request = rest  # type: ignore[method-assign]
    # Set by login from the application's info; these tests start after it.
    front.client._connection.application_id = APP_ID
    return front


# ----- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"shard_ids": [0]}, r"^\[discord\] shard_ids needs shard_count"),
        (
            {"shard_count": 4, "shard_ids": [1, 4, 7]},
            r"^\[discord\] shard_ids must each be from 0 to 3 \(shard_count = 4\), not 4, 7$",
        ),
        ({"shard_count": 4, "shard_ids": [-1]}, r"must each be from 0 to 3 .*, not -1$"),
        (
            {"shard_count": 4, "shard_ids": [2, 0, 2]},
            r"^\[discord\] shard_ids lists shard 2 more than once$",
        ),
        ({"shard_count": -2}, r"^\[discord\] shard_count cannot be negative"),
        ({"dev_guild_id": -5}, r"^\[discord\] dev_guild_id must be a guild id"),
        ({"shard_ids": "0"}, r"^\[discord\] shard_ids must be a list of whole numbers"),
    ],
)
def test_bad_shard_settings_are_one_clear_error(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bot_settings({"discord": table})


def test_shard_settings_from_the_file() -> None:
    settings = bot_settings(
        {"discord": {"enabled": True, "shard_count": 8, "shard_ids": [4, 5, 6, 7]}}
    )
    assert settings.discord == DiscordSection(enabled=True, shard_count=8, shard_ids=(4, 5, 6, 7))
    assert not settings.discord.registers_commands
    assert bot_settings({}).discord == DiscordSection()
    assert DiscordSection().registers_commands
    assert DiscordSection(shard_count=2, shard_ids=(1, 0)).registers_commands


# ----- shards -------------------------------------------------------------------------------------


async def launched_shards(front: DiscordFrontEnd, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    launched: list[int] = []

    async def launch_shard(gateway: Any, shard_id: int, *, initial: bool = False) -> None:
        launched.append(shard_id)

    monkeypatch.setattr(front.client, "launch_shard", launch_shard)
    await front.client.launch_shards()
    return launched


async def test_a_shard_subset_runs_only_those_shards(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rest = FakeDiscordRest()
    front = front_end(runtime, rest, shard_count=4, shard_ids=(1, 3))
    assert isinstance(front.client, discord.AutoShardedClient)
    assert (front.client.shard_count, front.client.shard_ids) == (4, [1, 3])
    assert await launched_shards(front, monkeypatch) == [1, 3]
    assert rest.calls == []  # the count is configured: Discord is not asked


async def test_a_shard_count_runs_every_shard_in_one_process(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    front = front_end(runtime, FakeDiscordRest(), shard_count=3)
    assert isinstance(front.client, discord.AutoShardedClient)
    assert front.client.shard_ids is None
    assert await launched_shards(front, monkeypatch) == [0, 1, 2]


async def test_without_a_shard_count_discord_decides(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rest = FakeDiscordRest(recommended_shards=2)
    front = front_end(runtime, rest)
    assert isinstance(front.client, discord.AutoShardedClient)
    assert front.client.shard_count is None
    assert await launched_shards(front, monkeypatch) == [0, 1]
    assert [(m, p) for m, p, _ in rest.calls] == [("GET", "/gateway/bot")]


# ----- the command hash ---------------------------------------------------------------------------

HASH_SCRIPT = """
import types
from bot.discord_app import DiscordFrontEnd, commands_hash
from bot.settings import BotSettings
front = DiscordFrontEnd(types.SimpleNamespace(storage=None), BotSettings())
print(commands_hash(front.tree, None))
"""


def hash_in_a_new_process(seed: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", HASH_SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": seed},
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


async def test_the_command_hash_is_the_same_in_every_process(runtime: Runtime) -> None:
    here = commands_hash(front_end(runtime, FakeDiscordRest()).tree, None)
    assert len(here) == 64
    # Other string-hash seeds: set and dict orders differ, the digest must not.
    assert hash_in_a_new_process("1") == here == hash_in_a_new_process("2")


async def test_the_command_hash_changes_with_any_command_change(runtime: Runtime) -> None:
    front = front_end(runtime, FakeDiscordRest())
    tree = front.tree
    seen = {commands_hash(tree, None)}

    help_command = tree.get_command("help")
    assert isinstance(help_command, app_commands.Command)
    help_command.description = "Something else"
    seen.add(commands_hash(tree, None))

    recommend = tree.get_command("recommend")
    assert isinstance(recommend, app_commands.Command)
    recommend._params["count"].description = "how many"
    seen.add(commands_hash(tree, None))
    recommend._params["count"].max_value = 10
    seen.add(commands_hash(tree, None))
    recommend._params["username"].required = True
    seen.add(commands_hash(tree, None))

    tree.remove_command("unlink")
    seen.add(commands_hash(tree, None))

    @tree.command(name="ping", description="Pong")
    async def ping(interaction: discord.Interaction) -> None:
        pass

    seen.add(commands_hash(tree, None))
    assert len(seen) == 7


# ----- syncing ------------------------------------------------------------------------------------


async def test_commands_sync_once_and_a_restart_with_the_same_commands_skips_it(
    runtime: Runtime,
) -> None:
    rest = FakeDiscordRest()
    front = front_end(runtime, rest)
    await front.on_ready()
    assert rest.syncs() == [(f"/applications/{APP_ID}/commands", SLASH_COMMANDS)]
    key = commands_meta_key(APP_ID, None)
    assert await runtime.storage.meta(key) == commands_hash(front.tree, None)
    await front.on_ready()  # a reconnect's ready
    assert len(rest.syncs()) == 1

    restarted = FakeDiscordRest()
    await front_end(runtime, restarted).on_ready()
    assert restarted.calls == []


async def test_changed_commands_sync_again(runtime: Runtime) -> None:
    await front_end(runtime, FakeDiscordRest()).on_ready()
    rest = FakeDiscordRest()
    front = front_end(runtime, rest)
    command = front.tree.get_command("help")
    assert isinstance(command, app_commands.Command)
    command.description = "Commands, and which model answers (new wording)"
    await front.on_ready()
    assert rest.syncs() == [(f"/applications/{APP_ID}/commands", SLASH_COMMANDS)]
    (_, _, payload) = rest.calls[0]
    assert {c["name"]: c["description"] for c in payload}["help"] == command.description


async def test_another_application_syncs_its_own_commands(runtime: Runtime) -> None:
    await front_end(runtime, FakeDiscordRest()).on_ready()
    rest = FakeDiscordRest()
    front = front_end(runtime, rest)
    front.client._connection.application_id = APP_ID + 1  # a new bot token: a new application
    await front.on_ready()
    assert rest.syncs() == [(f"/applications/{APP_ID + 1}/commands", SLASH_COMMANDS)]


async def test_a_dev_guild_gets_the_commands_instead_of_everyone(runtime: Runtime) -> None:
    rest = FakeDiscordRest()
    front = front_end(runtime, rest, dev_guild_id=555)
    await front.on_ready()
    assert rest.syncs() == [(f"/applications/{APP_ID}/guilds/555/commands", SLASH_COMMANDS)]
    assert await runtime.storage.meta(commands_meta_key(APP_ID, None)) is None
    guild_hash = await runtime.storage.meta(commands_meta_key(APP_ID, 555))
    assert guild_hash == commands_hash(front.tree, discord.Object(id=555))

    again = FakeDiscordRest()
    await front_end(runtime, again, dev_guild_id=555).on_ready()
    assert again.calls == []
    # Leaving development: the global scope has its own hash, so the global sync happens.
    released = FakeDiscordRest()
    await front_end(runtime, released).on_ready()
    assert released.syncs() == [(f"/applications/{APP_ID}/commands", SLASH_COMMANDS)]


async def test_only_the_process_running_shard_zero_syncs(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    other = FakeDiscordRest()
    with caplog.at_level(logging.INFO, logger="bot.discord_app"):
        await front_end(runtime, other, shard_count=4, shard_ids=(2, 3)).on_ready()
    assert other.calls == []
    assert "shard 0" in caplog.text
    first = FakeDiscordRest()
    await front_end(runtime, first, shard_count=4, shard_ids=(0, 1)).on_ready()
    assert first.syncs() == [(f"/applications/{APP_ID}/commands", SLASH_COMMANDS)]


async def test_a_failed_sync_is_logged_and_tried_again_at_the_next_ready(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    rest = FakeDiscordRest()
    rest.failures = 1
    front = front_end(runtime, rest)
    with caplog.at_level(logging.WARNING, logger="bot.discord_app"):
        await front.on_ready()
    (record,) = caplog.records
    # Formatted as a handler would: redaction may have moved the traceback into exc_text.
    text = logging.Formatter("%(message)s").format(record)
    assert "sync" in text and "Traceback" in text and "DiscordServerError" in text
    assert await runtime.storage.meta(commands_meta_key(APP_ID, None)) is None
    await front.on_ready()
    assert len(rest.syncs()) == 2
    assert await runtime.storage.meta(commands_meta_key(APP_ID, None)) is not None


def test_the_shipped_settings_run_every_shard_and_sync_globally() -> None:
    assert BotSettings().discord == DiscordSection(
        enabled=False, shard_count=0, shard_ids=(), dev_guild_id=0
    )
