"""The console front end: one command per line from stdin, replies to stdout (docs/architecture.md#request-path).

It needs no terminal (a pipe or a file works), speaks for one local user, and returns at the end of
input. Input is read as bytes and decoded line by line, whatever the locale's encoding. Buttons appear as numbered follow-up commands (/more, /seen N, /notinterested N).
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from dataclasses import dataclass
from typing import IO, TextIO

from bot.commands import CONSOLE, CommandService, UserRef
from bot.replies import Reply, render_text


def console_user(user_id: str) -> UserRef:
    return UserRef(CONSOLE, user_id, user_id)


async def run_console(
    service: CommandService,
    user_id: str,
    *,
    stdin: IO[str] | IO[bytes] | None = None,
    stdout: TextIO | None = None,
    max_line_chars: int | None = None,
) -> None:
    """Answer every line of `stdin` until its end.

    Standard input is read as bytes and each line decoded on its own with replacement, so an
    invalid byte (under a strict UTF-8 locale too) costs that line a replacement character,
    never the session. A line longer than `max_line_chars` is answered with the limit and
    skipped without being held in memory whole.
    """
    source: IO[str] | IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
    out = stdout if stdout is not None else sys.stdout
    if out is sys.stdout and hasattr(out, "reconfigure"):
        # A title the terminal's encoding cannot show becomes "?", not a crash of the session.
        out.reconfigure(errors="replace")
    limit = max_line_chars if max_line_chars is not None else service.settings.bot.max_line_chars
    user = console_user(user_id)
    loop = asyncio.get_running_loop()
    while True:
        # readline blocks; a worker thread keeps the loop (and the scheduler) running meanwhile.
        line = await loop.run_in_executor(None, read_line, source, limit)
        if line is None:
            return
        if isinstance(line, LineTooLong):
            reply = Reply.failure(line.message(limit))
        else:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            reply = await service.handle_line(user, text)
        try:
            write_reply(reply, out)
        except BrokenPipeError:
            # The reader went away (`| head`): nobody is left to answer, which is the end of the
            # session, not an error. Later writes (the interpreter's flush at exit) go nowhere.
            _silence(out)
            return


def _silence(out: TextIO) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file (a test's StringIO): nothing will flush to a closed pipe


@dataclass(frozen=True, slots=True)
class LineTooLong:
    length: int

    def message(self, limit: int) -> str:
        return (
            f"That command is {self.length:,} characters long; the limit is {limit:,}. "
            "Send /help for the options."
        )


def read_line(source: IO[str] | IO[bytes], limit: int) -> str | LineTooLong | None:
    """The next line as text, LineTooLong for an over-long one (read through and dropped), or
    None at the end of input. Reads at most `limit` characters' worth of bytes at a time."""
    # UTF-8 takes at most 4 bytes a character; a line is cut in bytes first, then in characters.
    chunk_limit = 4 * limit + 2
    first = source.readline(chunk_limit)
    if not first:
        return None
    text = _decode(first)
    if text.endswith("\n") or len(first) < chunk_limit:
        if len(text.rstrip("\r\n")) > limit:
            return LineTooLong(len(text.rstrip("\r\n")))
        return text
    # Over the limit already: skip the rest of the line in bounded reads.
    length = len(text)
    while True:
        more = source.readline(chunk_limit)
        if not more:
            break
        more_text = _decode(more)
        length += len(more_text)
        if more_text.endswith("\n"):
            length -= 1
            break
    return LineTooLong(length)


def _decode(data: str | bytes) -> str:
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


def write_reply(reply: Reply, out: TextIO) -> None:
    out.write(render_text(reply) + "\n\n")
    out.flush()


class ConsoleSender:
    """Weekly deliveries for the console user, printed while the console runs."""

    def __init__(self, stdout: TextIO | None = None) -> None:
        self._out = stdout

    async def send(self, chat_id: str, reply: Reply) -> None:
        write_reply(reply, self._out if self._out is not None else sys.stdout)
