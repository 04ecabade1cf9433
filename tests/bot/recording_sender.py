"""A sender at the network edge: it records each DM to memory and, optionally, to a file.

The file lines are "begin PID CHAT" before the (slow) send and "sent PID CHAT" after it, so a test
can kill a process while a send is in flight and tell which sends finished.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bot.replies import Reply
from bot.scheduler import DeliveryForbidden


class RecordingSender:
    def __init__(
        self,
        log_path: Path | None = None,
        *,
        delay_s: float = 0.0,
        forbidden: frozenset[str] = frozenset(),
        failing: frozenset[str] = frozenset(),
    ) -> None:
        self.log_path = log_path
        self.delay_s = delay_s
        self.forbidden = forbidden
        self.failing = failing
        self.sent: list[tuple[str, Reply]] = []

    def _log(self, what: str, chat_id: str) -> None:
        if self.log_path is not None:
            with self.log_path.open("a") as f:
                f.write(f"{what} {os.getpid()} {chat_id}\n")
                f.flush()
                os.fsync(f.fileno())

    async def send(self, chat_id: str, reply: Reply) -> None:
        self._log("begin", chat_id)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if chat_id in self.forbidden:
            raise DeliveryForbidden("Forbidden: bot was blocked by the user")
        if chat_id in self.failing:
            raise ConnectionError("network down")
        self.sent.append((chat_id, reply))
        self._log("sent", chat_id)
