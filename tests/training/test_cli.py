"""`python -m training`: bad input is one line and exit 2, a bug is a logged traceback and exit 1,
`--debug` lets either propagate, and the MAL client id never reaches stderr or a log."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import training.errors
import training.synthesize
from inference import redaction
from inference.config import MAL_CLIENT_ID_ENV
from training.__main__ import main as cli
from training.__main__ import one_line
from training.errors import TrainingError

REPO = Path(__file__).resolve().parents[2]
SECRET = "0123456789abcdef0123456789abcdef"  # the shape of a MAL client id


@pytest.fixture(autouse=True)
def fresh_redaction(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test installs the record factory anew and leaves the process's logging as it was."""
    monkeypatch.setattr(redaction, "_installed", [])
    monkeypatch.setattr(redaction, "_factory_installed", False)
    previous = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(previous)


def failing_command(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def main(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(training.synthesize, "main", main)


SYNTHESIZE = ["synthesize", "--users", "1", "--out", "unused.parquet"]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "training", "synthesize", "--users", "0", "--out", "x.parquet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: need --users >= 1, --items >= 10 and --mean-length >= 1\n"
    assert not (tmp_path / "x.parquet").exists()


def test_an_unexpected_error_is_logged_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing_command(monkeypatch, RuntimeError("index 7 out of range"))
    assert cli(SYNTHESIZE) == 1
    (record,) = [r for r in caplog.records if r.name == "training"]
    assert record.levelno == logging.ERROR and "synthesize" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error: unexpected RuntimeError: index 7 out of range")
    assert "--debug" in err[-1]


def test_expected_errors_are_not_logged(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing_command(monkeypatch, FileNotFoundError("checkpoint runs/x/ckpt.pt does not exist"))
    assert cli(SYNTHESIZE) == 2
    assert capsys.readouterr().err == "error: checkpoint runs/x/ckpt.pt does not exist\n"
    assert not [r for r in caplog.records if r.name == "training"]


@pytest.mark.parametrize(
    "argv", [["--debug", *SYNTHESIZE], [*SYNTHESIZE, "--debug"]], ids=["before", "after"]
)
@pytest.mark.parametrize(
    "exc", [RuntimeError("a bug"), TrainingError("bad input")], ids=["bug", "input"]
)
def test_debug_lets_the_exception_propagate(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], exc: Exception
) -> None:
    failing_command(monkeypatch, exc)
    with pytest.raises(type(exc)) as raised:
        cli(argv)
    assert raised.value is exc


def test_the_mal_client_id_never_reaches_stderr_or_a_log(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(MAL_CLIENT_ID_ENV, SECRET)
    try:
        raise ValueError(f"header X-MAL-CLIENT-ID: {SECRET}")
    except ValueError as cause:
        bug = RuntimeError(f"request with {SECRET} failed")
        bug.__cause__ = cause
    failing_command(monkeypatch, bug)
    assert cli(SYNTHESIZE) == 1
    failing_command(monkeypatch, TrainingError(f"client id {SECRET} refused"))
    assert cli(SYNTHESIZE) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and err.count("[redacted]") == 2
    logged = caplog.text
    assert SECRET not in logged
    assert "[redacted] failed" in logged and "X-MAL-CLIENT-ID: [redacted]" in logged  # the cause


@given(st.text())
def test_a_report_is_one_line_whatever_the_message(message: str) -> None:
    line = "error: " + one_line(ValueError(message))
    assert len(line.splitlines()) == 1
    for part in message.splitlines():
        assert part.strip() in line
