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
