from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inference.animelist import MAX_LIST_ENTRIES
from inference.catalog import Catalog, CatalogItem, save_catalog
from inference.cli import build_parser, load_list, main
from inference.config import SourceSettings
from inference.errors import BadExportFile
from tests.inference.fakes import FakeAniList, FakeMal, anilist_row, mal_row

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "example-export.xml"


def run(argv: list[str]) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue().splitlines()


def write_export(path: Path, animes: list[tuple[int, str, int, str, str]]) -> Path:
    """(id, status, score, start, finish) rows as a modern export."""
    rows = "".join(
        f"<anime><series_animedb_id>{i}</series_animedb_id><my_score>{score}</my_score>"
        f"<my_status>{status}</my_status><my_start_date>{start}</my_start_date>"
        f"<my_finish_date>{finish}</my_finish_date></anime>"
        for i, status, score, start, finish in animes
    )
    path.write_bytes(
        f"<myanimelist><myinfo><user_name>u</user_name></myinfo>{rows}</myanimelist>".encode()
    )
    return path


def test_list_prints_the_documented_summary(tmp_path: Path) -> None:
    path = write_export(
        tmp_path / "a.xml",
        [
            (1, "Completed", 9, "2014-03-02", "2014-03-20"),
            (2, "Completed", 0, "0000-00-00", "2020-05-00"),
            (3, "Watching", 7, "2019", "0000-00-00"),
            (4, "Plan to Watch", 0, "0000-00-00", "0000-00-00"),
        ],
    )
    code, lines = run(["list", "--file", str(path)])
    assert code == 0
    assert lines == [
        "entries: 4",
        "watching: 1",
        "completed: 2",
        "on_hold: 0",
        "dropped: 0",
        "plan_to_watch: 1",
        "scored: 50% (2 of 4)",
        "dates: 2014-03-02 .. 2020-05",
    ]


def test_list_of_the_shipped_example() -> None:
    code, lines = run(["list", "--file", str(EXAMPLE)])
    assert code == 0
    assert lines[0] == "entries: 26"
    counts = dict(line.split(": ", 1) for line in lines[1:6])
    assert sum(int(v) for v in counts.values()) == 26
    assert lines[6].startswith("scored: ") and lines[6].endswith(" of 26)")
    assert lines[7] == "dates: 2014-03-02 .. 2024-11-30"


def test_list_uses_update_times_when_the_export_has_them(shared_data: Path) -> None:
    path = shared_data / "fixtures/mal-xml/legacy-list-163-entries.xml"
    code, lines = run(["list", "--file", str(path)])
    assert code == 0
    assert lines[0] == "entries: 163"
    assert "completed: 124" in lines
    assert "scored: 76% (124 of 163)" in lines
    # min/max of my_last_updated in the file, as UTC dates
    assert lines[-1] == "dates: 2009-03-13 .. 2012-07-26"


def test_gzipped_export_and_empty_export(tmp_path: Path) -> None:
    plain = write_export(tmp_path / "a.xml", [(1, "Dropped", 3, "0000-00-00", "0000-00-00")])
    packed = tmp_path / "a.xml.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert run(["list", "--file", str(packed)]) == run(["list", "--file", str(plain)])

    empty = write_export(tmp_path / "empty.xml", [])
    code, lines = run(["list", "--file", str(empty)])
    assert code == 0
    assert lines[0] == "entries: 0"
    assert "scored: 0% (0 of 0)" in lines
    assert lines[-1] == "dates: unknown"


