"""Real `python -m bot` processes over one PostgreSQL store, and the store's start-up errors."""

from __future__ import annotations

from pathlib import Path

from bot.settings import DATABASE_URL_ENV
from tests.bot.test_console_app import EXPORT, run_bot, write_config


def postgres_config(tmp_path: Path) -> Path:
    config = write_config(tmp_path)
    text = config.read_text()
    assert text.count('\nurl = ""') == 1  # [storage]'s own key, not a key ending in "url"
    config.write_text(text.replace('\nurl = ""', '\nurl = "env"', 1))
    return config


def picks(out: str) -> list[str]:
    return [line[3:] for line in out.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]


def test_a_second_process_answers_the_follow_ups_to_the_first_ones_reply(
    tmp_path: Path, postgres_url: str
) -> None:
    config = postgres_config(tmp_path)
    first = run_bot(
        config, f"/recommend --file {EXPORT} --count 3\n", **{DATABASE_URL_ENV: postgres_url}
    )
    assert first.returncode == 0, first.stderr
    shown = picks(first.stdout)
    assert len(shown) == 3
    second = run_bot(config, "/seen 2\n/more\n", **{DATABASE_URL_ENV: postgres_url})
    assert second.returncode == 0, second.stderr
    assert f"Noted: you have seen {shown[1]}." in second.stdout
    more = picks(second.stdout)
    assert len(more) == 3 and not set(more) & set(shown)


def test_a_missing_database_url_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    done = run_bot(postgres_config(tmp_path), "/help\n", **{DATABASE_URL_ENV: ""})
    assert done.returncode == 2 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and DATABASE_URL_ENV in last
    assert "Traceback" not in done.stderr


def test_an_unreachable_database_stops_start_up_without_showing_the_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql://bot:s3cret-pw-4417@/animerec?host={tmp_path}&port=5999"
    done = run_bot(postgres_config(tmp_path), "/help\n", **{DATABASE_URL_ENV: url})
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot open the PostgreSQL store")
    assert "s3cret-pw-4417" not in done.stderr and "Traceback" not in done.stderr
