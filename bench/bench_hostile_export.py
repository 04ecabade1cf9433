"""What a hostile MyAnimeList export costs `parse_mal_export`, against a normal one.

Cases, each parsed in a fresh subprocess so that its memory is its own:

- bomb: a ~450 KB gzip that unpacks to ~127 MiB of ~1.66M valid minimal entries (refused at the
  entry cap, `MAX_LIST_ENTRIES`),
- cap: a gzipped export of exactly `MAX_LIST_ENTRIES` full entries (the largest list accepted),
- normal: a gzipped export of 500 full entries, as MyAnimeList hands it out.

Reported per case: the outcome, the wall time of the parse call (median of `--repeats` runs) and
its RSS growth (the largest of the runs): the peak resident set during the call (VmHWM, reset
through /proc/self/clear_refs just before it) minus the resident set before it, with the input
bytes already in memory. Linux only.

Run: .venv/bin/python bench/bench_hostile_export.py [--repeats 3] [--root PATH]
`--root` imports `inference` from another checkout (for a before/after comparison).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BOMB_ENTRIES = 1_660_000
# 80 bytes: 1.66M of them are the ~127 MiB of the reported file.
MINIMAL_ENTRY = b"<anime><series_animedb_id>1</series_animedb_id><my_status>2</my_status></anime>\n"


def full_entry(mal_id: int) -> str:
    """One row as the modern export writes it (every field, ~900 bytes with the indentation)."""
    status = ("Completed", "Watching", "On-Hold", "Dropped", "Plan to Watch")[mal_id % 5]
    return f"""	<anime>
		<series_animedb_id>{mal_id}</series_animedb_id>
		<series_title><![CDATA[Some Anime Title {mal_id}]]></series_title>
		<series_type>TV</series_type>
		<series_episodes>12</series_episodes>
		<my_id>0</my_id>
		<my_watched_episodes>{mal_id % 13}</my_watched_episodes>
		<my_start_date>2017-10-23</my_start_date>
		<my_finish_date>0000-00-00</my_finish_date>
		<my_rated></my_rated>
		<my_score>{mal_id % 11}</my_score>
		<my_storage></my_storage>
		<my_storage_value>0.00</my_storage_value>
		<my_status>{status}</my_status>
		<my_comments><![CDATA[]]></my_comments>
		<my_times_watched>0</my_times_watched>
		<my_rewatch_value></my_rewatch_value>
		<my_priority>LOW</my_priority>
		<my_tags><![CDATA[]]></my_tags>
		<my_rewatching>0</my_rewatching>
		<my_rewatching_ep>0</my_rewatching_ep>
		<my_discuss>1</my_discuss>
		<my_sns>default</my_sns>
		<update_on_import>0</update_on_import>
	</anime>
"""


def full_export(n: int) -> bytes:
    head = (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<myanimelist>\n\t<myinfo>\n'
        "\t\t<user_id>1</user_id>\n\t\t<user_name>bench</user_name>\n"
        f"\t\t<user_export_type>1</user_export_type>\n\t\t<user_total_anime>{n}"
        "</user_total_anime>\n\t</myinfo>\n"
    )
    rows = "".join(full_entry(i) for i in range(1, n + 1))
    return gzip.compress((head + rows + "</myanimelist>\n").encode())


def bomb() -> bytes:
    """Compressed as it is built: the 127 MiB never sits in memory here either."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    parts = [packer.compress(b'<?xml version="1.0" encoding="UTF-8" ?>\n<myanimelist>\n')]
    block = MINIMAL_ENTRY * 10_000
    for _ in range(BOMB_ENTRIES // 10_000):
        parts.append(packer.compress(block))
    parts.append(packer.compress(b"</myanimelist>\n"))
    parts.append(packer.flush())
    return b"".join(parts)


# ----- the child: one parse, measured -------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def import_from(root: Path) -> None:
    """Make `import inference` load from `root` only: never fall back to the editable install."""
    sys.meta_path[:] = [
        f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
    ]
    sys.path.insert(0, str(root))


def child(path: Path, root: Path) -> None:
    import_from(root)
    from inference.sources.mal_xml import parse_mal_export

    data = path.read_bytes()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
    before_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    try:
        outcome = f"{len(parse_mal_export(data)):,} entries"
    except Exception as exc:  # the outcome is what is reported, whatever it is
        outcome = f"{type(exc).__name__}: {str(exc)[:70]}"
    seconds = time.perf_counter() - start
    growth_mb = (_status_kb("VmHWM") - before_kb) / 1024
    print(json.dumps({"seconds": seconds, "rss_growth_mb": growth_mb, "outcome": outcome}))


def measure(path: Path, root: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--root", str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to import from")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.root)
        return 0

    # The cases come from this checkout, whichever one `--root` parses them with.
    sys.path.insert(0, str(ROOT))
    from inference.animelist import MAX_LIST_ENTRIES

    cases = {
        f"bomb: {BOMB_ENTRIES:,} minimal entries": bomb(),
        f"cap: {MAX_LIST_ENTRIES:,} full entries": full_export(MAX_LIST_ENTRIES),
        "normal: 500 full entries": full_export(500),
    }
    print(f"root {args.root}, {args.repeats} repeats, Python {sys.version.split()[0]}")
    print(f"{'case':<34} {'gzip KB':>8} {'XML MiB':>8} {'median s':>9} {'RSS +MB':>8}  outcome")
    with tempfile.TemporaryDirectory() as folder:
        for name, data in cases.items():
            path = Path(folder) / "export.xml.gz"
            path.write_bytes(data)
            unpacked = _unpacked_size(data)
            runs = [measure(path, args.root) for _ in range(args.repeats)]
            seconds = statistics.median(float(str(r["seconds"])) for r in runs)
            growth = max(float(str(r["rss_growth_mb"])) for r in runs)
            print(
                f"{name:<34} {len(data) / 1024:>8.0f} {unpacked / 2**20:>8.1f} {seconds:>9.3f}"
                f" {growth:>8.1f}  {runs[0]['outcome']}"
            )
    return 0


def _unpacked_size(data: bytes) -> int:
    size = 0
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
    return size


if __name__ == "__main__":
    raise SystemExit(main())
