"""MyAnimeList XML list exports -> `AnimeList` (docs/data-formats.md#myanimelist-xml-export).

Two schemas share the `<myanimelist><anime>...` shape: the modern export (statuses as words such as
"Plan to Watch", no last-updated time, handed out gzipped) and the legacy `malappinfo` one (status
codes 1/2/3/4/6, `my_last_updated` in unix seconds). Both are read, plain or gzipped.

The file comes from a chat user, so it is treated as hostile: it is parsed with expat directly and
any DOCTYPE or ENTITY declaration is refused. A real export never has one, and refusing them closes
the doors XML leaves open by design (entity-expansion bombs, external entities that point at local
files or URLs) without trusting whichever expat version is installed to defuse them. Sizes are
capped before and after decompression, so a small gzip cannot expand into gigabytes, and the XML is
inflated and parsed in chunks with the entries counted as they open, so a list past the entry cap
is refused after reading only that much of it.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.parsers import expat

from inference.animelist import (
    LARGEST_REAL_LIST,
    MAX_LIST_ENTRIES,
    MAX_TIME,
    AnimeList,
    ListEntry,
    PartialDate,
    Status,
)
from inference.errors import BadExportFile, ExportTooLarge

SOURCE_NAME = "mal-export"
# A 20k-entry export is about 25 MB of XML; anything far beyond that is not a list export.
MAX_XML_BYTES = 128 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
# Inflate and parse this much at a time: the whole file is never unpacked into memory at once.
CHUNK_BYTES = 64 * 1024
READ_BYTES = 1024 * 1024
# Bounds a real export is far inside (it nests three deep and has ~25 elements per entry, fields of
# a few hundred characters at most, no tag or comment longer than a line), so that a crafted one
# cannot make the single streaming pass slow or large.
MAX_DEPTH = 16
ELEMENTS_PER_ENTRY = 64
MAX_FIELD_CHARS = 10_000
MAX_TOKEN_BYTES = 4 * 1024 * 1024
# The fields read from an <anime> row; the text of every other one is skipped, not collected.
ANIME_FIELDS = frozenset(
    {
        "series_animedb_id",
        "series_title",
        "my_status",
        "my_score",
        "my_watched_episodes",
        "my_last_updated",
        "my_start_date",
        "my_finish_date",
        "my_rewatching",
    }
)

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
    """Raised from inside an expat handler to stop the parse at markup we refuse."""


def parse_mal_export(data: bytes, *, max_entries: int = MAX_LIST_ENTRIES) -> AnimeList:
    """Parse the bytes of a MyAnimeList XML export (plain or gzipped, either schema).

    The XML is inflated and parsed in chunks, and entries are counted as their tags open: a list
    of more than `max_entries` is refused (ExportTooLarge) before the rest is inflated or built.
    Raises BadExportFile with a message that says what is wrong (and where, for XML errors).
    """
    if not data or data.isspace():
        raise BadExportFile("the file is empty", service=SOURCE_NAME)
    chunks: Iterator[bytes | memoryview]
    if data.startswith(GZIP_MAGIC):
        chunks = _gunzipped_chunks(data)
    elif len(data) > MAX_XML_BYTES:
        raise BadExportFile("the file is too large for a list export", service=SOURCE_NAME)
    else:
        chunks = _plain_chunks(data)
    reader = _ExportReader(max_entries)
    reader.feed_all(chunks)
    if not reader.entries and reader.manga_rows:
        raise BadExportFile(
            "this is a manga list export; export your anime list instead", service=SOURCE_NAME
        )
    return AnimeList(source=SOURCE_NAME, username=reader.username, entries=reader.entries)


def read_mal_export(path: Path | str, *, max_entries: int = MAX_LIST_ENTRIES) -> AnimeList:
    """Read and parse an export file; errors name the file.

    Only a regular file is read, and at most one byte past the size cap whatever it claims to be:
    a FIFO, a device such as /dev/zero or a terminal is refused instead of blocking or filling
    memory.
    """
    path = Path(path)
    data = read_export_file(path)
    try:
        return parse_mal_export(data, max_entries=max_entries)
    except BadExportFile as exc:
        # Same class (an oversized list stays ExportTooLarge), now naming the file.
        raise type(exc)(f"{path}: {exc}", service=SOURCE_NAME) from None


def read_export_file(
    path: Path | str, max_bytes: int | None = None, *, shown_as: str | None = None
) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (default `MAX_XML_BYTES`); anything
    else (missing, a folder, a FIFO or device, too large) is a BadExportFile that says which.
    Messages name the file as `shown_as` (default: the path)."""
    path = Path(path)
    name = str(path) if shown_as is None else shown_as
    limit = MAX_XML_BYTES if max_bytes is None else max_bytes
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It changes
        # nothing for the regular files that get past the check below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadExportFile(f"no such file: {name}", service=SOURCE_NAME) from None
    except IsADirectoryError:
        raise BadExportFile(
            f"{name} is a folder, not an export file", service=SOURCE_NAME
        ) from None
    except OSError as exc:
        raise BadExportFile(
            f"cannot read {name}: {exc.strerror or exc}", service=SOURCE_NAME
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise BadExportFile(f"{name} is a folder, not an export file", service=SOURCE_NAME)
        if not stat.S_ISREG(mode):
            raise BadExportFile(
                f"{name} is not a regular file (a pipe, device or socket); "
                "give the path of a saved export file",
                service=SOURCE_NAME,
            )
        # What is read is capped, not the size fstat claims: a file can grow after the check.
        data = _read_at_most(fd, limit + 1)
    except OSError as exc:
        raise BadExportFile(
            f"cannot read {name}: {exc.strerror or exc}", service=SOURCE_NAME
        ) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise BadExportFile(
            f"{name}: file is too large for a list export (over {limit / 2**20:g} MiB)",
            service=SOURCE_NAME,
        )
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total < limit:
        part = os.read(fd, min(READ_BYTES, limit - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _plain_chunks(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_BYTES):
        yield view[start : start + CHUNK_BYTES]


def _gunzipped_chunks(data: bytes) -> Iterator[bytes]:
    """The inflated XML, one chunk at a time; refused as soon as it passes `MAX_XML_BYTES`."""
    inflated = 0
    holds_something = False
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        while True:
            try:
                chunk = f.read(CHUNK_BYTES)
            except (OSError, EOFError, zlib.error) as exc:
                raise BadExportFile(
                    f"the gzip data is corrupt or truncated ({exc})", service=SOURCE_NAME
                ) from None
            if not chunk:
                break
            inflated += len(chunk)
            if inflated > MAX_XML_BYTES:
                raise BadExportFile(
                    "the unpacked export is too large for a list export", service=SOURCE_NAME
                )
            holds_something = holds_something or not chunk.isspace()
            yield chunk
    if not holds_something:
        raise BadExportFile("the gzip file holds nothing", service=SOURCE_NAME)


class _ExportReader:
    """One pass of expat over the document, building entries as their tags close.

    Everything a crafted file could use to make the pass expensive is bounded as it streams: the
    number of entries (`max_entries`) and of elements, the nesting depth, the length of the fields
    that are kept, and the size of a single piece of markup that expat would have to hold whole.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.max_elements = ELEMENTS_PER_ENTRY * (max_entries + 1)
        self.entries: list[ListEntry] = []
        self.username: str | None = None
        self.manga_rows = 0
        self._rows = 0
        self._elements = 0
        self._stack: list[str] = []
        self._fields: dict[str, str] | None = None  # the open <anime> row's kept fields
        self._row_line = 0
        self._keep: str | None = None  # the open field whose text is kept
        self._text: list[str] = []
        self._text_chars = 0
        self._declared_encoding: str | None = None
        parser = expat.ParserCreate()
        # Text arrives in large pieces instead of one call per line: a field of a million newlines
        # is a few calls, not a million.
        parser.buffer_text = True
        parser.buffer_size = CHUNK_BYTES
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        parser.XmlDeclHandler = self._xml_decl
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_entity
        parser.UnparsedEntityDeclHandler = self._refuse_entity
        parser.ExternalEntityRefHandler = self._refuse_entity  # type: ignore[assignment]
        self._parser = parser

    def feed_all(self, chunks: Iterable[bytes | memoryview]) -> None:
        parser = self._parser
        fed = 0
        try:
            for chunk in chunks:
                parser.Parse(chunk, False)
                fed += len(chunk)
                # Expat holds an unfinished token (a tag, attribute value, comment) whole, so one
                # huge token would cost its size again in memory: nothing real comes close.
                if fed - max(parser.CurrentByteIndex, 0) > MAX_TOKEN_BYTES:
                    raise _RefusedMarkup(
                        f"the file has a single piece of markup over {MAX_TOKEN_BYTES // 2**20} MiB"
                    )
            parser.Parse(b"", True)
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
        except (LookupError, ValueError):
            # Python's codecs stand in for encodings expat lacks; an unknown or multi-byte one
            # fails there, with LookupError or ValueError, right after the declaration is read.
            if self._declared_encoding is None or self._elements:
                raise
            raise BadExportFile(
                f"the file declares the encoding {_shown(self._declared_encoding)}, which cannot "
                "be read (MyAnimeList exports are UTF-8)",
                service=SOURCE_NAME,
            ) from None

    def _start(self, name: str, _attrs: dict[str, str]) -> None:
        stack = self._stack
        if not stack and name != "myanimelist":
            raise _RefusedMarkup(
                f"this is not a MyAnimeList export (the root element is <{_clip(name)}>)"
            )
        self._elements += 1
        if self._elements > self.max_elements:
            raise _RefusedMarkup(
                f"the file has far more XML elements than a list of {self.max_entries:,} entries"
            )
        if len(stack) >= MAX_DEPTH:
            raise _RefusedMarkup("the elements nest far deeper than in a MyAnimeList export")
        stack.append(name)
        depth = len(stack)
        if depth == 2 and name in ("anime", "manga"):
            self._rows += 1
            if self._rows > self.max_entries:
                raise ExportTooLarge(
                    f"this list has more than {self.max_entries:,} entries, more than can be "
                    f"read here (the largest real lists have about {LARGEST_REAL_LIST:,})",
                    service=SOURCE_NAME,
                )
            if name == "anime":
                self._fields = {}
                self._row_line = self._parser.CurrentLineNumber
            else:
                self.manga_rows += 1
        elif depth == 3:
            parent = stack[1]
            kept = (parent == "anime" and name in ANIME_FIELDS) or (
                parent == "myinfo" and name == "user_name"
            )
            self._keep = name if kept else None
            self._text.clear()
            self._text_chars = 0

    def _end(self, name: str) -> None:
        stack = self._stack
        depth = len(stack)
        if depth == 3 and self._keep is not None:
            value = "".join(self._text).strip()
            if stack[1] == "anime" and self._fields is not None:
                self._fields[name] = value
            elif stack[1] == "myinfo":
                self.username = value or None
            self._keep = None
            self._text.clear()
        elif depth == 2 and name == "anime" and self._fields is not None:
            self.entries.append(_entry(self._fields, self._row_line))
            self._fields = None
        stack.pop()

    def _chars(self, data: str) -> None:
        if self._keep is None or len(self._stack) != 3:
            return
        self._text_chars += len(data)
        if self._text_chars > MAX_FIELD_CHARS:
            raise _RefusedMarkup(
                f"the <{_clip(self._keep)}> field is longer than {MAX_FIELD_CHARS:,} characters"
            )
        self._text.append(data)

    def _xml_decl(self, _version: str, encoding: str | None, _standalone: int) -> None:
        self._declared_encoding = encoding

    def _refuse_doctype(self, *_args: object) -> None:
        raise _RefusedMarkup("the file declares a DOCTYPE, which a MyAnimeList export never does")

    def _refuse_entity(self, *_args: object) -> None:
        raise _RefusedMarkup(
            "the file declares XML entities, which a MyAnimeList export never does"
        )


def _entry(fields: dict[str, str], line: int) -> ListEntry:
    def bad(what: str) -> BadExportFile:
        return BadExportFile(f"the entry at line {line} has {what}", service=SOURCE_NAME)

    mal_id = _int(fields.get("series_animedb_id"))
    if mal_id is None or mal_id <= 0:
        raise bad(f"no valid series_animedb_id ({_shown(fields.get('series_animedb_id', ''))})")
    status = _status(fields.get("my_status", ""))
    if status is None:
        raise bad(f"an unknown my_status {_shown(fields.get('my_status', ''))}")
    score = _int(fields.get("my_score") or "0")
    if score is None or not 0 <= score <= 10:
        raise bad(f"a my_score that is not 0-10 ({_shown(fields.get('my_score'))})")
    episodes = _int(fields.get("my_watched_episodes") or "0")
    if episodes is None or episodes < 0:
        raise bad(f"a bad my_watched_episodes ({_shown(fields.get('my_watched_episodes'))})")
    updated = _int(fields.get("my_last_updated") or "0")
    # A time past 2038 is real (and encodes); one past the year 9999 is no time at all.
    if updated is not None and updated > MAX_TIME:
        raise bad(f"a my_last_updated after the year 9999 ({_shown(fields['my_last_updated'])})")
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


def _shown(text: str | None) -> str:
    """A value quoted for a one-line message, cut short: a crafted field can be thousands long."""
    return repr(_clip(text)) if text is not None else "None"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
