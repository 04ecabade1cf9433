"""`python -m bot` as a new user runs it: the console front end over a pipe, and start-up errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from bot.console import LineTooLong, read_line
from inference.catalog import save_catalog
from tests.bot.conftest import bot_catalog

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "examples" / "example-export.xml"
SECRET_VARS = ("ANIMEREC_DISCORD_TOKEN", "ANIMEREC_TELEGRAM_TOKEN", "ANIMEREC_MAL_CLIENT_ID")


def write_config(tmp_path: Path, extra: str = "") -> Path:
    catalog = tmp_path / "catalog.json.gz"
    save_catalog(bot_catalog(), catalog)
    shipped = (ROOT / "config.toml").read_text()
    # The shipped file, pointed at a temporary database and a catalogue, with no model bundle.
    config = (
        shipped.replace('path = "data/animerec.sqlite3"', f'path = "{tmp_path / "bot.sqlite3"}"')
        .replace('bundle = "exports/default"', f'bundle = "{tmp_path / "no-bundle"}"')
        .replace('catalog = "data/catalog.json.gz"', f'catalog = "{catalog}"')
    )
    path = tmp_path / "config.toml"
    path.write_text(config + extra)
    return path


def run_bot(config: Path, stdin: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, "ANIMEREC_CONFIG": str(config), **env},
        timeout=120,
    )


def test_console_reads_a_pipe_and_exits_0_at_end_of_input(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    script = "\n".join(
        [
            "/help",
            f"/recommend --file {EXPORT} --count 3",
            "/seen 1",
            "/more",
            "hello",
            "/recommend --file",
            "/dance",
        ]
    )
    done = run_bot(config, script + "\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Model: none" in out
    picks = [line for line in out.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert len(picks) == 6  # two replies of three
    assert "   why: " in out
    assert "buttons: /more · /seen N · /notinterested N" in out
    assert "Noted: you have seen" in out
    assert "Commands start with a slash" in out
    assert "Unknown command /dance" in out
    assert "Could not read that command" in out
    assert "Traceback" not in done.stderr
    assert "running without a model" in done.stderr


def test_console_works_with_stdin_closed_at_once(tmp_path: Path) -> None:
    done = run_bot(write_config(tmp_path), "")
    assert done.returncode == 0 and done.stdout == ""


def test_enabled_platform_without_token_stops_with_the_variable_named(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = config.read_text().replace("[telegram]\nenabled = false", "[telegram]\nenabled = true")
    config.write_text(text)
    done = run_bot(config, "/help\n")
    assert done.returncode == 2
    assert "ANIMEREC_TELEGRAM_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_bad_setting_stops_start_up(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = config.read_text().replace("cooldown_s = 10.0", "cooldown_s = 10.0\ncooldwn = 3")
    config.write_text(text)
    done = run_bot(config, "")
    assert done.returncode == 2 and "cooldwn" in done.stderr


def test_invalid_utf8_under_a_strict_locale_costs_no_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    clean = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    stdin = b"/help\n/recommend caf\xe9\xff\xfe --count 2\n\xc3(/dance\n/unlink\n"
    done = subprocess.run(
        [sys.executable, "-m", "bot"],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env={
            **clean,
            "ANIMEREC_CONFIG": str(config),
            "PYTHONIOENCODING": "utf-8",
            "LC_ALL": "C.UTF-8",
        },
        timeout=120,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert "Traceback" not in err
    replies = [block for block in out.split("\n\n") if block.strip()]
    assert len(replies) == 4  # one per line, the ones after the bad bytes too
    assert "caf\ufffd" in replies[1]  # the bad name echoed with replacement characters
    assert "Commands start with a slash" in replies[2]
    assert "No list was linked" in replies[3]


def test_read_line_decodes_with_replacement_and_skips_an_overlong_line() -> None:
    source = io.BytesIO(b"ok \xff\n" + b"x" * 50_000 + b"\nnext\nlast")
    assert read_line(source, 100) == "ok \ufffd\n"
    too_long = read_line(source, 100)
    assert isinstance(too_long, LineTooLong) and too_long.length == 50_000
    assert read_line(source, 100) == "next\n"
    assert read_line(source, 100) == "last"
    assert read_line(source, 100) is None
    # Text streams (tests, embedding) are read as they are.
    assert read_line(io.StringIO("/help\n"), 100) == "/help\n"


def test_a_reader_that_goes_away_ends_the_session_quietly(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**clean, "ANIMEREC_CONFIG": str(write_config(tmp_path))},
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b"/help\n")
    proc.stdin.flush()
    assert proc.stdout.readline()  # the first reply began
    proc.stdout.close()  # as `| head -1` does
    proc.stdin.write(b"/help\n" * 200)
    proc.stdin.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "unexpected error" not in err
