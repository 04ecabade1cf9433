"""The deployment files: the image's CMD and HEALTHCHECK, run as the container would run them
(no Docker daemon needed), and the compose file and deploy config against the code's names."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from bot.settings import StorageSection, bot_settings
from inference.config import (
    DISCORD_TOKEN_ENV,
    MAL_CLIENT_ID_ENV,
    TELEGRAM_TOKEN_ENV,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SECRET_VARS = (DISCORD_TOKEN_ENV, TELEGRAM_TOKEN_ENV, MAL_CLIENT_ID_ENV)


def instruction(name: str) -> str:
    """The (continued) text of the Dockerfile's last `name` instruction."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [line for line in joined.splitlines() if line.startswith(name + " ")]
    assert lines, f"no {name} in the Dockerfile"
    return lines[-1][len(name) + 1 :].strip()


def exec_form(text: str) -> list[str]:
    argv = json.loads(text)
    assert isinstance(argv, list) and argv[0] == "python"
    return [sys.executable, *argv[1:]]


def shipped_config(tmp_path: Path, extra: str = "") -> Path:
    """The shipped config.toml as the image has it, with the store in a temporary folder."""
    text = (ROOT / "config.toml").read_text()
    text = text.replace('path = "data/animerec.sqlite3"', f'path = "{tmp_path / "bot.sqlite3"}"')
    if extra:
        text = re.sub(r"^\[metrics\]\n[^\[]*", f"[metrics]\n{extra}\n\n", text, flags=re.MULTILINE)
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def clean_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    return {**env, "ANIMEREC_CONFIG": str(config)}


def test_the_image_command_answers_help_on_the_console(tmp_path: Path) -> None:
    cmd = exec_form(instruction("CMD"))
    assert cmd[1:] == ["-m", "bot"]
    done = subprocess.run(
        cmd,
        input="/help\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(shipped_config(tmp_path)),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "/recommend" in done.stdout and "/subscribe" in done.stdout


def test_the_healthcheck_passes_while_the_bot_runs_and_fails_after(tmp_path: Path) -> None:
    check = instruction("HEALTHCHECK")
    assert "--start-period" in check
    probe = exec_form(check.split(" CMD ", 1)[1])
    assert "http://127.0.0.1:9108/healthz" in probe[-1]
    # The bot with /healthz on a free port (the log line names it); the console keeps it running
    # while its stdin stays open.
    config = shipped_config(tmp_path, 'enabled = true\nport = 0\nhost = "127.0.0.1"')
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
        env=clean_env(config),
    )
    try:
        assert bot.stderr is not None and bot.stdin is not None
        log, port = b"", None
        deadline = time.monotonic() + 180
        while port is None and time.monotonic() < deadline:
            # Bounded and unbuffered: a bot that never logs the line fails the test, not hangs it.
            readable, _, _ = select.select([bot.stderr], [], [], 1.0)
            chunk = os.read(bot.stderr.fileno(), 65536) if readable else b""
            if readable and not chunk:
                break  # the bot exited
            log += chunk
            match = re.search(rb"metrics on http://127\.0\.0\.1:(\d+)/metrics", log)
            port = match.group(1).decode() if match else None
        assert port is not None, log.decode(errors="replace")
        probe_here = [*probe[:-1], probe[-1].replace("9108", port)]
        assert subprocess.run(probe_here, capture_output=True, timeout=60).returncode == 0
        bot.stdin.close()
        assert bot.wait(timeout=60) == 0
        assert subprocess.run(probe_here, capture_output=True, timeout=60).returncode != 0
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait()


def test_the_image_copies_what_it_serves_with() -> None:
    sources = [
        part
        for line in DOCKERFILE.splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    ]
    for source in sources:
        assert (ROOT / source).exists(), source
    assert "exports/default/" in sources and "deploy/config.toml" in sources
    assert instruction("USER") != "root"


def test_compose_passes_the_variables_the_code_reads() -> None:
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    for name in (*SECRET_VARS, "ANIMEREC_DATABASE_URL", "ANIMEREC_CONFIG"):
        assert re.search(rf"^\s+{name}:", compose, re.MULTILINE), name
    assert "image: postgres:15" in compose
    assert "/app/deploy/config.toml" in compose
    unit = (ROOT / "deploy" / "animerec.service").read_text()
    assert "EnvironmentFile=" in unit and "Restart=on-failure" in unit
    assert re.search(r"^User=(?!root)\w+", unit, re.MULTILINE)


def test_the_deploy_config_is_valid() -> None:
    data = tomllib.loads((ROOT / "deploy" / "config.toml").read_text())
    assert data["metrics"]["enabled"] is True and data["metrics"]["port"] == 9108
    assert data["storage"]["url"] == "env"  # PostgreSQL, as deploy/compose.yaml provides
    if "url" not in {f.name for f in dataclasses.fields(StorageSection)}:
        # The PostgreSQL store's settings are not part of this build's [storage]; the rest of
        # the file is checked all the same.
        del data["storage"]["url"]
    settings = bot_settings(data)
    assert settings.telegram.enabled and settings.metrics.enabled