def test_bad_file_is_one_line_on_stderr_and_exit_2(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shared_data / "fixtures/mal-xml/legacy-list-invalid-control-chars.xml"
    code, lines = run(["list", "--file", str(path)])
    assert code == 2
    assert lines == []
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "line 5" in err
    assert "Traceback" not in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(["list", "--file", str(tmp_path / "missing.xml")])
    assert code == 2
    assert "no such file" in capsys.readouterr().err


def test_mal_without_client_id_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANIMEREC_MAL_CLIENT_ID", raising=False)
    code, lines = run(["list", "--mal", "someone"])
    assert code == 2 and lines == []
    err = capsys.readouterr().err
    assert "ANIMEREC_MAL_CLIENT_ID" in err and "Traceback" not in err


def test_broken_config_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[sources\n")
    monkeypatch.setenv("ANIMEREC_CONFIG", str(bad))
    code, _ = run(["list", "--anilist", "someone"])
    assert code == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_one_source_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["list"])
    assert exit_info.value.code == 2
    assert "--anilist --mal --file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["list", "--file", "a.xml", "--mal", "b"])


def test_module_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inference", "list", "--file", str(EXAMPLE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "entries: 26"


# ----- --mal / --anilist through the real list sources, fake services at the network edge ----


@pytest.fixture
def fake_network(monkeypatch: pytest.MonkeyPatch) -> httpx.MockTransport:
    """Route the CLI's one shared HTTP client to fake MyAnimeList and AniList services."""
    import inference.http

    mal, anilist = FakeMal(), FakeAniList()
    mal.add_user(
        "mal_user",
        [
            mal_row(1, "completed", score=9, updated_at="2019-02-03T10:00:00+00:00"),
            mal_row(5, "dropped", updated_at="2021-03-15T09:00:58+00:00"),
            mal_row(6, "plan_to_watch", updated_at=None, start_date="2016-05"),
        ],
    )
    anilist.add_user(
        "AniUser",
        [
            anilist_row(101, 11, "COMPLETED", score=85, updated_at=1_600_000_000),
            anilist_row(102, None, "REPEATING", updated_at=1_650_000_000),  # mapped by catalogue
            anilist_row(103, None, "PLANNING", updated_at=1_700_000_000),  # nowhere to map
        ],
    )

    def route(request: httpx.Request) -> httpx.Response:
        return (mal if request.url.host == "api.myanimelist.net" else anilist)(request)

    transport = httpx.MockTransport(route)
    real = inference.http.make_http_client

    def with_fake_transport(settings: SourceSettings, **_kwargs: object) -> httpx.AsyncClient:
        return real(settings, transport=transport)

    monkeypatch.setattr(inference.http, "make_http_client", with_fake_transport)
    monkeypatch.setenv("ANIMEREC_MAL_CLIENT_ID", mal.client_id)
    return transport


def test_list_of_a_mal_user(fake_network: httpx.MockTransport) -> None:
    code, lines = run(["list", "--mal", "mal_user"])
    assert code == 0
    assert lines == [
        "entries: 3",
        "watching: 0",
        "completed: 1",
        "on_hold: 0",
        "dropped: 1",
        "plan_to_watch: 1",
        "scored: 33% (1 of 3)",
        "dates: 2016-05 .. 2021-03-15",
    ]


def test_list_of_an_anilist_user_maps_ids_through_the_catalogue(
    fake_network: httpx.MockTransport, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.json"
    save_catalog(Catalog([CatalogItem(mal_id=12, title="Mapped", anilist_id=102)]), catalog)
    code, lines = run(["list", "--anilist", "AniUser", "--catalog", str(catalog)])
    assert code == 0
    assert lines[0] == "entries: 2"
    assert "watching: 1" in lines and "completed: 1" in lines  # REPEATING = watching
    assert "scored: 50% (1 of 2)" in lines
    assert "dates: 2020-09-13 .. 2022-04-15" in lines
    assert lines[-1] == "left out (no MyAnimeList id): 1"


def test_unknown_users_are_one_clean_line(
    fake_network: httpx.MockTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["list", "--mal", "nobody_here"], ["list", "--anilist", "Nobody"]):
        code, lines = run(argv)
        assert code == 2 and lines == []
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "Traceback" not in err


def test_invalid_username_is_refused_before_any_request(
    fake_network: httpx.MockTransport, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(["list", "--mal", "no spaces/allowed"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_broken_catalogue_is_a_clean_error(
    fake_network: httpx.MockTransport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "catalog.json"
    bad.write_text("{}")
    code, _ = run(["list", "--anilist", "AniUser", "--catalog", str(bad)])
    assert code == 2
    assert "not a catalogue file" in capsys.readouterr().err


# ----- hostile --file arguments -------------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    # The timeout only guards against a hang (the bug this replaces); no speed is asserted.
    return subprocess.run(
        [sys.executable, "-m", "inference", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "export.xml"
    os.mkfifo(fifo)
    assert_one_line_exit_2(run_module("list", "--file", str(fifo)), "not a regular file")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_an_endless_device_is_refused_without_reading_it(device: str) -> None:
    if not Path(device).exists():
        pytest.skip(f"{device} does not exist here")
    assert_one_line_exit_2(run_module("list", "--file", device), "not a regular file")


def test_a_link_to_a_device_is_refused_too(tmp_path: Path) -> None:
    link = tmp_path / "export.xml"
    link.symlink_to("/dev/zero")
    with pytest.raises(BadExportFile, match="not a regular file"):
        load_list(build_parser().parse_args(["list", "--file", str(link)]))


def test_a_list_over_the_entry_cap_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_export(
        tmp_path / "huge.xml",
        [(i, "Completed", 0, "0000-00-00", "0000-00-00") for i in range(1, MAX_LIST_ENTRIES + 2)],
    )
    code, lines = run(["list", "--file", str(path)])
    assert code == 2 and lines == []
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"more than {MAX_LIST_ENTRIES:,} entries" in err and str(path) in err


def test_crafted_times_dates_and_encodings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    after_2038 = tmp_path / "2040.xml"
    after_2038.write_bytes(
        b"<myanimelist><anime><series_animedb_id>1</series_animedb_id><my_status>2</my_status>"
        b"<my_last_updated>2208988800</my_last_updated></anime>"  # 2040-01-01
        b"<anime><series_animedb_id>2</series_animedb_id><my_status>2</my_status>"
        b"<my_last_updated>0</my_last_updated><my_start_date>99999-01-01</my_start_date></anime>"
        b"</myanimelist>"
    )
    code, lines = run(["list", "--file", str(after_2038)])
    assert code == 0 and lines[0] == "entries: 2"
    assert lines[-1] == "dates: 2040-01-01 .. 2040-01-01"

    for content, expected in [
        (
            b"<myanimelist><anime><series_animedb_id>1</series_animedb_id><my_status>2</my_status>"
            b"<my_last_updated>100000000000000</my_last_updated></anime></myanimelist>",
            "line 1 has a my_last_updated after the year 9999",
        ),
        (
            b'<?xml version="1.0" encoding="x-no-such"?><myanimelist/>',
            "encoding 'x-no-such'",
        ),
    ]:
        path = tmp_path / "crafted.xml"
        path.write_bytes(content)
        code, lines = run(["list", "--file", str(path)])
        assert code == 2 and lines == []
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err
