from __future__ import annotations

import gzip
import json
import shutil
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from inference.animelist import REWATCHING_CODE, STATUS_CODES, Status
from tests.inference.test_mal_xml import modern_anime, modern_export
from training.__main__ import main as cli
from training.importers import run_import
from training.importers.title_match import TitleCandidate, TitleMatcher, normalize_title
from training.parquet_schema import SCHEMA, read_meta

COMPLETED = STATUS_CODES[Status.COMPLETED]


def rows(path: Path) -> list[dict]:
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == SCHEMA.remove_metadata()
    return table.to_pylist()


# ----- MovieLens -------------------------------------------------------------------------------


def test_movielens_inter_titles_get_sorted_ids_and_bad_rows_are_counted(tmp_path: Path) -> None:
    src = tmp_path / "ml.inter"
    src.write_bytes(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
        "1m_1\tZorro (1998)\t5\t978300760\r\n"
        "1m_1\tAmélie (2001)\t3\t978302109\r\n"
        "1m_2\tZorro (1998)\t4.5\t978300000\r\n"
        "1m_2\tbroken line\r\n"
        "1m_3\tAmélie (2001)\tfive\t978300000\r\n"
        "1m_3\tAmélie (2001)\t9\t978300000\r\n".encode()
    )
    out = tmp_path / "ml.parquet"
    report = run_import("movielens", src, out)
    assert (report.rows_read, report.rows_kept) == (6, 3)
    assert report.malformed == {
        "wrong number of fields": 1,
        "rating is not a number": 1,
        "rating outside 0.5-5": 1,
    }
    got = rows(out)
    # Titles sorted -> 1, 2 ("Amélie" < "Zorro"), whatever order the rows came in.
    assert [(r["user"], r["item"], r["score"], r["time"], r["row"]) for r in got] == [
        ("1m_1", 2, 10.0, 978300760, 0),
        ("1m_1", 1, 6.0, 978302109, 1),
        ("1m_2", 2, 9.0, 978300000, 2),
    ]
    assert {r["status"] for r in got} == {COMPLETED}
    mapping = json.loads((tmp_path / "ml.parquet.items.json").read_text())
    assert mapping == {"1": "Amélie (2001)", "2": "Zorro (1998)"}
    meta = read_meta(out)
    assert meta["has_times"] is True and meta["synthetic"] is False
    assert meta["report"]["rows_malformed"] == 3


def test_movielens_grouplens_dat_keeps_numeric_ids(tmp_path: Path) -> None:
    src = tmp_path / "ratings.dat"
    src.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::x\n")
    out = tmp_path / "r.parquet"
    report = run_import("movielens", src, out)
    assert report.rows_kept == 2 and report.malformed == {"wrong number of fields": 1}
    assert [r["item"] for r in rows(out)] == [1193, 661]
    assert not (tmp_path / "r.parquet.items.json").exists()


