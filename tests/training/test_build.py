from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inference.animelist import NO_TIME, score_to_int
from training.build import BuildError, BuildOptions, build, scores_to_int8
from training.dataset import TEST, TRAIN, VALIDATION, Dataset
from training.npy_stream import NpyAppender
from training.parquet_schema import InteractionWriter
from training.splits import holdout_count, loo_split, random_split, temporal_split

QUIET = {"progress": False, "threads": 2}


def write_rows(path: Path, rows: list[tuple], *, synthetic: bool = False) -> Path:
    """rows: (user, item, score, status, progress, time, row)."""
    with InteractionWriter(path, source="test", synthetic=synthetic, row_group_size=4) as writer:
        for r in rows:
            writer.add(*r)
        writer.close()
    return path


def random_rows(n_users: int, n_items: int, seed: int, with_times: bool = True) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    for u in range(n_users):
        for _ in range(int(rng.integers(1, 15))):
            time = None if not with_times or rng.random() < 0.2 else int(rng.integers(1_000, 1_050))
            score = None if rng.random() < 0.3 else float(rng.integers(1, 11))
            rows.append(
                (
                    f"u{u:03d}",
                    int(rng.integers(1, n_items + 1)) * 10,
                    score,
                    int(rng.integers(0, 6)),
                    3,
                    time,
                    len(rows),
                )
            )
    order = rng.permutation(len(rows))  # the file's physical order must not matter
    return [rows[i] for i in order]


def test_order_is_time_with_unknown_first_then_row(tmp_path: Path) -> None:
    rows = [
        ("b", 1, 8.0, 1, 12, 5, 0),
        ("b", 2, None, 1, 0, 5, 1),
        ("b", 3, 7.5, 1, 0, 3, 2),
        ("b", 4, None, 4, 0, None, 3),
        ("b", 5, None, 1, 0, None, 4),
        ("a", 9, 10.0, 1, 0, 100, 5),
    ]
    out = tmp_path / "ds"
    stats = build(write_rows(tmp_path / "in.parquet", rows), out, BuildOptions(**QUIET))
    ds = Dataset(out)
    assert ds.item_keys() == [1, 2, 3, 4, 5, 9]
    assert list(np.load(out / "user_keys.npy")) == ["a", "b"]
    b = ds.history(1)
    assert [ds.item_keys()[i] for i in b.items] == [4, 5, 3, 1, 2]
    assert list(b.times) == [NO_TIME, NO_TIME, 3, 5, 5]
    assert list(b.scores) == [0, 0, 8, 8, 0]  # 7.5 rounds half up
    assert list(b.progress) == [0, 0, 0, 12, 0]
    assert stats["users_last_two_same_time"] == 1  # b ends with two rows at time 5
    assert stats["rows_unknown_time"] == 2
    assert ds.has_times and not ds.synthetic


def test_duplicates_keep_the_last_in_order(tmp_path: Path) -> None:
    rows = [
        ("u", 7, 3.0, 1, 0, 50, 0),  # later in time: kept
        ("u", 7, 9.0, 3, 0, 10, 1),
        ("u", 8, None, 1, 0, 20, 2),
        ("v", 7, 5.0, 1, 0, None, 3),
        ("v", 7, 6.0, 1, 0, None, 4),  # same (unknown) time: the later row is kept
    ]
    out = tmp_path / "ds"
    stats = build(write_rows(tmp_path / "in.parquet", rows), out, BuildOptions(**QUIET))
    ds = Dataset(out)
    assert stats["duplicates_dropped"] == 2 and ds.n_interactions == 3
    u, v = ds.history(0), ds.history(1)
    assert list(u.items) == [1, 0] and list(u.scores) == [0, 3]
    assert list(v.scores) == [6]


def reference_kcore(rows: list[tuple], min_user: int, min_item: int) -> set[tuple[str, int]]:
    pairs = {(r[0], r[1]) for r in rows}
    while True:
        users: dict[str, int] = defaultdict(int)
        items: dict[int, int] = defaultdict(int)
        for u, i in pairs:
            users[u] += 1
            items[i] += 1
        kept = {(u, i) for u, i in pairs if users[u] >= min_user and items[i] >= min_item}
        if kept == pairs:
            return pairs
        pairs = kept


