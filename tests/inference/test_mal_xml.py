from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.animelist import MAX_LIST_ENTRIES, MAX_TIME, AnimeList, PartialDate, Status
from inference.cli import summarize_list
from inference.encoding import encode, entries_from_list, time_buckets
from inference.errors import BadExportFile, ExportTooLarge, ListSourceError, ListTooLarge
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


# ----- the entry cap, enforced while streaming ------------------------------------------------


def minimal_anime(mal_id: int) -> str:
    return (
        f"<anime><series_animedb_id>{mal_id}</series_animedb_id>"
        "<my_status>Completed</my_status></anime>\n"
    )


def test_a_list_at_the_cap_is_read_and_one_more_is_refused() -> None:
    at_cap = modern_export("".join(minimal_anime(i) for i in range(1, 51)))
    assert len(parse_mal_export(at_cap, max_entries=50)) == 50
    over = modern_export("".join(minimal_anime(i) for i in range(1, 52)))
    with pytest.raises(ExportTooLarge) as err:
        parse_mal_export(over, max_entries=50)
    # Both meanings: a bad export file for the attachment path, a too-large list for the rest.
    assert isinstance(err.value, BadExportFile) and isinstance(err.value, ListTooLarge)
    assert "more than 50 entries" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_the_default_cap_is_max_list_entries() -> None:
    rows = "".join(minimal_anime(i) for i in range(1, MAX_LIST_ENTRIES + 2))
    with pytest.raises(ExportTooLarge, match=f"more than {MAX_LIST_ENTRIES:,} entries"):
        parse_mal_export(gzip.compress(modern_export(rows)))