def test_movielens_without_header_is_a_clean_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "x.inter"
    src.write_text("a\tb\n")
    code = cli(["import", "movielens", str(src), "--out", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "not a RecBole .inter file" in err


# ----- MAL CSV ---------------------------------------------------------------------------------

MAL_HEADER = (
    "username,anime_id,my_watched_episodes,my_start_date,my_finish_date,my_score,my_status,"
    "my_rewatching,my_rewatching_ep,my_last_updated,my_tags\n"
)


def test_mal_csv_maps_statuses_times_and_refuses_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "lists.csv"
    src.write_text(
        MAL_HEADER
        + "ann,21,586,0000-00-00,0000-00-00,9,1,,0,2013-03-03 10:52:53,\n"
        + "ann,59,26,0000-00-00,0000-00-00,0,2,1.0,0,1970-01-01 00:00:00,\n"
        + "ann,60,0,0000-00-00,0000-00-00,0,6,0.0,0,2014-01-01 00:00:00,\n"
        + "ann,61,3,0000-00-00,0000-00-00,5,5,0.0,0,2014-01-01 00:00:00,\n"  # status 5 unknown
        + "ann,62,3,0000-00-00,0000-00-00,11,2,0.0,0,2014-01-01 00:00:00,\n"  # score 11
        + "ann,abc,3,0000-00-00,0000-00-00,5,2,0.0,0,2014-01-01 00:00:00,\n"
        + "ann,63,3,0000-00-00,0000-00-00,5,2,0.0,0,yesterday,\n"
        + "bob,64,3\n"
        + "bob,65,1,0000-00-00,0000-00-00,4,4,0.0,0,2015-06-01 12:00:00,\n"
    )
    out = tmp_path / "lists.parquet"
    report = run_import("mal-csv", src, out)
    assert report.rows_read == 9 and report.rows_kept == 4
    assert report.malformed == {
        "unknown my_status code": 1,
        "my_score outside 0-10": 1,
        "anime_id is not a positive integer": 1,
        "my_last_updated unreadable": 1,
        "wrong number of fields": 1,
    }
    got = rows(out)
    assert [
        (r["user"], r["item"], r["score"], r["status"], r["progress"], r["time"], r["row"])
        for r in got
    ] == [
        ("ann", 21, 9.0, STATUS_CODES[Status.WATCHING], 586, 1362307973, 0),
        ("ann", 59, None, REWATCHING_CODE, 26, None, 1),
        ("ann", 60, None, STATUS_CODES[Status.PLAN_TO_WATCH], 0, 1388534400, 2),
        ("bob", 65, 4.0, STATUS_CODES[Status.DROPPED], 1, 1433160000, 8),
    ]
    assert read_meta(out)["report"]["rows_without_time"] == 1


def test_mal_csv_real_sample(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mal.parquet"
    report = run_import("mal-csv", shared_data / "anime" / "mal-animelists-18-users.csv", out)
    table = pq.read_table(out)
    assert report.rows_read == 9_998 and report.rows_kept + report.rows_malformed == 9_998
    assert table.column("time").null_count == 411  # the 1970 placeholders
    assert len(set(table.column("user").to_pylist())) == 18
    assert table.column("score").null_count == 2_006


# ----- CooperUnion -----------------------------------------------------------------------------


def _cooperunion_zip(path: Path) -> Path:
    info = (
        "anime_ids\tname\tgenre\ttype\tepisodes\trating\tmembers\n"
        "1\tGintama&#039;\tComedy\tTV\t51\t9.1\t1\n"
        "2\tHakuouki\tAction\tMovie\t1\t7\t1\n"  # two catalogue entries: the Movie one wins
        "3\tNo Such Show\tDrama\tTV\t12\t7\t1\n"
        "4\tRe:Zero\tDrama\tTV\t25\t8\t1\n"
    )
    history = "User_ID\tAnime_ID\tFeedback\n1\t1\t1\n1\t2\t1\n1\t3\t1\n2\t4\t1\n2\t1\t1\nbad\trow\n"
    ratings = "User_ID\tAnime_ID\tFeedback\n1\t1\t8\n2\t4\t10\n2\t1\t11\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("anime/anime_info.dat", info)
        zf.writestr("anime/anime_history.dat", history)
        zf.writestr("anime/anime_ratings.dat", ratings)
    return path


def _catalog_csv(path: Path) -> Path:
    path.write_text(
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        '918,Gintama\',9,"Comedy",TV,201,1\n'
        "100,Hakuouki,7,Action,TV,12,1\n"
        "200,Hakuouki,7,Action,Movie,1,1\n"
        "300,Re: Zero,8,Drama,TV,25,1\n"
    )
    return path


def test_cooperunion_matches_titles_and_counts_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "cu.parquet"
    report = run_import(
        "cooperunion",
        _cooperunion_zip(tmp_path / "cu.zip"),
        out,
        _catalog_csv(tmp_path / "cat.csv"),
    )
    got = rows(out)
    assert [(r["user"], r["item"], r["score"], r["time"], r["row"]) for r in got] == [
        ("1", 918, 8.0, None, 0),
        ("1", 200, None, None, 1),
        ("2", 300, 10.0, None, 3),
        ("2", 918, None, None, 4),  # its rating 11 is malformed: watched, unscored
    ]
    assert {r["status"] for r in got} == {COMPLETED}
    assert report.extra["titles_matched"] == 3 and report.extra["titles_unmatched"] == 1
    assert report.extra["unmatched_titles"] == ["No Such Show"]
    assert report.extra["titles_ambiguous"] == 1
    assert report.extra["rows_dropped_unmatched_title"] == 1
    assert report.malformed == {
        "history row unreadable": 1,
        "rating row unreadable or score outside 1-10": 1,
    }
    assert read_meta(out)["has_times"] is False


def test_title_ties_break_by_type_then_episodes() -> None:
    matcher = TitleMatcher(
        [
            TitleCandidate(10, "Show", "tv", 12),
            TitleCandidate(11, "Show", "tv", 24),
            TitleCandidate(12, "Show", "movie", 1),
        ]
    )
    assert matcher.match("Show", "TV", 26) == 11
    assert matcher.match("Show", "Movie", None) == 12
    assert matcher.match("SHOW!", "OVA", 13) == 10  # no type match: closest episodes (12)
    assert normalize_title("Fate/Zero &amp; Co.") == normalize_title("fate zero & co")


def test_cooperunion_real_sample(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cu.parquet"
    report = run_import(
        "cooperunion",
        shared_data / "anime" / "cooperunion-5k-users.zip",
        out,
        shared_data / "catalog" / "mal-anime-17k.csv",
    )
    assert report.rows_read == 520_609
    extra = report.extra
    assert extra["titles"] == 7_390
    assert extra["titles_matched"] + extra["titles_unmatched"] == 7_390
    # The data README reports 6,917 matches with a similar normalization.
    assert 6_850 <= extra["titles_matched"] <= 6_950
    assert report.rows_kept + extra["rows_dropped_unmatched_title"] == 520_609


# ----- MAL XML folder --------------------------------------------------------------------------


def test_mal_xml_folder_reads_plain_and_gzipped_and_counts_bad_files(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a.xml").write_bytes(
        modern_export(
            modern_anime(1, "Completed", score=9, watched=26)
            + modern_anime(5, "Watching", rewatching=1),
            user="alice",
        )
    )
    (folder / "carol.xml.gz").write_bytes(
        gzip.compress(modern_export(modern_anime(7, "Plan to Watch"), user=""))
    )
    (folder / "broken.xml").write_bytes(b"<myanimelist><anime>")
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "x.parquet"
    report = run_import("mal-xml", folder, out)
    got = rows(out)
    assert [(r["user"], r["item"], r["score"], r["status"], r["row"]) for r in got] == [
        ("alice", 1, 9.0, COMPLETED, 0),
        ("alice", 5, None, REWATCHING_CODE, 1),
        ("carol", 7, None, STATUS_CODES[Status.PLAN_TO_WATCH], 2),
    ]
    assert report.malformed == {"unreadable export file": 1}
    assert report.extra["files"] == 3 and report.extra["users"] == 2


def test_mal_xml_real_fixture(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    for name in (
        "legacy-list-163-entries.xml",
        "legacy-list-invalid-control-chars.xml",
        "legacy-no-such-user.xml",
    ):
        shutil.copy(shared_data / "fixtures" / "mal-xml" / name, folder / name)
    report = run_import("mal-xml", folder, tmp_path / "x.parquet")
    assert report.rows_kept == 163
    assert report.malformed == {"unreadable export file": 1}
    assert report.extra["empty_lists"] == 1
