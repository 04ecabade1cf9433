"""MyAnimeList XML list exports -> `AnimeList` (DESIGN §2).

Two schemas share the `<myanimelist><anime>...` shape: the modern export (statuses as words such as
"Plan to Watch", no last-updated time, handed out gzipped) and the legacy `malappinfo` one (status
codes 1/2/3/4/6, `my_last_updated` in unix seconds). Both are read, plain or gzipped.

The file comes from a chat user, so it is treated as hostile: it is parsed with expat directly and
any DOCTYPE or ENTITY declaration is refused. A real export never has one, and refusing them closes
the doors XML leaves open by design (entity-expansion bombs, external entities that point at local
files or URLs) without trusting whichever expat version is installed to defuse them. Sizes are
capped before and after decompression, so a small gzip cannot expand into gigabytes.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from xml.parsers import expat

from inference.animelist import AnimeList, ListEntry, PartialDate, Status
from inference.errors import BadExportFile

SOURCE_NAME = "mal-export"
# A 20k-entry export is about 25 MB of XML; anything far beyond that is not a list export.
MAX_XML_BYTES = 128 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"

# Modern exports spell statuses out; compared case-insensitively.
STATUS_WORDS: dict[str, Status] = {
    "watching": Status.WATCHING,
    "completed": Status.COMPLETED,
    "on-hold": Status.ON_HOLD,
    "dropped": Status.DROPPED,
    "plan to watch": Status.PLAN_TO_WATCH,
}
# Legacy exports use MyAnimeList's numeric codes (5 was never used).
LEGACY_STATUS_CODES: dict[str, Status] = {
    "1": Status.WATCHING,
    "2": Status.COMPLETED,
    "3": Status.ON_HOLD,
    "4": Status.DROPPED,
    "6": Status.PLAN_TO_WATCH,
}


class _RefusedMarkup(Exception):
    """Raised from inside an expat handler to stop the parse at a declaration we refuse."""


def parse_mal_export(data: bytes) -> AnimeList:
    """Parse the bytes of a MyAnimeList XML export (plain or gzipped, either schema).

    Raises BadExportFile with a message that says what is wrong (and where, for XML errors).
    """
    xml = _decompress(data)
    username, rows, manga_rows = _parse_rows(xml)
    if not rows and manga_rows:
        raise BadExportFile(
            "this is a manga list export; export your anime list instead", service=SOURCE_NAME
        )
    entries = [_entry(fields, line) for line, fields in rows]
    return AnimeList(source=SOURCE_NAME, username=username, entries=entries)


def read_mal_export(path: Path | str) -> AnimeList:
    """Read and parse an export file; errors name the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_XML_BYTES:
            raise BadExportFile(
                f"{path}: file is too large for a list export ({size / 2**20:.0f} MiB)",
                service=SOURCE_NAME,
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadExportFile(f"no such file: {path}", service=SOURCE_NAME) from None
    except IsADirectoryError:
        raise BadExportFile(
            f"{path} is a folder, not an export file", service=SOURCE_NAME
        ) from None
    except OSError as exc:
        raise BadExportFile(
            f"cannot read {path}: {exc.strerror or exc}", service=SOURCE_NAME
        ) from None
    try:
        return parse_mal_export(data)
    except BadExportFile as exc:
        raise BadExportFile(f"{path}: {exc}", service=SOURCE_NAME) from None


def _decompress(data: bytes) -> bytes:
    """The XML bytes: gunzipped when the data starts with the gzip magic, whatever the file name."""
    if not data or data.isspace():
        raise BadExportFile("the file is empty", service=SOURCE_NAME)
    if not data.startswith(GZIP_MAGIC):
        if len(data) > MAX_XML_BYTES:
            raise BadExportFile("the file is too large for a list export", service=SOURCE_NAME)
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            # Read one byte past the cap to tell "exactly at the cap" from "over it".
            xml = f.read(MAX_XML_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadExportFile(
            f"the gzip data is corrupt or truncated ({exc})", service=SOURCE_NAME
        ) from None
    if len(xml) > MAX_XML_BYTES:
        raise BadExportFile(
            "the unpacked export is too large for a list export", service=SOURCE_NAME
        )
    if not xml or xml.isspace():
        raise BadExportFile("the gzip file holds nothing", service=SOURCE_NAME)
    return xml


Row = tuple[int, dict[str, str]]  # (line of the <anime> tag, field name -> text)


def _parse_rows(xml: bytes) -> tuple[str | None, list[Row], int]:
    """Walk the document once: (user name, anime rows, count of manga rows)."""
    parser = expat.ParserCreate()
    stack: list[str] = []
    rows: list[Row] = []
    myinfo: dict[str, str] = {}
    current: dict[str, str] | None = None
    text: list[str] = []
    manga_rows = 0

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal current, manga_rows
        if not stack and name != "myanimelist":
            raise _RefusedMarkup(f"this is not a MyAnimeList export (the root element is <{name}>)")
        stack.append(name)
        depth = len(stack)
        if depth == 2 and name == "anime":
            current = {}
            rows.append((parser.CurrentLineNumber, current))
        elif depth == 2 and name == "manga":
            manga_rows += 1
        text.clear()

    def end(name: str) -> None:
        nonlocal current
        value = "".join(text).strip()
        text.clear()
        if len(stack) == 3:
            parent = stack[1]
            if parent == "anime" and current is not None:
                current[name] = value
            elif parent == "myinfo":
                myinfo[name] = value
        elif len(stack) == 2 and name == "anime":
            current = None
        stack.pop()

    def chars(data: str) -> None:
        if len(stack) == 3:
            text.append(data)

    def refuse_doctype(*_args: object) -> None:
        raise _RefusedMarkup("the file declares a DOCTYPE, which a MyAnimeList export never does")

    def refuse_entity(*_args: object) -> None:
        raise _RefusedMarkup(
            "the file declares XML entities, which a MyAnimeList export never does"
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_entity  # type: ignore[assignment]
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as exc:
        reason = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
        raise BadExportFile(
            f"not well-formed XML: {reason} at line {exc.lineno}, column {exc.offset + 1}",
            service=SOURCE_NAME,
        ) from None
    except _RefusedMarkup as exc:
        raise BadExportFile(
            f"{exc} (line {parser.CurrentLineNumber})", service=SOURCE_NAME
        ) from None
    username = myinfo.get("user_name") or None
    return username, rows, manga_rows


def _entry(fields: dict[str, str], line: int) -> ListEntry:
    def bad(what: str) -> BadExportFile:
        return BadExportFile(f"the entry at line {line} has {what}", service=SOURCE_NAME)

    mal_id = _int(fields.get("series_animedb_id"))
    if mal_id is None or mal_id <= 0:
        raise bad(f"no valid series_animedb_id ({fields.get('series_animedb_id', '')!r})")
    status = _status(fields.get("my_status", ""))
    if status is None:
        raise bad(f"an unknown my_status {fields.get('my_status', '')!r}")
    score = _int(fields.get("my_score") or "0")
    if score is None or not 0 <= score <= 10:
        raise bad(f"a my_score that is not 0-10 ({fields.get('my_score')!r})")
    episodes = _int(fields.get("my_watched_episodes") or "0")
    if episodes is None or episodes < 0:
        raise bad(f"a bad my_watched_episodes ({fields.get('my_watched_episodes')!r})")
    updated = _int(fields.get("my_last_updated") or "0")
    return ListEntry(
        mal_id=mal_id,
        status=status,
        rewatching=fields.get("my_rewatching", "").strip() == "1",
        score=float(score) if score else None,  # 0 means "not scored" on MyAnimeList
        episodes_watched=episodes,
        updated_at=updated if updated and updated > 0 else None,
        started=PartialDate.parse(fields.get("my_start_date")),
        finished=PartialDate.parse(fields.get("my_finish_date")),
        title=fields.get("series_title") or None,
    )


def _status(text: str) -> Status | None:
    text = text.strip()
    return LEGACY_STATUS_CODES.get(text) or STATUS_WORDS.get(text.lower())


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None