@pytest.mark.parametrize("packed", [False, True])
def test_the_cap_stops_the_parse_before_the_rest_of_the_file(packed: bool) -> None:
    # What follows the 11th entry is broken: a parser that read on would report that instead.
    head = b"<myanimelist>" + "".join(minimal_anime(i) for i in range(1, 12)).encode()
    tail = b"<anime>" * 200_000  # 1.4 MB of unclosed tags
    if packed:
        data = gzip.compress(head + tail)
        data = data[: len(data) // 2]  # and the gzip stream is cut off half-way
    else:
        data = head + tail + b"</broken"
    with pytest.raises(ExportTooLarge):
        parse_mal_export(data, max_entries=10)


def test_manga_rows_count_towards_the_cap() -> None:
    rows = "<manga><manga_mangadb_id>2</manga_mangadb_id></manga>" * 11
    with pytest.raises(ExportTooLarge):
        parse_mal_export(modern_export(rows), max_entries=10)


def test_read_mal_export_keeps_the_error_class_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    path.write_bytes(modern_export("".join(minimal_anime(i) for i in range(1, 6))))
    assert len(read_mal_export(path, max_entries=5)) == 5
    with pytest.raises(ExportTooLarge) as err:
        read_mal_export(path, max_entries=4)
    assert str(err.value).startswith(f"{path}: this list has more than 4 entries")


# ----- crafted values -------------------------------------------------------------------------


def legacy_anime(mal_id: int, updated: str, start: str = "0000-00-00") -> str:
    return (
        f"<anime><series_animedb_id>{mal_id}</series_animedb_id><my_status>2</my_status>"
        f"<my_start_date>{start}</my_start_date><my_last_updated>{updated}</my_last_updated>"
        "</anime>"
    )


def test_update_times_after_2038_are_kept_and_encode() -> None:
    after_2038 = 2**31 + 86_400  # 2038-01-20: past the int32 range, a real time all the same
    data = modern_export(legacy_anime(1, str(after_2038)) + legacy_anime(2, "1343264592"))
    result = parse_mal_export(data)
    assert [e.updated_at for e in result.entries] == [after_2038, 1343264592]
    arrays, _ = entries_from_list(result.entries, {1: 0, 2: 1})
    assert arrays.times.tolist() == [1343264592, after_2038]
    buckets = time_buckets(arrays.times, now=after_2038)
    assert buckets.tolist()[1] == 2  # 0 s before "now"


@pytest.mark.parametrize("updated", [str(MAX_TIME + 1), "9" * 30, str(2**63)])
def test_an_update_time_past_the_year_9999_names_its_line(updated: str) -> None:
    with pytest.raises(BadExportFile) as err:
        parse_mal_export(modern_export(legacy_anime(1, updated)))
    assert "line 5" in str(err.value) and "my_last_updated" in str(err.value)


def test_the_last_representable_second_is_kept() -> None:
    (entry,) = parse_mal_export(modern_export(legacy_anime(1, str(MAX_TIME)))).entries
    assert entry.updated_at == MAX_TIME


@pytest.mark.parametrize("start", ["99999-01-01", "10000-05-05", "0000-00-00", "-5-01-01"])
def test_a_year_out_of_range_is_an_unknown_date(start: str) -> None:
    (entry,) = parse_mal_export(modern_export(legacy_anime(1, "0", start=start))).entries
    assert entry.started is None


@pytest.mark.parametrize("encoding", ["foo-bar", "cp932", "utf-7", "rot13", "idna", "undefined"])
def test_an_encoding_that_cannot_be_read_is_named(encoding: str) -> None:
    data = f'<?xml version="1.0" encoding="{encoding}"?><myanimelist/>'.encode()
    with pytest.raises(BadExportFile) as err:
        parse_mal_export(data)
    assert f"encoding '{encoding}'" in str(err.value)


def test_a_single_byte_encoding_python_knows_is_read() -> None:
    data = (
        '<?xml version="1.0" encoding="windows-1252"?>'
        "<myanimelist><anime><series_animedb_id>1</series_animedb_id>"
        "<series_title>Caf\u00e9</series_title><my_status>Completed</my_status></anime>"
        "</myanimelist>"
    ).encode("cp1252")
    assert parse_mal_export(data).entries[0].title == "Caf\u00e9"


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(BadExportFile) as err:
        parse_mal_export(modern_export(modern_anime(1, "x" * 5000)))
    assert len(str(err.value)) < 200


# ----- markup that would make the one pass slow or large -----------------------------------


def test_a_kept_field_longer_than_any_real_one_is_refused() -> None:
    data = modern_export(f"<anime><series_title>{'a' * 10_001}</series_title></anime>")
    with pytest.raises(BadExportFile, match="<series_title> field is longer than 10,000"):
        parse_mal_export(data)


def test_long_text_in_a_field_that_is_not_read_is_skipped() -> None:
    comment = "a\n" * 50_000
    row = modern_anime(1, "Completed").replace(
        "<my_comments><![CDATA[]]>", f"<my_comments><![CDATA[{comment}]]>"
    )
    assert len(parse_mal_export(modern_export(row))) == 1


def test_deep_nesting_is_refused() -> None:
    data = b"<myanimelist>" + b"<a>" * 100 + b"</a>" * 100 + b"</myanimelist>"
    with pytest.raises(BadExportFile, match="nest far deeper"):
        parse_mal_export(data)


def test_a_flood_of_elements_that_are_not_entries_is_refused() -> None:
    data = modern_export("<myinfo>" + "<x/>" * 5000 + "</myinfo>")
    with pytest.raises(BadExportFile, match="far more XML elements than a list of 10 entries"):
        parse_mal_export(data, max_entries=10)


@pytest.mark.parametrize(
    "markup",
    [
        b'<myanimelist a="' + b"x" * 300_000 + b'"/>',
        b"<myanimelist><!--" + b"x" * 300_000 + b"--></myanimelist>",
    ],
)
def test_one_huge_piece_of_markup_is_refused_before_it_ends(
    monkeypatch: pytest.MonkeyPatch, markup: bytes
) -> None:
    import inference.sources.mal_xml as mal_xml

    monkeypatch.setattr(mal_xml, "MAX_TOKEN_BYTES", 200_000)
    with pytest.raises(BadExportFile, match="single piece of markup"):
        parse_mal_export(gzip.compress(markup))


# ----- any file at all: an AnimeList that encodes, or BadExportFile ----------------------------

INT_TEXT = st.integers().map(str) | st.integers(-(2**70), 2**70).map(str)
DATE_TEXT = st.builds(
    "{}-{:02d}-{:02d}".format, st.integers(-5, 10**6), st.integers(0, 99), st.integers(0, 99)
)
FIELD_TEXT = (
    INT_TEXT
    | DATE_TEXT
    # Text XML can carry, and now and then any text at all (control characters, surrogates).
    | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
    | st.text(max_size=10)
    | st.sampled_from(
        ["Completed", "6", " 2 ", "2038-01-20", "99999-13-40", "0000-00-00", "1_000", "", "٣"]
    )
)
# Each field's plausible values, from real ones to the edges a crafted export would try.
PLAUSIBLE: dict[str, st.SearchStrategy[str]] = {
    "series_animedb_id": st.integers(1, 2**70).map(str),
    "series_title": st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    "my_status": st.sampled_from(["Completed", "plan to watch", "On-Hold", "6", "1", " 2 "]),
    "my_score": st.integers(0, 10).map(str),
    "my_watched_episodes": st.integers(0, 2**70).map(str),
    "my_last_updated": st.integers(-(2**40), MAX_TIME + 2**20).map(str),
    "my_start_date": DATE_TEXT,
    "my_finish_date": DATE_TEXT,
    "my_rewatching": st.sampled_from(["0", "1", ""]),
    "my_comments": st.text(max_size=20),
}
FIELDS = list(PLAUSIBLE)
ENCODINGS = (
    st.sampled_from(["UTF-8", "utf-16", "latin-1", "ascii", "cp1252", "koi8-r", "utf-32"])
    | st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,10}", fullmatch=True)
    | st.text(max_size=12)
)


