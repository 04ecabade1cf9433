"""The vectorised batch builders against the row-by-row ones they replaced.

Their random streams differ (a counter-based hash per sample instead of a numpy Generator per
sample), so each builder is checked in two halves: (a) given the same draws, every array equals what
the old assembly through `encode` makes of them (`rowwise_batches.assemble_*`); (b) the draws
themselves: windows, masks, cuts and shuffles have the intended distribution, depend on the seed
alone, and a sample draws the same whether it is built with the whole batch or by one of two ranks.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.training import rowwise_batches as old
from tests.training.tiny_data import planted_dataset
from training import batches
from training.batches import Drawn, UserParts
from training.dataset import TEST, TRAIN, VALIDATION, Dataset, History, write_split

MAX_LEN = 6


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Timed data split two ways (each user's training part one run, or scattered) and untimed."""
    root = tmp_path_factory.mktemp("builders")
    timed = Dataset(planted_dataset(root / "timed", n_users=40))
    rng = np.random.default_rng(5)
    labels = rng.choice([TRAIN] * 6 + [VALIDATION, TEST], size=timed.n_interactions)
    write_split(timed.path, "scattered", labels)
    untimed = Dataset(planted_dataset(root / "untimed", n_users=40, has_times=False))
    return {
        "timed": UserParts(timed, "loo"),
        "scattered": UserParts(timed, "scattered"),
        "untimed": UserParts(untimed, "loo"),
    }


KINDS = ("timed", "scattered", "untimed")


