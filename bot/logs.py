"""Secrets never reach a log (DESIGN §7).

Libraries log what they like (request URLs carry Telegram's token), so every record is checked at
creation: a record whose message contains a secret value is rewritten with the value masked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
_installed: list[str] = []


def install_redaction(secrets: Iterable[str]) -> None:
    """Mask `secrets` in every log record created from now on (idempotent, adds to the set)."""
    new = [s for s in secrets if s and s not in _installed]
    if not new:
        return
    first_install = not _installed
    _installed.extend(new)
    # Longest first, so a secret that contains another is masked whole.
    _installed.sort(key=len, reverse=True)
    if not first_install:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem to report, not ours
            return record
        if any(secret in message for secret in _installed):
            for secret in _installed:
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if any(secret in text for secret in _installed):
                # Tracebacks are formatted later from exc_info; drop the text that holds a secret.
                record.exc_info = None
                record.msg = f"{record.msg} ({REDACTED} exception)"
        return record

    logging.setLogRecordFactory(factory)


def redact(text: str) -> str:
    for secret in _installed:
        text = text.replace(secret, REDACTED)
    return text
