"""The token tables as files in the dataset's `cache/`, memory-mapped and shared by every process:
built once, reused by the next process, rebuilt when the dataset is rewritten, elsewhere (or in
memory) when the dataset folder cannot be written, and giving exactly the in-memory batches."""

import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from tests.training.tiny_data import N_ITEMS, planted_dataset
from training import batches
from training.batches import UserParts
from training.dataset import CACHE, TEST, TRAIN, VALIDATION, Dataset, write_split

MAX_LEN = 6


def _builders(episodes):
    """Every batch builder, each a function of (parts, users, seeds)."""
    return {
        "pretrain": lambda p, u, s: batches.pretrain_batch(
            p, u, s, max_len=MAX_LEN, mask_prob=0.3, query_prob=0.2, episodes=episodes
        ),
        "finetune": lambda p, u, s: batches.finetune_batch(
            p, u, s, max_len=MAX_LEN, holdout_share=0.3, n_next=3, episodes=episodes
        ),
        "next_entries": lambda p, u, s: batches.next_entries_batch(
            p, u, s, max_len=MAX_LEN, use_times=True, episodes=episodes
        ),
        "sasrec": lambda p, u, s: batches.sasrec_batch(p, u, s, max_len=MAX_LEN),
    }


def _all_batches(parts: UserParts, episodes=None, n: int = 48) -> dict[str, dict]:
    rng = np.random.default_rng(1)
    users = rng.choice(parts.users_with(min_train=2), n)
    seeds = rng.integers(0, 2**63, n, dtype=np.uint64)
    builders = _builders(episodes)
    if not parts.has_times:
        del builders["next_entries"]  # timed data only
    return {name: build(parts, users, seeds) for name, build in builders.items()}