def _draw(parts: UserParts, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users = rng.choice(parts.users_with(min_train=2), n)
    return users, rng.integers(0, 2**63, n, dtype=np.uint64)


def _histories(parts: UserParts, drawn: Drawn) -> list[History]:
    """One History per sample from the drawn dataset rows, the way the old builders held them."""
    data = parts.dataset
    return [
        History(
            np.asarray(data.items[rows]),
            np.asarray(data.scores[rows]),
            np.asarray(data.statuses[rows]),
            np.asarray(data.progress[rows]),
            np.asarray(data.times[rows]),
        )
        for rows in np.split(drawn.rows, np.cumsum(drawn.lengths)[:-1])
    ]


def _per_sample(drawn: Drawn) -> list[list[int]]:
    return [r.tolist() for r in np.split(drawn.rows, np.cumsum(drawn.lengths)[:-1])]


def _assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


# ----------------------------------------------------------------- (a) same draws, same arrays


@pytest.mark.parametrize("kind", KINDS)
def test_sasrec_batch_is_the_row_by_row_assembly_of_its_draws(datasets, kind):
    parts = datasets[kind]
    users, seeds = _draw(parts, 32)
    windows = batches.draw_windows(parts, users, seeds, MAX_LEN + 1, shuffle=not parts.has_times)
    expected = old.assemble_sasrec(
        _histories(parts, windows), max_len=MAX_LEN, has_times=parts.has_times
    )
    _assert_same(batches.sasrec_batch(parts, users, seeds, max_len=MAX_LEN), expected)


@pytest.mark.parametrize("kind", KINDS)
def test_pretrain_batch_is_the_row_by_row_assembly_of_its_draws(datasets, kind):
    parts = datasets[kind]
    users, seeds = _draw(parts, 32)
    episodes = np.arange(parts.n_items) % 5 * 4  # some unknown (0), to exercise progress
    settings = {"max_len": MAX_LEN, "mask_prob": 0.3, "query_prob": 0.5}
    drawn, chosen, query = batches.pretrain_draw(parts, users, seeds, **settings)
    expected = old.assemble_pretrain(
        _histories(parts, drawn),
        np.split(chosen, np.cumsum(drawn.lengths)[:-1]),
        query,
        max_len=MAX_LEN,
        has_times=parts.has_times,
        episodes=episodes,
    )
    got = batches.pretrain_batch(parts, users, seeds, episodes=episodes, **settings)
    _assert_same(got, expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_next", (1, 2))  # one target: read from the history's records
def test_finetune_batch_is_the_row_by_row_assembly_of_its_draws(datasets, kind, n_next):
    parts = datasets[kind]
    users, seeds = _draw(parts, 32)
    # A short max_len, so that long histories are cut to their newest entries.
    settings = {"holdout_share": 0.3, "n_next": n_next}
    history, target = batches.finetune_draw(parts, users, seeds, **settings)
    expected = old.assemble_finetune(
        _histories(parts, history),
        _histories(parts, target),
        max_len=4,
        has_times=parts.has_times,
        episodes=np.full(parts.n_items, 12),
    )
    got = batches.finetune_batch(
        parts, users, seeds, max_len=4, episodes=np.full(parts.n_items, 12), **settings
    )
    _assert_same(got, expected)


@pytest.mark.parametrize("kind", ("timed", "scattered"))
@pytest.mark.parametrize("use_times", (False, True))
@pytest.mark.parametrize("queries", (True, False))
def test_next_entries_batch_is_the_row_by_row_assembly_of_its_draws(
    datasets, kind, use_times, queries
):
    parts = datasets[kind]
    users, seeds = _draw(parts, 32)
    windows = batches.draw_windows(parts, users, seeds, MAX_LEN, shuffle=False)
    expected = old.assemble_next_entries(
        _histories(parts, windows),
        max_len=MAX_LEN,
        has_times=True,
        use_times=use_times,
        queries=queries,
    )
    got = batches.next_entries_batch(
        parts, users, seeds, max_len=MAX_LEN, use_times=use_times, queries=queries
    )
    _assert_same(got, expected)


# ------------------------------------------------------------------------------- (b) the draws


@pytest.mark.parametrize("kind", KINDS)
def test_train_rows_are_each_users_training_part(datasets, kind):
    parts = datasets[kind]
    users = np.arange(parts.dataset.n_users)
    n = parts.counts[TRAIN][users]
    rows = parts.train_rows(users, np.zeros_like(n), n)
    expected = np.concatenate([parts.part(int(u)).items for u in users])
    np.testing.assert_array_equal(parts.dataset.items[rows], expected)
    # Only where a user's training part is not one run is an index per entry built.
    assert (parts._train_layout()[1] is None) == (kind == "timed")


@pytest.mark.parametrize("kind", ("timed", "scattered"))
def test_windows_are_consecutive_training_entries_starting_anywhere(datasets, kind):
    parts = datasets[kind]
    user = int(np.argmax(parts.counts[TRAIN]))
    n = int(parts.counts[TRAIN][user])
    length = 3
    seeds = np.random.default_rng(1).integers(0, 2**63, 4000, dtype=np.uint64)
    drawn = batches.draw_windows(parts, np.full(4000, user), seeds, length, shuffle=False)
    everything = parts.train_rows(np.array([user]), np.array([0]), np.array([n]))
    starts = []
    for rows in _per_sample(drawn):
        start = int(np.flatnonzero(everything == rows[0])[0])
        assert rows == everything[start : start + length].tolist()
        starts.append(start)
    counts = np.bincount(starts, minlength=n - length + 1)
    assert len(counts) == n - length + 1  # never past the end
    expected = 4000 / (n - length + 1)
    assert (np.abs(counts - expected) < 0.25 * expected).all(), counts


def test_untimed_windows_are_random_subsets_in_random_order(datasets):
    parts = datasets["untimed"]
    user = int(np.argmax(parts.counts[TRAIN]))
    n = int(parts.counts[TRAIN][user])
    everything = parts.train_rows(np.array([user]), np.array([0]), np.array([n]))
    seeds = np.random.default_rng(2).integers(0, 2**63, 4000, dtype=np.uint64)
    drawn = batches.draw_windows(parts, np.full(4000, user), seeds, 3, shuffle=True)
    firsts = []
    for rows in _per_sample(drawn):
        assert len(set(rows)) == 3 and set(rows) <= set(everything.tolist())
        firsts.append(int(np.flatnonzero(everything == rows[0])[0]))
    # Every training entry comes first equally often: no trace of the stored order.
    counts = np.bincount(firsts, minlength=n)
    assert (np.abs(counts - 4000 / n) < 0.25 * 4000 / n).all(), counts
    full = batches.draw_windows(parts, np.array([user]), seeds[:1], n + 5, shuffle=True)
    assert sorted(full.rows.tolist()) == sorted(everything.tolist())


@pytest.mark.parametrize("kind", ("timed", "untimed"))
def test_pretrain_masks_at_the_set_rate_and_at_least_one_entry(datasets, kind):
    parts = datasets[kind]
    users, seeds = _draw(parts, 3000, seed=3)
    drawn, chosen, query = batches.pretrain_draw(
        parts, users, seeds, max_len=MAX_LEN, mask_prob=0.2, query_prob=0.5
    )
    per_row = np.bincount(drawn.row_of[chosen], minlength=len(users))
    assert (per_row >= 1).all()
    if parts.has_times:
        assert abs(query.mean() - 0.5) < 0.03
        last = drawn.starts + drawn.lengths - 1
        assert chosen[last[query]].all()
    else:
        assert not query.any()  # no "now" without times
    # Besides the query, each entry is hidden with probability 0.2, plus one where none was.
    others = drawn.lengths - query
    expected = others * 0.2 + np.where(query, 0.0, 0.8**others)
    assert abs((per_row - query).sum() / expected.sum() - 1) < 0.03


def _splitmix(x: int) -> int:
    """SplitMix64's finaliser in Python integers: the reference for `batches._mix`."""
    mask = (1 << 64) - 1
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def test_pretrain_mask_draws_are_16_bit_lanes_counted_from_the_newest_entry(datasets):
    """The mask as `_pretrain_draws` documents it: entry r places before the newest of its row is
    hidden when bits 16 (3 - r mod 4) .. + 15 of hash r div 4 of the row's _MASK stream fall below
    mask_prob * 2^16 (query_prob 0; a row with none hidden gets one more, not checked here)."""
    parts = datasets["timed"]
    users, seeds = _draw(parts, 48, seed=7)
    d = batches._pretrain_draws(parts, users, seeds, max_len=11, mask_prob=0.3, query_prob=0.0)
    golden, mask = 0x9E3779B97F4A7C15, (1 << 64) - 1
    rows_checked = 0
    for row, seed in enumerate(seeds.tolist()):
        state = _splitmix((seed + batches._MASK * golden) & mask)
        expected = []
        for r in range(int(d.lengths[row])):
            draw = _splitmix((state + (r // 4 + 1) * golden) & mask) >> (16 * (3 - r % 4))
            expected.append((draw & 0xFFFF) < int(0.3 * 2**16))
        if not any(expected):
            continue  # the extra pick
        got = d.chosen[row, d.width - 1 :: -1][: int(d.lengths[row])]
        assert got.tolist() == expected, row
        assert not d.chosen[row, : d.width - int(d.lengths[row])].any()  # padding
        rows_checked += 1
    assert rows_checked > 40


def test_finetune_cuts_fall_anywhere_between_the_first_and_last_entry(datasets):
    parts = datasets["timed"]
    user = int(np.argmax(parts.counts[TRAIN]))
    n = int(parts.counts[TRAIN][user])
    seeds = np.random.default_rng(4).integers(0, 2**63, 3000, dtype=np.uint64)
    history, target = batches.finetune_draw(
        parts, np.full(3000, user), seeds, holdout_share=0.1, n_next=2
    )
    counts = np.bincount(history.lengths, minlength=n)
    assert counts[0] == 0 and len(counts) == n  # cut in 1..n-1
    assert (np.abs(counts[1:] - 3000 / (n - 1)) < 0.25 * 3000 / (n - 1)).all(), counts
    np.testing.assert_array_equal(target.lengths, np.minimum(2, n - history.lengths))


def test_untimed_finetune_holds_out_a_share_and_keeps_the_rest_as_history(datasets):
    parts = datasets["untimed"]
    users, seeds = _draw(parts, 200, seed=6)
    history, target = batches.finetune_draw(parts, users, seeds, holdout_share=0.3, n_next=1)
    n = parts.counts[TRAIN][users]
    np.testing.assert_array_equal(target.lengths, np.clip(np.rint(0.3 * n), 1, n - 1))
    for u, h, t in zip(users, _per_sample(history), _per_sample(target), strict=True):
        everything = parts.train_rows(np.array([u]), np.array([0]), parts.counts[TRAIN][[u]])
        assert sorted(h + t) == sorted(everything.tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_batches_are_a_function_of_the_seeds(datasets, kind):
    parts = datasets[kind]
    users, seeds = _draw(parts, 16)
    first = batches.pretrain_batch(parts, users, seeds, max_len=4, mask_prob=0.3, query_prob=0.5)
    again = batches.pretrain_batch(parts, users, seeds, max_len=4, mask_prob=0.3, query_prob=0.5)
    other = batches.pretrain_batch(
        parts, users, seeds + np.uint64(1), max_len=4, mask_prob=0.3, query_prob=0.5
    )
    _assert_same(again, first)
    assert any(not np.array_equal(first[k], other[k]) for k in first if k in other)


def _unpadded(batch: dict, name: str) -> list[list[int]]:
    lengths = (batch["items"] != 0).sum(axis=1)
    return [row[len(row) - n :].tolist() for row, n in zip(batch[name], lengths, strict=True)]


@pytest.mark.parametrize("kind", KINDS)
def test_two_ranks_building_halves_draw_what_one_process_draws(datasets, kind):
    parts = datasets[kind]
    users, seeds = _draw(parts, 24)
    halves = (slice(0, 12), slice(12, 24))
    whole = batches.draw_windows(parts, users, seeds, 4, shuffle=not parts.has_times)
    split = [
        batches.draw_windows(parts, users[h], seeds[h], 4, shuffle=not parts.has_times)
        for h in halves
    ]
    assert _per_sample(whole) == _per_sample(split[0]) + _per_sample(split[1])
    settings = {"max_len": 4, "mask_prob": 0.3, "query_prob": 0.5}
    one = batches.pretrain_batch(parts, users, seeds, **settings)
    ranks = [batches.pretrain_batch(parts, users[h], seeds[h], **settings) for h in halves]
    for name in ("items", "scores", "times", "positions"):
        assert _unpadded(one, name) == _unpadded(ranks[0], name) + _unpadded(ranks[1], name)
    history, target = batches.finetune_draw(parts, users, seeds, holdout_share=0.3, n_next=2)
    parts_drawn = [
        batches.finetune_draw(parts, users[h], seeds[h], holdout_share=0.3, n_next=2)
        for h in halves
    ]
    for i, drawn in enumerate((history, target)):
        assert _per_sample(drawn) == [s for p in parts_drawn for s in _per_sample(p[i])]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), n=st.integers(1, 2**40))
def test_bounded_draws_stay_in_range(seed, n):
    bits = batches._bits(batches._stream(np.array([seed], dtype=np.uint64), 1))
    value = int(batches._below(bits, np.array([n]))[0])
    assert 0 <= value < n
