"""No secret in any log record, printed traceback or start-up failure (docs/architecture.md#secrets)."""

from __future__ import annotations

import gc
import http.server
import json
import logging
import os
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram import Update

from bot.app import Runtime
from bot.scheduler import WeeklyDeliveries
from bot.telegram_app import TelegramFrontEnd
from inference import redaction as logs
from inference.redaction import REDACTED, install_exception_hooks, install_redaction
from tests.bot.conftest import MAL_CLIENT_ID
from tests.bot.test_console_app import ROOT, SECRET_VARS, write_config
from tests.bot.test_telegram import TOKEN, FakeBotApi, message_update

DISCORD_TOKEN = "discord-token-MTIzNDU2Nzg5.secret"


def record_text(record: logging.LogRecord) -> str:
    """What a handler writes for the record: message, traceback (exc_info or exc_text), stack."""
    return logging.Formatter("%(message)s").format(record)


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """install_exception_hooks for one test; the runner's own hooks come back after it."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_exception_hooks()


@pytest.fixture
def own_secrets() -> Iterator[None]:
    """Secrets a test installs are masked for that test only (the set is process-wide)."""
    before = list(logs._installed)
    yield
    logs._installed[:] = before


def chained_failure(secret: str) -> BaseException:
    """An exception whose own message is clean, with the secret in its cause and its context."""
    try:
        try:
            raise KeyError(f"lookup of {secret} failed")
        except KeyError:
            try:
                raise ValueError(f"https://api.example/bot{secret}/getMe refused")
            except ValueError as inner:
                raise RuntimeError("could not connect") from inner
    except RuntimeError as exc:
        return exc
    raise AssertionError("unreachable")


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


TOKEN_CHARS = string.ascii_letters + string.digits + "-_"
# Shaped like real tokens (Telegram "123456:AAH...", Discord "MTIz.Gx.abc"), so no value can
# also be a word of the traceback itself.
token_values = st.one_of(
    st.builds(
        "{}:{}".format, st.integers(10**5, 10**10), st.text(TOKEN_CHARS, min_size=8, max_size=50)
    ),
    st.lists(st.text(TOKEN_CHARS, min_size=4, max_size=30), min_size=3, max_size=3).map(".".join),
)


@settings(max_examples=60, deadline=None)
@given(secret=token_values)
def test_secrets_in_chained_exceptions_are_masked_and_the_traceback_kept(secret: str) -> None:
    before = list(logs._installed)
    install_redaction([secret])
    try:
        exc = chained_failure(secret)
        record = logging.getLogger("tests.redaction").makeRecord(
            "tests.redaction",
            logging.ERROR,
            __file__,
            1,
            "connect failed",
            None,
            (type(exc), exc, exc.__traceback__),
        )
        text = record_text(record)
    finally:
        logs._installed[:] = before
    assert secret not in text
    assert REDACTED in text
    # The traceback is still there, every link of the chain included.
    assert "The above exception was the direct cause" in text
    assert "During handling of the above exception" in text
    assert "KeyError" in text and "ValueError" in text and "RuntimeError: could not connect" in text


def test_a_percent_encoded_secret_is_masked_too(
    own_secrets: None, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction(["424242:AAH-percent-encoded-secret"])
    with caplog.at_level(logging.INFO):
        logging.getLogger("tests.redaction").info(
            "GET https://api.example/bot424242%3AAAH-percent-encoded-secret/getMe"
        )
    assert "percent-encoded-secret" not in caplog.text and REDACTED in caplog.text


def test_secrets_in_a_logged_stack_are_masked(
    own_secrets: None, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "stack-secret-0123456789"
    install_redaction([secret])

    def frame_that_names(value: str) -> None:
        logging.getLogger("tests.redaction").warning("here", stack_info=True)

    with caplog.at_level(logging.INFO):
        frame_that_names("stack-secret-0123456789")  # the source line shows the value
    assert "frame_that_names" in caplog.text
    assert secret not in caplog.text


def test_uncaught_exceptions_print_masked_tracebacks(
    hooks: None, own_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "uncaught-secret-0123456789"
    install_redaction([secret])
    exc = chained_failure(secret)
    sys.excepthook(type(exc), exc, exc.__traceback__)

    def in_a_thread() -> None:
        raise ValueError(f"thread saw {secret}")

    thread = threading.Thread(target=in_a_thread, name="worker-1")
    thread.start()
    thread.join()

    class Finalised:
        def __del__(self) -> None:
            raise ValueError(f"finaliser saw {secret}")

    Finalised()
    gc.collect()
    err = capsys.readouterr().err
    assert secret not in err
    assert err.count(REDACTED) >= 4  # cause, context, thread, finaliser
    assert "RuntimeError: could not connect" in err
    assert "Exception in thread worker-1" in err
    assert "Exception ignored in" in err


class UnauthorizedBotApi(http.server.BaseHTTPRequestHandler):
    """The Bot API's answer to a revoked or mistyped token, for every request."""

    paths: ClassVar[list[str]] = []

    def _unauthorized(self) -> None:
        self.paths.append(self.path)
        body = json.dumps({"ok": False, "error_code": 401, "description": "Unauthorized"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _unauthorized

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line holds the token


@pytest.fixture
def unauthorized_api() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []
    handler = type("Handler", (UnauthorizedBotApi,), {"paths": paths})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/bot", paths
    finally:
        server.shutdown()
        server.server_close()


def test_a_rejected_telegram_token_exits_2_naming_the_variable_never_the_value(
    tmp_path: Path, unauthorized_api: tuple[str, list[str]]
) -> None:
    url, paths = unauthorized_api
    config = write_config(tmp_path)
    text = config.read_text()
    enabled = text.replace("[telegram]\nenabled = false", "[telegram]\nenabled = true")
    assert enabled != text
    config.write_text(enabled)
    token = "987654321:AAF-revoked-token-that-must-stay-secret"
    proxies = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRET_VARS and k.upper() not in proxies  # the fake API is on loopback
    }
    env.update(
        ANIMEREC_CONFIG=str(config),
        ANIMEREC_TELEGRAM_TOKEN=token,
        ANIMEREC_TELEGRAM_API_URL=url,
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot"],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert f"/bot{token}/getMe" in paths  # the token did reach the (fake) Bot API
    assert done.returncode == 2, done.stderr
    output = done.stdout + done.stderr
    assert token not in output
    assert "AAF-revoked-token" not in output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and done.stderr.rstrip().endswith(errors[0])
    assert "ANIMEREC_TELEGRAM_TOKEN" in errors[0] and "telegram" in errors[0]
    # The failure was logged, traceback and all, masked.
    assert "InvalidToken" in done.stderr and REDACTED in done.stderr
