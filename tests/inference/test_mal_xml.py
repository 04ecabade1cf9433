from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from inference.animelist import PartialDate, Status
from inference.errors import BadExportFile, ListSourceError
from inference.sources.mal_xml import parse_mal_export, read_mal_export

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example-export.xml"


def modern_export(entries: str, user: str = "someone") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<!-- Created by XML Export feature at MyAnimeList.net -->
<myanimelist>
  <myinfo><user_id>1</user_id><user_name>{user}</user_name><user_export_type>1</user_export_type></myinfo>
  {entries}
</myanimelist>
""".encode()


def modern_anime(
    mal_id: int,
    status: str,
    score: int = 0,
    watched: int = 0,
    start: str = "0000-00-00",
    finish: str = "0000-00-00",
    rewatching: int = 0,
    title: str = "Some Title",
) -> str:
    return f"""<anime>
    <series_animedb_id>{mal_id}</series_animedb_id>
    <series_title><![CDATA[{title}]]></series_title>
    <series_type>TV</series_type><series_episodes>12</series_episodes><my_id>0</my_id>
    <my_watched_episodes>{watched}</my_watched_episodes>
    <my_start_date>{start}</my_start_date><my_finish_date>{finish}</my_finish_date>
    <my_rated></my_rated><my_score>{score}</my_score>
    <my_status>{status}</my_status><my_comments><![CDATA[]]></my_comments>
    <my_times_watched>0</my_times_watched><my_tags><![CDATA[]]></my_tags>
    <my_rewatching>{rewatching}</my_rewatching><update_on_import>0</update_on_import>
  </anime>"""


MODERN_SAMPLE = modern_export(
    modern_anime(1, "Completed", score=9, watched=26, start="2014-03-02", finish="2014-03")
    + modern_anime(5114, "Watching", watched=10, rewatching=1, title="Fullmetal & <Brotherhood>")
    + modern_anime(30, "On-Hold", score=6, start="2016")
    + modern_anime(20, "Dropped", score=3)
    + modern_anime(19, "Plan to Watch"),
    user="modern_user",
)


# ----- real legacy fixtures -----------------------------------------------------------------


def test_legacy_export_reads_every_entry(shared_data: Path) -> None:
    result = read_mal_export(shared_data / "fixtures/mal-xml/legacy-list-163-entries.xml")
    assert result.source == "mal-export"
    assert result.username == "LordHighCaptain"
    assert len(result) == 163
    # The file's own <myinfo> totals, which the parser does not read.
    counts = result.status_counts()
    assert counts[Status.WATCHING] == 1
    assert counts[Status.COMPLETED] == 124
    assert counts[Status.DROPPED] == 1
    assert counts[Status.PLAN_TO_WATCH] == 37
    assert [e.mal_id for e in result.entries[:3]] == [853, 7311, 999999]


def test_legacy_fields_map_to_the_normalized_entry(shared_data: Path) -> None:
    result = read_mal_export(shared_data / "fixtures/mal-xml/legacy-list-163-entries.xml")
    by_id = {e.mal_id: e for e in result.entries}
    ouran = by_id[853]
    assert ouran.status is Status.WATCHING
    assert ouran.score == 7.0
    assert ouran.episodes_watched == 7
    assert ouran.updated_at == 1343264592
    assert ouran.started is None and ouran.finished is None  # 0000-00-00
    assert ouran.title == "Ouran Koukou Host Club"
    test_row = by_id[999999]
    assert test_row.title == "Test"
    assert test_row.status is Status.PLAN_TO_WATCH
    assert test_row.score is None  # my_score 0 = unscored
    assert test_row.started is None  # 0000-02-00 has no year
    school_rumble = by_id[24]
    assert school_rumble.started == PartialDate(2011, 5, 22)
    assert school_rumble.finished is None
    ah_my_goddess = by_id[50]
    assert (ah_my_goddess.started, ah_my_goddess.finished) == (
        PartialDate(2011, 7, 3),
        PartialDate(2011, 7, 19),
    )
    assert all(not e.rewatching for e in result.entries)


def test_invalid_control_characters_are_refused_with_the_line(shared_data: Path) -> None:
    path = shared_data / "fixtures/mal-xml/legacy-list-invalid-control-chars.xml"
    with pytest.raises(BadExportFile) as err:
        read_mal_export(path)
    message = str(err.value)
    assert "not well-formed" in message
    assert "line 5" in message
    assert path.name in message
    assert isinstance(err.value, ListSourceError)


def test_unknown_user_answer_is_an_empty_list(shared_data: Path) -> None:
    result = read_mal_export(shared_data / "fixtures/mal-xml/legacy-no-such-user.xml")
    assert len(result) == 0
    assert result.username is None
    assert result.source == "mal-export"


def test_gzipped_legacy_file_reads_the_same(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / "fixtures/mal-xml/legacy-list-163-entries.xml").read_bytes()
    # A misleading name: gzip is detected from the bytes, not the suffix.
    packed = tmp_path / "list.xml"
    packed.write_bytes(gzip.compress(raw))
    assert read_mal_export(packed).entries == parse_mal_export(raw).entries


# ----- modern export ------------------------------------------------------------------------


def test_modern_export_status_words_and_fields() -> None:
    result = parse_mal_export(MODERN_SAMPLE)
    assert result.username == "modern_user"
    assert [e.status for e in result.entries] == [
        Status.COMPLETED,
        Status.WATCHING,
        Status.ON_HOLD,
        Status.DROPPED,
        Status.PLAN_TO_WATCH,
    ]
    bebop, fma, eva, naruto, monster = result.entries
    assert bebop.score == 9.0 and bebop.episodes_watched == 26
    assert bebop.started == PartialDate(2014, 3, 2)
    assert bebop.finished == PartialDate(2014, 3)
    assert eva.started == PartialDate(2016)
    assert fma.rewatching and not bebop.rewatching
    assert fma.title == "Fullmetal & <Brotherhood>"  # CDATA kept verbatim
    assert fma.score is None and monster.score is None
    assert naruto.score == 3.0
    assert all(e.updated_at is None for e in result.entries)  # modern exports carry no time


@pytest.mark.parametrize("name", ["animelist.xml.gz", "animelist.xml", "export.bin"])
def test_modern_export_plain_and_gzipped_files(tmp_path: Path, name: str) -> None:
    plain = tmp_path / "plain.xml"
    plain.write_bytes(MODERN_SAMPLE)
    packed = tmp_path / name
    packed.write_bytes(gzip.compress(MODERN_SAMPLE))
    assert read_mal_export(packed).entries == read_mal_export(plain).entries
    assert len(read_mal_export(packed)) == 5


def test_status_words_are_case_insensitive() -> None:
    data = modern_export(modern_anime(1, "plan to watch") + modern_anime(2, "ON-HOLD"))
    assert [e.status for e in parse_mal_export(data).entries] == [
        Status.PLAN_TO_WATCH,
        Status.ON_HOLD,
    ]


def test_example_export_in_the_repo_parses() -> None:
    result = read_mal_export(EXAMPLE)
    assert result.username == "example_watcher"
    assert 20 <= len(result) <= 30
    assert len({e.mal_id for e in result.entries}) == len(result)
    assert set(result.status_counts().values()) != {0}
    assert all(c > 0 for c in result.status_counts().values())


# ----- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"<myanimelist><anime>", "not well-formed XML: no element found at line 1"),
        (b"\x1f\x8bnot really gzip", "gzip"),
        (gzip.compress(b"")[:10], "gzip"),
        (b"<html><body>Login</body></html>", "root element is <html>"),
        (b"this is a text file", "not well-formed XML"),
    ],
)
def test_bad_files_are_refused_with_a_reason(data: bytes, expected: str) -> None:
    with pytest.raises(BadExportFile) as err:
        parse_mal_export(data)
    assert expected in str(err.value)


def test_entity_expansion_bomb_is_refused_before_expansion() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<myanimelist><myinfo><user_name>&lol3;</user_name></myinfo></myanimelist>"""
    with pytest.raises(BadExportFile, match="DOCTYPE"):
        parse_mal_export(bomb)


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    xxe = f"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY s SYSTEM "file://{secret}">]>
<myanimelist><myinfo><user_name>&s;</user_name></myinfo></myanimelist>""".encode()
    with pytest.raises(BadExportFile) as err:
        parse_mal_export(xxe)
    assert "top secret" not in str(err.value)


def test_manga_export_is_refused_with_a_hint() -> None:
    data = b"<myanimelist><myinfo><user_export_type>2</user_export_type></myinfo>" + (
        b"<manga><manga_mangadb_id>2</manga_mangadb_id><my_status>Reading</my_status></manga>"
        b"</myanimelist>"
    )
    with pytest.raises(BadExportFile, match="manga"):
        parse_mal_export(data)


@pytest.mark.parametrize(
    ("anime", "expected"),
    [
        (modern_anime(1, "Watched it"), "unknown my_status 'Watched it'"),
        (modern_anime(1, "Completed", score=11), "my_score"),
        (modern_anime(0, "Completed"), "series_animedb_id"),
        ("<anime><my_status>Completed</my_status></anime>", "series_animedb_id"),
    ],
)
def test_bad_entries_name_their_line(anime: str, expected: str) -> None:
    with pytest.raises(BadExportFile) as err:
        parse_mal_export(modern_export(anime))
    assert expected in str(err.value)
    assert "line 5" in str(err.value)  # the <anime> tag's line in modern_export


def test_oversized_gzip_is_refused_without_unpacking_it_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import inference.sources.mal_xml as mal_xml

    monkeypatch.setattr(mal_xml, "MAX_XML_BYTES", 4000)
    bomb = gzip.compress(b"<myanimelist>" + b" " * 1_000_000 + b"</myanimelist>")
    assert len(bomb) < 4000  # small on disk, 250 times the cap unpacked
    with pytest.raises(BadExportFile, match="too large"):
        parse_mal_export(bomb)


def test_missing_file_and_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BadExportFile, match="no such file"):
        read_mal_export(tmp_path / "nope.xml")
    with pytest.raises(BadExportFile, match="folder"):
        read_mal_export(tmp_path)
