"""`encode_flat` (the training batches' encoder) equals `encode` (serving's) row by row."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.animelist import NO_TIME
from inference.encoding import Entries, encode, encode_flat, mask_tokens, time_buckets

NOW = 1_700_000_000


@st.composite
def histories(draw):
    rows = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6))
    out = []
    for n in rows:
        times = draw(
            st.lists(
                st.one_of(
                    st.just(NO_TIME),
                    st.integers(0, 2**31 - 1),
                    # Gaps of exactly 2^k - 1 and 2^k seconds sit on the bucket boundaries.
                    st.integers(0, 30)
                    .flatmap(lambda k: st.sampled_from([1 << k, (1 << k) - 1]))
                    .map(lambda gap: NOW - gap),
                ),
                min_size=n,
                max_size=n,
            )
        )
        if n and draw(st.booleans()):
            times[-1] = NOW  # most rows: the last entry has a time (training's "now")
        out.append(
            Entries(
                items=np.array(
                    draw(st.lists(st.integers(0, 19), min_size=n, max_size=n)), np.int32
                ),
                scores=np.array(
                    draw(st.lists(st.integers(0, 10), min_size=n, max_size=n)), np.int8
                ),
                statuses=np.array(
                    draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), np.int8
                ),
                progress=np.array(
                    draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)), np.int16
                ),
                times=np.array(times, np.int32),
            )
        )
    return out


def _flat(rows: list[Entries]) -> tuple[Entries, np.ndarray]:
    joined = Entries(*(np.concatenate([getattr(r, f) for r in rows]) for f in Entries.__slots__))
    return joined, np.array([len(r) for r in rows])


@settings(max_examples=150, deadline=None)
@given(
    rows=histories(),
    max_len=st.integers(2, 8),
    has_times=st.booleans(),
    append_query=st.booleans(),
    use_times=st.booleans(),
    with_episodes=st.booleans(),
)
def test_encode_flat_equals_encode(
    rows, max_len, has_times, append_query, use_times, with_episodes
):
    episodes = np.arange(20) % 13 if with_episodes else None  # some unknown (0) counts
    kwargs = {
        "has_times": has_times,
        "episodes": episodes,
        "append_query": append_query,
        "use_times": use_times,
    }
    expected = encode(rows, max_len, **kwargs)
    got = encode_flat(*_flat(rows), max_len, **kwargs)
    for name in ("items", "scores", "statuses", "times", "progress", "positions", "lengths"):
        assert getattr(got, name).dtype == getattr(expected, name).dtype, name
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


@settings(max_examples=200, deadline=None)
@given(gap=st.one_of(st.integers(0, 2**40), st.integers(0, 40).map(lambda k: (1 << k) - 1)))
def test_per_row_time_buckets_equal_the_float_logarithm(gap):
    one = Entries(
        items=np.zeros(2, np.int32),
        scores=np.zeros(2, np.int8),
        statuses=np.zeros(2, np.int8),
        progress=np.zeros(2, np.int16),
        times=np.array([0, gap], np.int64),
    )
    got = encode_flat(one, np.array([2]), 4, has_times=True).times[0]
    np.testing.assert_array_equal(got, time_buckets(one.times, gap))


def test_an_empty_row_and_a_batch_of_nothing_encode_as_encode_does():
    empty = Entries(*(np.zeros(0, np.int32) for _ in range(5)))
    for lengths in ([0], [0, 0]):
        rows = [empty] * len(lengths)
        for append_query in (False, True):
            expected = encode(rows, 4, has_times=True, append_query=append_query)
            got = encode_flat(
                empty, np.array(lengths), 4, has_times=True, append_query=append_query
            )
            np.testing.assert_array_equal(got.items, expected.items)
            np.testing.assert_array_equal(got.times, expected.times)
            np.testing.assert_array_equal(got.lengths, expected.lengths)


@settings(max_examples=60, deadline=None)
@given(rows=histories(), seed=st.integers(0, 2**32 - 1))
def test_masking_in_place_equals_masking_a_copy(rows, seed):
    enc = encode(rows, 8, has_times=True)
    rng = np.random.default_rng(seed)
    mask = (rng.random(enc.items.shape) < 0.4) & (enc.items != 0)
    stamp = rng.random(enc.items.shape) < 0.5
    expected = mask_tokens(enc, mask, stamp_now=stamp)
    own = enc.replace(**{name: getattr(enc, name).copy() for name in enc.as_dict()})
    got = mask_tokens(own, mask, stamp_now=stamp, in_place=True)
    for name in ("items", "scores", "statuses", "times", "progress", "positions"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
        np.testing.assert_array_equal(getattr(own, name), getattr(expected, name), err_msg=name)
