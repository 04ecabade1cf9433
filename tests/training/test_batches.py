import numpy as np
import pytest

from training.batches import global_batches


def _epoch(**kwargs):
    return [gb.samples for gb in global_batches(103, 8, seed=3, epoch=2, **kwargs)]


def test_random_batches_cover_a_permutation_once():
    batches = _epoch()
    seen = np.concatenate(batches)
    assert len(batches) == 103 // 8
    assert len(np.unique(seen)) == len(seen)


def test_length_buckets_keep_each_sample_once_and_batch_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 500, size=103)
    plain = _epoch()
    bucketed = _epoch(lengths=lengths, bucket_batches=4)
    seen = np.concatenate(bucketed)
    assert len(bucketed) == len(plain)
    assert len(np.unique(seen)) == len(seen) == len(np.concatenate(plain))

    def padding(batches):  # the positions a batch pads: its longest sample times its size
        return sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches)

    assert padding(bucketed) < padding(plain) / 2
    # Shuffled batch order: the epoch does not run from short to long lists.
    maxima = [lengths[b].max() for b in bucketed]
    assert maxima != sorted(maxima)


def test_length_buckets_are_reproducible_per_epoch_and_differ_across_epochs():
    lengths = np.arange(103)
    first = _epoch(lengths=lengths, bucket_batches=4)
    again = _epoch(lengths=lengths, bucket_batches=4)
    other = [gb.samples for gb in global_batches(103, 8, 3, 3, lengths=lengths, bucket_batches=4)]
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert any((a != b).any() for a, b in zip(first, other, strict=True))


def test_length_buckets_need_one_length_per_sample():
    with pytest.raises(ValueError, match="lengths"):
        _epoch(lengths=np.ones(5), bucket_batches=2)


def _shuffled_by_index_sort(parts, users, seeds):
    """The documented shuffle order: by sample, then the draw's top 40 bits, ties by place."""
    from training import batches

    n = parts.counts[batches.TRAIN][users]
    full = batches._train_runs(parts, users, np.zeros(len(users), dtype=np.int64), n)
    keys = batches._bits(batches._stream(seeds, batches._ORDER)[full.row_of], full.within)
    keys >>= np.uint64(24)
    order = np.argsort(keys | (full.row_of.astype(np.uint64) << np.uint64(40)), kind="stable")
    return full.rows[order]


def test_the_one_key_shuffle_orders_as_the_index_sort(tmp_path, monkeypatch):
    """`_shuffled` sorts one packed key by value where it fits; the order is the index sort's,
    ties in the random bits included (forced here by keeping 2 of the 40 bits)."""
    from tests.training.tiny_data import planted_dataset
    from training import batches
    from training.dataset import Dataset

    parts = batches.UserParts(
        Dataset(planted_dataset(tmp_path / "untimed", n_users=40, has_times=False)),
        "loo",
        cache=False,
    )
    rng = np.random.default_rng(5)
    users = parts.users_with(min_train=2)
    for _ in range(10):
        picked = rng.choice(users, 16)  # repeats included
        seeds = rng.integers(0, 2**63, 16, dtype=np.uint64)
        expected = _shuffled_by_index_sort(parts, picked, seeds)
        assert np.array_equal(batches._shuffled(parts, picked, seeds).rows, expected)
    real_bits = batches._bits
    monkeypatch.setattr(batches, "_bits", lambda *a: real_bits(*a) & np.uint64(3 << 62))
    seeds = rng.integers(0, 2**63, 16, dtype=np.uint64)
    picked = rng.choice(users, 16)
    expected = _shuffled_by_index_sort(parts, picked, seeds)
    assert np.array_equal(batches._shuffled(parts, picked, seeds).rows, expected)
