"""The console front end: one command per line from stdin, replies to stdout (DESIGN §5).

It needs no terminal (a pipe or a file works), speaks for one local user, and returns at the end of
input. Buttons appear as numbered follow-up commands (/more, /seen N, /notinterested N).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from bot.commands import CONSOLE, CommandService, UserRef
from bot.replies import Reply, render_text


def console_user(user_id: str) -> UserRef:
    return UserRef(CONSOLE, user_id, user_id)


async def run_console(
    service: CommandService,
    user_id: str,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> None:
    source = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else sys.stdout
    user = console_user(user_id)
    loop = asyncio.get_running_loop()
    while True:
        # readline blocks; a worker thread keeps the loop (and the scheduler) running meanwhile.
        line = await loop.run_in_executor(None, source.readline)
        if not line:
            return
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        reply = await service.handle_line(user, text)
        write_reply(reply, out)


def write_reply(reply: Reply, out: TextIO) -> None:
    out.write(render_text(reply) + "\n\n")
    out.flush()


class ConsoleSender:
    """Weekly deliveries for the console user, printed while the console runs."""

    def __init__(self, stdout: TextIO | None = None) -> None:
        self._out = stdout

    async def send(self, chat_id: str, reply: Reply) -> None:
        write_reply(reply, self._out if self._out is not None else sys.stdout)