def _assert_same(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert got.keys() == expected.keys()
    for kind, batch in expected.items():
        assert got[kind].keys() == batch.keys()
        for name, array in batch.items():
            np.testing.assert_array_equal(got[kind][name], array, err_msg=f"{kind} {name}")


def _tables(path: Path) -> dict[str, os.stat_result]:
    return {p.name: p.stat() for p in sorted((path / CACHE).glob("*.npy"))}


@pytest.fixture
def counted(monkeypatch):
    """How many times each table is built (in memory or into a file)."""
    builds = {"tokens": 0, "times": 0}

    def count(name, function):
        def wrapped(*args, **kwargs):
            builds[name] += 1
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(batches, "entry_tokens", count("tokens", batches.entry_tokens))
    monkeypatch.setattr(batches, "entry_times", count("times", batches.entry_times))
    return builds


@pytest.mark.parametrize("has_times", [True, False])
def test_memmapped_tables_give_the_in_memory_batches(tmp_path, has_times):
    path = planted_dataset(tmp_path / "data", n_users=40, has_times=has_times)
    episodes = np.arange(N_ITEMS) % 5 * 4  # some unknown (0)
    in_memory = UserParts(Dataset(path), "loo", cache=False)
    expected = [_all_batches(in_memory, eps) for eps in (None, episodes)]
    assert not (path / CACHE).exists()  # no file written
    for eps, want in zip((None, episodes), expected, strict=True):
        parts = UserParts(Dataset(path), "loo")
        _assert_same(_all_batches(parts, eps), want)
        table, _ = parts.tokens(eps)
        assert isinstance(table.base, np.memmap) and not table.flags.writeable
    names = sorted(_tables(path))
    # One tokens table per episodes array, one times table (timed data); no temporary files.
    assert [n.split("-")[0] for n in names] == ["times"] * has_times + ["tokens", "tokens"]
    assert sorted(p.name for p in (path / CACHE).iterdir() if not p.name.endswith(".lock")) == names


def test_a_second_user_parts_reads_the_first_ones_files(tmp_path, counted):
    path = planted_dataset(tmp_path / "data", n_users=40)
    n_rows = Dataset(path).n_interactions
    first = _all_batches(UserParts(Dataset(path), "loo"))
    assert counted == {"tokens": 1, "times": 1}
    files = _tables(path)
    assert len(files) == 2
    # Another process's view: a new Dataset and UserParts, or another split of the same rows.
    labels = np.random.default_rng(5).choice([TRAIN] * 6 + [VALIDATION, TEST], n_rows)
    write_split(path, "scattered", labels)
    for split in ("loo", "scattered"):
        parts = UserParts(Dataset(path), split)
        got = _all_batches(parts)
        if split == "loo":
            _assert_same(got, first)
    assert counted == {"tokens": 1, "times": 1}  # not built again
    after = _tables(path)
    assert after.keys() == files.keys()
    for name, stat in files.items():
        assert (after[name].st_ino, after[name].st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def test_a_rewritten_dataset_gets_new_tables(tmp_path, counted):
    path = planted_dataset(tmp_path / "data", n_users=40, seed=0)
    _all_batches(UserParts(Dataset(path), "loo"))
    old = _tables(path)
    # `write_dataset` (and `training build`) delete the cache ...
    planted_dataset(path, n_users=40, seed=1)
    assert not (path / CACHE).exists()
    expected = _all_batches(UserParts(Dataset(path), "loo", cache=False))
    _assert_same(_all_batches(UserParts(Dataset(path), "loo")), expected)
    assert counted == {"tokens": 3, "times": 3}
    # ... and an array replaced any other way changes the tables' names: the stale ones go.
    new = _tables(path)
    items = np.load(path / "items.npy")
    np.save(tmp_path / "items.npy", (items + 1) % N_ITEMS)
    os.replace(tmp_path / "items.npy", path / "items.npy")
    expected = _all_batches(UserParts(Dataset(path), "loo", cache=False))
    _assert_same(_all_batches(UserParts(Dataset(path), "loo")), expected)
    assert counted == {"tokens": 5, "times": 5}
    latest = _tables(path)
    assert len(latest) == 2 and not latest.keys() & (new.keys() | old.keys())


def test_an_unwritable_dataset_folder_caches_elsewhere_or_in_memory(
    tmp_path, monkeypatch, caplog, counted
):
    path = planted_dataset(tmp_path / "data", n_users=40)
    expected = _all_batches(UserParts(Dataset(path), "loo", cache=False))
    (path / CACHE).write_text("")  # cache/ cannot be made there (chmod would not stop root)
    monkeypatch.setattr(batches, "_reported", set())
    monkeypatch.setenv(batches.CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
    caplog.set_level(logging.INFO, logger="training.batches")
    for _ in range(2):
        _assert_same(_all_batches(UserParts(Dataset(path), "loo")), expected)
    assert counted == {"tokens": 2, "times": 2}  # the in-memory reference, then one file each
    [folder] = (tmp_path / "elsewhere").iterdir()
    assert len(list(folder.glob("*.npy"))) == 2
    assert [r.message.split(" (")[0] for r in caplog.records] == [
        f"token tables cached in {folder}"
    ]
    # Nowhere writable: in memory, said once.
    caplog.clear()
    monkeypatch.setattr(batches, "_reported", set())
    monkeypatch.setenv(batches.CACHE_DIR_ENV, str(path / CACHE / "below-a-file"))
    for _ in range(2):
        _assert_same(_all_batches(UserParts(Dataset(path), "loo")), expected)
    assert counted == {"tokens": 4, "times": 4}
    assert len(caplog.records) == 1 and "kept in memory" in caplog.records[0].message


def _build_in_child(path: str, queue) -> None:
    parts = UserParts(Dataset(path), "loo")
    table, margin = parts.tokens(None, MAX_LEN)
    queue.put((bytes(table.view(np.uint8)), bytes(parts.times(MAX_LEN).view(np.uint8)), margin))


def test_processes_racing_to_build_share_one_file(tmp_path):
    path = planted_dataset(tmp_path / "data", n_users=40)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_build_in_child, args=(str(path), queue)) for _ in range(4)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    reference = UserParts(Dataset(path), "loo", cache=False)
    tokens, margin = reference.tokens(None, MAX_LEN)
    expected = (
        bytes(tokens.view(np.uint8)),
        bytes(reference.times(MAX_LEN).view(np.uint8)),
        margin,
    )
    assert results == [expected] * len(children)
    assert len(_tables(path)) == 2
    assert not [p for p in (path / CACHE).iterdir() if p.name.endswith(".tmp")]