def _xml_text(text: str) -> str:
    # Escaped, but characters XML forbids are left in: refusing them is part of what is tested.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def crafted_exports(draw: st.DrawFn) -> bytes:
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            # Every field plausible but at most one: the values reach the entry and the encoder.
            fields = {name: draw(values) for name, values in PLAUSIBLE.items()}
            odd = draw(st.none() | st.sampled_from(FIELDS))
            if odd is not None:
                fields[odd] = draw(FIELD_TEXT)
        else:
            fields = draw(st.dictionaries(st.sampled_from(FIELDS), FIELD_TEXT))
        attributes = draw(
            st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), FIELD_TEXT, max_size=2)
        )
        attrs = "".join(
            f' {k}="{_xml_text(v).replace(chr(34), "&quot;")}"' for k, v in attributes.items()
        )
        body = "".join(f"<{k}>{_xml_text(v)}</{k}>" for k, v in fields.items())
        rows.append(f"<anime{attrs}>{body}</anime>")
    user = _xml_text(draw(FIELD_TEXT))
    document = f"<myanimelist><myinfo><user_name>{user}</user_name></myinfo>{''.join(rows)}"
    document += "</myanimelist>"
    encoding = draw(ENCODINGS) if draw(st.booleans()) else None
    if encoding is not None:
        document = f'<?xml version="1.0" encoding="{encoding}"?>\n' + document
    try:
        data = document.encode(encoding or "utf-8")
    except (LookupError, ValueError):  # no such codec, or it cannot spell the text
        data = document.encode()
    if draw(st.booleans()):
        data = gzip.compress(data)
    return data


def parses_or_refuses(data: bytes) -> None:
    try:
        result = parse_mal_export(data)
    except BadExportFile as exc:
        assert str(exc) and len(str(exc).splitlines()) == 1
        return
    # What the engine does with a list: every entry known to the vocabulary, encoded with "now".
    item_index = {entry.mal_id: i for i, entry in enumerate(result.entries)}
    arrays, unknown = entries_from_list(result.entries, item_index)
    assert unknown == 0
    encoded = encode([arrays], 64, has_times=True, now=[1_800_000_000], append_query=True)
    assert encoded.items.shape[0] == 1
    assert AnimeList.from_json(result.to_json()).entries == result.entries
    summarize_list(result)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(crafted_exports())
def test_any_crafted_export_parses_and_encodes_or_is_refused(data: bytes) -> None:
    parses_or_refuses(data)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(data: bytes) -> None:
    parses_or_refuses(data)
    parses_or_refuses(gzip.compress(data))
    parses_or_refuses(b"<myanimelist>" + data)
