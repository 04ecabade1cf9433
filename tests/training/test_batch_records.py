"""The per-interaction token tables the batch builders gather from, and the builders on data where
some times are unknown (the planted data of `test_batch_builders` has them all)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.animelist import NO_TIME
from inference.encoding import (
    ENTRY_TOKENS,
    Entries,
    encode,
    entry_times,
    entry_tokens,
    time_buckets,
    time_buckets_shifted,
)
from tests.training import rowwise_batches as old
from tests.training.test_batch_builders import _assert_same, _draw, _histories
from tests.training.tiny_data import planted_dataset
from training import batches
from training.batches import UserParts
from training.dataset import Dataset

NOW = 1_700_000_000
_times = st.one_of(
    st.just(NO_TIME),
    st.integers(0, 2**31 - 1),
    # Gaps of exactly 2^k - 1 and 2^k seconds sit on the bucket boundaries; some after "now".
    st.integers(0, 30)
    .flatmap(lambda k: st.sampled_from([1 << k, (1 << k) - 1, -(1 << k)]))
    .map(lambda gap: NOW - gap),
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(_times, min_size=1, max_size=5), min_size=1, max_size=4))
def test_shifted_time_buckets_equal_time_buckets(rows):
    width = max(len(r) for r in rows)
    times = np.array([[NO_TIME] * (width - len(r)) + r for r in rows], dtype=np.int64)
    shifted = entry_times(times.reshape(-1), margin=0).reshape(times.shape)
    out = np.full(times.shape, -7, dtype=np.int64)
    time_buckets_shifted(out, shifted, shifted[:, -1])  # "now": each row's last time
    for row, t, n in zip(out, times, times[:, -1], strict=True):
        np.testing.assert_array_equal(row, time_buckets(t, None if n == NO_TIME else int(n)))


def test_entry_records_are_the_tokens_encode_writes_and_zero_is_padding():
    rng = np.random.default_rng(0)
    entries = Entries(
        items=rng.integers(0, 30, 9).astype(np.int32),
        scores=rng.integers(0, 11, 9).astype(np.int8),
        statuses=rng.integers(0, 6, 9).astype(np.int8),
        progress=rng.integers(0, 40, 9).astype(np.int16),
        times=np.full(9, NOW, dtype=np.int64),
    )
    episodes = np.arange(30) % 4 * 10
    records = entry_tokens(entries, episodes, margin=2)
    assert records.dtype == ENTRY_TOKENS and records.itemsize == 8
    assert not records[:2].view(np.int64).any() and not records[-2:].view(np.int64).any()
    first = Entries(
        *(getattr(entries, f)[:1] for f in ("items", "scores", "statuses", "progress", "times"))
    )
    enc = encode([entries, first], 12, has_times=False, episodes=episodes)
    got = records[2:-2]
    np.testing.assert_array_equal(got["item"], enc.items[0])
    np.testing.assert_array_equal(got["score"], enc.scores[0])
    np.testing.assert_array_equal(got["status"], enc.statuses[0])
    np.testing.assert_array_equal(got["progress"], enc.progress[0])
    np.testing.assert_array_equal(got["entry"], 1)
    for name in ("items", "scores", "statuses", "progress"):
        assert (getattr(enc, name)[1, :-1] == 0).all()  # the padding the zero record stands for


@pytest.fixture(scope="module")
def unknown_times(tmp_path_factory):
    """Timed data where a third of the times (some users' newest among them) are unknown."""
    path = planted_dataset(tmp_path_factory.mktemp("unknown") / "data", n_users=40)
    times = np.load(path / "times.npy")
    times[np.random.default_rng(3).random(len(times)) < 0.33] = NO_TIME
    np.save(path / "times.npy", times)
    return UserParts(Dataset(path), "loo")


def test_batches_with_unknown_times_are_the_row_by_row_assembly(unknown_times):
    parts = unknown_times
    users, seeds = _draw(parts, 32)
    windows = batches.draw_windows(parts, users, seeds, 7, shuffle=False)
    expected = old.assemble_sasrec(_histories(parts, windows), max_len=6, has_times=True)
    _assert_same(batches.sasrec_batch(parts, users, seeds, max_len=6), expected)
    settings = {"max_len": 6, "mask_prob": 0.3, "query_prob": 0.5}
    drawn, chosen, query = batches.pretrain_draw(parts, users, seeds, **settings)
    expected = old.assemble_pretrain(
        _histories(parts, drawn),
        np.split(chosen, np.cumsum(drawn.lengths)[:-1]),
        query,
        max_len=6,
        has_times=True,
    )
    _assert_same(batches.pretrain_batch(parts, users, seeds, **settings), expected)
    history, target = batches.finetune_draw(parts, users, seeds, holdout_share=0.3, n_next=2)
    expected = old.assemble_finetune(
        _histories(parts, history), _histories(parts, target), max_len=4, has_times=True
    )
    got = batches.finetune_batch(parts, users, seeds, max_len=4, holdout_share=0.3, n_next=2)
    _assert_same(got, expected)
    windows = batches.draw_windows(parts, users, seeds, 6, shuffle=False)
    expected = old.assemble_next_entries(
        _histories(parts, windows), max_len=6, has_times=True, use_times=True
    )
    _assert_same(
        batches.next_entries_batch(parts, users, seeds, max_len=6, use_times=True), expected
    )
