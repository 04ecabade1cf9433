from __future__ import annotations

import gzip
import io
import subprocess
import sys
from pathlib import Path

import pytest

from inference.cli import main

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