def test_kcore_hand_made_case_needs_several_rounds(tmp_path: Path) -> None:
    # Item 99 has 2 users; dropping it leaves user "c" with 1 item, which drops item 3 to 1 user...
    rows = [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b", 1),
        ("b", 2),
        ("b", 3),
        ("c", 3),
        ("c", 99),
        ("d", 99),
        ("d", 1),
        ("d", 2),
    ]
    full = [(u, i, None, 1, 0, None, n) for n, (u, i) in enumerate(rows)]
    out = tmp_path / "ds"
    stats = build(
        write_rows(tmp_path / "in.parquet", full),
        out,
        BuildOptions(min_user_count=2, min_item_count=3, **QUIET),
    )
    ds = Dataset(out)
    assert ds.item_keys() == [1, 2]
    assert list(np.load(out / "user_keys.npy")) == ["a", "b", "d"]
    assert ds.n_interactions == 6 and stats["kcore"]["rounds"] >= 2


@pytest.mark.parametrize("min_user,min_item", [(3, 3), (5, 1), (2, 6)])
def test_kcore_matches_reference(tmp_path: Path, min_user: int, min_item: int) -> None:
    rows = random_rows(60, 25, seed=min_user * 10 + min_item)
    out = tmp_path / "ds"
    build(
        write_rows(tmp_path / "in.parquet", rows),
        out,
        BuildOptions(min_user_count=min_user, min_item_count=min_item, **QUIET),
    )
    ds = Dataset(out)
    users, keys = np.load(out / "user_keys.npy"), ds.item_keys()
    got = {(str(users[u]), keys[i]) for u in range(ds.n_users) for i in ds.history(u).items}
    assert got == reference_kcore(rows, min_user, min_item)


def test_empty_after_kcore_is_a_clear_error(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.parquet", [("a", 1, None, 1, 0, None, 0)])
    with pytest.raises(BuildError, match="no interactions left"):
        build(path, tmp_path / "ds", BuildOptions(min_user_count=5, min_item_count=5, **QUIET))


def arrays_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.suffix in (".npy", ".json") and p.name != "stats.json"
    }


def test_build_is_deterministic_and_batching_does_not_matter(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.parquet", random_rows(80, 30, seed=1))
    build(path, tmp_path / "one", BuildOptions(seed=3, min_user_count=2, progress=False, threads=1))
    build(
        path,
        tmp_path / "two",
        BuildOptions(seed=3, min_user_count=2, progress=False, threads=2, batch_rows=7),
    )
    (tmp_path / "two" / "meta.json").write_text(
        (tmp_path / "two" / "meta.json").read_text().replace('"two"', '"one"')
    )
    first, second = arrays_of(tmp_path / "one"), arrays_of(tmp_path / "two")
    assert first.keys() >= {
        "items.npy",
        "offsets.npy",
        "splits/loo.npy",
        "splits/random.npy",
        "splits/temporal.npy",
        "splits/cold.npy",
    }
    assert first == second
    build(path, tmp_path / "three", BuildOptions(seed=4, min_user_count=2, **QUIET))
    assert arrays_of(tmp_path / "three")["splits/random.npy"] != first["splits/random.npy"]


def test_synthetic_flag_and_no_times_reach_meta(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "in.parquet", random_rows(10, 5, seed=2, with_times=False), synthetic=True
    )
    build(path, tmp_path / "ds", BuildOptions(**QUIET))
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["synthetic"] is True and meta["has_times"] is False
    assert not (tmp_path / "ds" / "splits" / "temporal.npy").exists()


def test_bad_inputs_are_refused_clearly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(BuildError, match="not a Parquet file"):
        build(junk, tmp_path / "a", BuildOptions(**QUIET))
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"user": ["a"], "item": [1]}), other)
    with pytest.raises(BuildError, match="missing column"):
        build(other, tmp_path / "b", BuildOptions(**QUIET))
    bad_status = write_rows(tmp_path / "s.parquet", [("a", 1, None, 9, 0, None, 0)])
    with pytest.raises(BuildError, match="status codes"):
        build(bad_status, tmp_path / "c", BuildOptions(**QUIET))
    with pytest.raises(BuildError, match="memory-limit"):
        build(bad_status, tmp_path / "d", BuildOptions(memory_limit="lots", **QUIET))


