"""Secrets never reach a log or stderr (docs/architecture.md#secrets). Shared by the bot (its tokens and the MAL
client id) and the training CLI (the MAL client id of the crawl).

Libraries log what they like (request URLs carry Telegram's token, python-telegram-bot puts the
token in the text of InvalidToken), so every record is checked at creation: a secret value in its
message, its traceback (chained exceptions included) or its stack is masked. Exceptions that no
logger sees (an uncaught one, one in a thread, an "Exception ignored in" report) go through hooks
that print the same tracebacks with the values masked.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
import urllib.parse
from collections.abc import Iterable
from types import TracebackType
from typing import Any

REDACTED = "[redacted]"
_installed: list[str] = []
_factory_installed = False


def install_redaction(secrets: Iterable[str]) -> None:
    """Mask `secrets` in every log record created from now on, and in the tracebacks printed by
    the hooks of `install_exception_hooks` (idempotent; adds to the set)."""
    global _factory_installed
    for secret in secrets:
        if not secret:
            continue
        # A URL may carry the value percent-encoded (a Telegram token's ":" becomes "%3A").
        for form in (secret, urllib.parse.quote(secret, safe="")):
            if form not in _installed:
                _installed.append(form)
    # Longest first, so a secret that contains another is masked whole.
    _installed.sort(key=len, reverse=True)
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _installed:
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


def redact(text: str) -> str:
    for secret in _installed:
        text = text.replace(secret, REDACTED)
    return text


def _contains_secret(text: str) -> bool:
    return any(secret in text for secret in _installed)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is logging's problem to report, not ours
        return
    if _contains_secret(message):
        record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[1] is not None:
        # The formatted traceback includes every chained exception (__cause__, __context__).
        text = logging.Formatter().formatException(record.exc_info)
        if _contains_secret(text):
            # Handlers format exc_text when it is set, so the traceback is kept, masked; exc_info
            # goes, or a handler would format the raw exception again.
            record.exc_text = redact(text)
            record.exc_info = None
    if record.exc_text and _contains_secret(record.exc_text):
        record.exc_text = redact(record.exc_text)
    if record.stack_info and _contains_secret(record.stack_info):
        record.stack_info = redact(record.stack_info)


def _write_redacted(text: str) -> None:
    stream = sys.stderr
    if stream is None:  # no console (pythonw): nowhere to report to
        return
    try:
        stream.write(redact(text))
        stream.flush()
    except Exception:  # a closed stderr at exit: the report is lost either way
        pass


def _format(
    exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None
) -> str:
    return "".join(traceback.format_exception(exc_type, exc, tb))


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    _write_redacted(_format(exc_type, exc, tb))


def _threading_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as the default hook: a thread may end itself this way
        return
    name = args.thread.name if args.thread is not None else threading.get_ident()
    _write_redacted(
        f"Exception in thread {name}:\n"
        + _format(args.exc_type, args.exc_value, args.exc_traceback)
    )


def _unraisablehook(unraisable: Any) -> None:
    try:
        where = repr(unraisable.object) if unraisable.object is not None else ""
    except Exception:
        where = "<object repr() failed>"
    header = f"{unraisable.err_msg or 'Exception ignored in'}: {where}\n"
    _write_redacted(
        header + _format(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    )


def install_exception_hooks() -> None:
    """Print uncaught exceptions (main thread, other threads, "Exception ignored in" reports) with
    the secrets of `install_redaction` masked. Process-wide, so only a program's `main` calls it
    (`bot.app.main`; `python -m training --debug`)."""
    sys.excepthook = _excepthook
    threading.excepthook = _threading_excepthook
    sys.unraisablehook = _unraisablehook
