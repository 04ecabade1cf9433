"""What `python -m training` treats as a user's mistake, and the one secret it must never print.

A command raises a `TrainingError` (or another `AnimerecError`) when its input is wrong: a missing
file, a bad config key, a model argument that is not a number. Its message is the whole story, so
the CLI prints it as one line and exits 2. Anything else is a bug or an environment failure: the
CLI logs it with its traceback (see `training.__main__`).

The crawl reads the MyAnimeList client id from the environment; `install_redaction` masks it in
every log record (message, traceback, chained exceptions) and in the lines the CLI prints. The
bot has its own redaction (`bot.logs`), which training must not import.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import urllib.parse
from types import TracebackType
from typing import Any

from inference.config import MAL_CLIENT_ID_ENV
from inference.errors import AnimerecError

REDACTED = "[redacted]"
_secrets: list[str] = []
_factory_installed = False


class TrainingError(AnimerecError, ValueError):
    """Bad input to a training command. A ValueError too, as the untyped errors it replaces were,
    so code that catches ValueError around a training function still does."""


class ConfigError(TrainingError):
    """A config file or override that does not fit the config dataclasses."""


def install_redaction() -> None:
    """Mask the MAL client id (if set) in every log record created from now on (idempotent)."""
    global _factory_installed
    secret = os.environ.get(MAL_CLIENT_ID_ENV, "").strip()
    if secret:
        for form in (secret, urllib.parse.quote(secret, safe="")):
            if form not in _secrets:
                _secrets.append(form)
        _secrets.sort(key=len, reverse=True)  # a secret containing another is masked whole
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _secrets:
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is logging's problem to report, not ours
        return
    if redact(message) != message:
        record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[1] is not None:
        # The formatted traceback includes every chained exception (__cause__, __context__).
        text = logging.Formatter().formatException(record.exc_info)
        if redact(text) != text:
            # Handlers format exc_text when it is set: the traceback is kept, masked; exc_info goes,
            # or a handler would format the raw exception again.
            record.exc_text, record.exc_info = redact(text), None
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """`sys.excepthook` for `python -m training --debug`: the raw traceback, the secret masked."""
    sys.stderr.write(redact("".join(traceback.format_exception(exc_type, exc, tb))))