def test_scores_match_score_to_int() -> None:
    values = np.concatenate([np.arange(0, 10.01, 0.05), [np.nan, 0.1, 0.14, 9.95, 10.0]]).astype(
        np.float32
    )
    expected = [score_to_int(None if np.isnan(v) else float(v)) for v in values]
    assert scores_to_int8(values).tolist() == expected


def test_loo_split() -> None:
    labels = loo_split(np.array([0, 2, 5, 9]))
    assert labels.tolist() == [0, 0, 0, VALIDATION, TEST, 0, 0, VALIDATION, TEST]


def test_random_split_properties() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=300)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    labels = random_split(offsets, seed=11)
    assert np.array_equal(labels, random_split(offsets, seed=11))
    for u, n in enumerate(lengths):
        part = labels[offsets[u] : offsets[u + 1]]
        if n < 5:
            assert (part == TRAIN).all()
            continue
        n_test = int(holdout_count(np.array([n]))[0])
        assert (part == TEST).sum() == n_test == max(1, n // 10)
        assert (part == VALIDATION).sum() == max(1, (n - n_test) // 10)
    # The held-out positions are spread over the histories, not the last entries.
    last = labels[offsets[1:][lengths >= 5] - 1]
    assert 0 < (last == TEST).mean() < 0.5


def test_temporal_split() -> None:
    day = 86400
    times = np.array([NO_TIME, 0, 100 * day, 85 * day, 95 * day, 80 * day], dtype=np.int32)
    labels = temporal_split(times, days=10, chunk_rows=4)
    assert labels.tolist() == [TRAIN, TRAIN, TEST, VALIDATION, TEST, TRAIN]


def test_npy_appender_writes_loadable_files(tmp_path: Path) -> None:
    with NpyAppender(tmp_path / "x.npy", np.int16) as appender:
        appender.append(np.arange(5))
        appender.append(np.array([], dtype=np.int16))
        appender.append(np.arange(3))
    loaded = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert loaded.dtype == np.int16 and loaded.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]


def test_ml1m_kcore_counts(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[2] / "cache" / "movielens" / "ml-1m.inter"
    if not source.exists():
        pytest.skip(
            f"MovieLens not fetched: run ../shared/tools/get-movielens cache/movielens ({source})"
        )
    from training.importers import run_import

    run_import("movielens", source, tmp_path / "ml.parquet")
    stats = build(
        tmp_path / "ml.parquet",
        tmp_path / "ml",
        BuildOptions(min_user_count=5, min_item_count=5, **QUIET),
    )
    assert (stats["users"], stats["items"], stats["interactions"]) == (6_040, 3_416, 999_611)
    assert stats["users_last_two_same_time"] == 2_544


def test_vocabulary_catalogue_titles_get_an_index_without_interactions(tmp_path: Path) -> None:
    rows = random_rows(30, 8, seed=5)
    path = write_rows(tmp_path / "in.parquet", rows)
    build(path, tmp_path / "plain", BuildOptions(**QUIET))
    stats = build(path, tmp_path / "wide", BuildOptions(extra_items=(5, 20, 95, 1000), **QUIET))
    plain, wide = Dataset(tmp_path / "plain"), Dataset(tmp_path / "wide")
    keys = wide.item_keys()
    assert keys == sorted(set(plain.item_keys()) | {5, 20, 95, 1000})  # 20 is also listed
    assert stats["items_without_interactions"] == 3
    # The same interactions, under the wider vocabulary's indices.
    plain_keys = plain.item_keys()
    assert [keys[i] for i in np.asarray(wide.items)] == [
        plain_keys[i] for i in np.asarray(plain.items)
    ]
    assert np.array_equal(np.asarray(wide.split("random")), np.asarray(plain.split("random")))
    never = [keys.index(k) for k in (5, 95, 1000)]
    assert not np.isin(np.asarray(wide.items), never).any()
