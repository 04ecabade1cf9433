import numpy as np
import pytest

from inference.animelist import NO_TIME, ListEntry, Status
from inference.encoding import (
    ITEM_OFFSET,
    MASK_ITEM,
    PAD_ITEM,
    PROGRESS_UNKNOWN,
    SCORE_MASK,
    STATUS_MASK,
    TIME_NOW,
    TIME_UNKNOWN,
    Entries,
    encode,
    entries_from_list,
    mask_tokens,
    time_buckets,
)


def entries(items, times, scores=None, statuses=None, progress=None):
    n = len(items)
    return Entries(
        np.array(items, dtype=np.int32),
        np.array(scores if scores is not None else [0] * n, dtype=np.int8),
        np.array(statuses if statuses is not None else [1] * n, dtype=np.int8),
        np.array(progress if progress is not None else [0] * n, dtype=np.int16),
        np.array(times, dtype=np.int32),
    )


def test_left_padded_most_recent_kept_positions_count_back():
    long = entries([5, 6, 7, 8, 9], [10, 20, 30, 40, 50], scores=[1, 2, 3, 4, 5])
    short = entries([3], [100])
    enc = encode([long, short], max_len=3, has_times=True)
    assert enc.items.tolist() == [
        [7 + ITEM_OFFSET, 8 + ITEM_OFFSET, 9 + ITEM_OFFSET],
        [PAD_ITEM, PAD_ITEM, 3 + ITEM_OFFSET],
    ]
    assert enc.scores[0].tolist() == [3, 4, 5]
    assert enc.positions.tolist() == [[2, 1, 0], [0, 0, 0]]
    assert enc.lengths.tolist() == [3, 1]
    # "now" is the last entry's time: 20 s and 10 s before it, then 0 s.
    assert enc.times[0].tolist() == [2 + 4, 2 + 3, 2 + 0]


def test_query_is_stamped_now_and_reference_is_last_history_entry():
    enc = encode([entries([1, 2], [1000, 1008])], max_len=4, has_times=True, append_query=True)
    assert enc.items[0, -1] == MASK_ITEM
    assert enc.times[0, -1] == TIME_NOW
    assert enc.scores[0, -1] == SCORE_MASK and enc.statuses[0, -1] == STATUS_MASK
    # The batch is as wide as its longest row (here 2 entries + the query), not max_len.
    assert enc.positions[0].tolist() == [2, 1, 0]
    assert enc.times[0, :2].tolist() == [2 + 3, 2]  # 8 s before the last entry, then 0 s


def test_untimed_data_gives_no_order_signal():
    history = entries([4, 5, 6], [NO_TIME] * 3)
    enc = encode([history], max_len=8, has_times=False, append_query=True)
    assert set(enc.positions[0].tolist()) == {0}
    assert (enc.times[0, :-1] == TIME_UNKNOWN).all()
    # Even if rows carried times, untimed encoding ignores them.
    timed = encode([entries([4, 5, 6], [1, 2, 3])], max_len=8, has_times=False)
    assert (timed.times == TIME_UNKNOWN).all() and (timed.positions == 0).all()


def test_time_buckets_unknown_and_future():
    buckets = time_buckets(np.array([NO_TIME, 100, 200, 99]), now=100)
    assert buckets.tolist() == [TIME_UNKNOWN, 2, 2, 3]
    assert (time_buckets(np.array([5, 6]), now=None) == TIME_UNKNOWN).all()


def test_progress_fraction_needs_episode_counts():
    history = entries([0, 1, 2], [1, 2, 3], progress=[6, 3, 5])
    episodes = np.array([12, 0, 5])
    enc = encode([history], max_len=4, has_times=True, episodes=episodes)
    assert enc.progress[0].tolist() == [1 + 5, PROGRESS_UNKNOWN, 1 + 10]
    assert (encode([history], 4, has_times=True).progress == PROGRESS_UNKNOWN).all()


def test_mask_touches_only_masked_positions():
    enc = encode(
        [entries([1, 2, 3], [1, 2, 3], scores=[7, 8, 9], progress=[1, 1, 1])],
        5,
        has_times=True,
        episodes=np.array([2, 2, 2, 2]),
    )
    mask = np.zeros(enc.items.shape, dtype=bool)
    mask[0, -2] = True
    masked = mask_tokens(enc, mask)
    for name in ("items", "scores", "statuses", "progress", "times", "positions"):
        before, after = getattr(enc, name), getattr(masked, name)
        assert (before[~mask] == after[~mask]).all(), name
    assert masked.items[0, -2] == MASK_ITEM and masked.scores[0, -2] == SCORE_MASK
    assert masked.statuses[0, -2] == STATUS_MASK and masked.progress[0, -2] == PROGRESS_UNKNOWN
    assert masked.times[0, -2] == enc.times[0, -2]
    stamped = mask_tokens(enc, mask, stamp_now=mask)
    assert stamped.times[0, -2] == TIME_NOW


def test_padding_cannot_be_masked():
    enc = encode([entries([1], [1]), entries([1, 2], [1, 2])], 3, has_times=True)
    with pytest.raises(ValueError, match="padding"):
        mask_tokens(enc, enc.items == PAD_ITEM)


def test_entries_from_list_orders_by_time_unknown_first_and_counts_unknown_items():
    listed = [
        ListEntry(10, Status.COMPLETED, score=8.0, updated_at=300),
        ListEntry(11, Status.WATCHING, rewatching=True, updated_at=None, episodes_watched=2),
        ListEntry(12, Status.DROPPED, updated_at=100),
        ListEntry(99, Status.COMPLETED, updated_at=50),
    ]
    arrays, unknown = entries_from_list(listed, {10: 0, 11: 1, 12: 2})
    assert unknown == 1
    assert arrays.items.tolist() == [1, 2, 0]
    assert arrays.times.tolist() == [NO_TIME, 100, 300]
    assert arrays.statuses.tolist() == [5, 3, 1]
    assert arrays.scores.tolist() == [0, 0, 8]


def test_times_after_2038_encode_and_keep_their_order():
    # Past the int32 range: the cast used to raise OverflowError and fail the whole batch.
    late, later = 2**31 + 100, 2**31 + 5000
    listed = [
        ListEntry(10, Status.COMPLETED, updated_at=later),
        ListEntry(11, Status.COMPLETED, updated_at=late),
        ListEntry(12, Status.COMPLETED, updated_at=1_700_000_000),
    ]
    arrays, _ = entries_from_list(listed, {10: 0, 11: 1, 12: 2})
    assert arrays.times.tolist() == [1_700_000_000, late, later]
    enc = encode([arrays], max_len=8, has_times=True, now=[later + 1], append_query=True)
    # ~14 years, 4901 s and 1 s before "now" (log2 buckets), then the query.
    assert enc.times[0].tolist() == [2 + 28, 2 + 12, 2 + 1, TIME_NOW]
