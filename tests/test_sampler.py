from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.data.samplers import PKSampler
from benchmark.errors import BenchError

LABELS = np.repeat(np.arange(10), [2, 5, 5, 5, 5, 5, 5, 5, 5, 5])


def test_batches_hold_p_distinct_classes_with_k_images_each():
    sampler = PKSampler(LABELS, classes_per_batch=4, samples_per_class=3, iterations=20, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 20
    for batch in batches:
        labels = LABELS[batch]
        values, counts = np.unique(labels, return_counts=True)
        assert len(batch) == 12 and len(values) == 4 and set(counts) == {3}


def test_small_classes_are_filled_with_replacement_and_large_ones_are_not():
    sampler = PKSampler(LABELS, classes_per_batch=10, samples_per_class=3, iterations=5, seed=1)
    for batch in sampler:
        small = [i for i in batch if LABELS[i] == 0]
        assert len(small) == 3 and set(small) <= {0, 1}
        large = [i for i in batch if LABELS[i] == 5]
        assert len(set(large)) == 3


def test_same_seed_and_epoch_give_the_same_batches():
    first = PKSampler(LABELS, 4, 3, 10, seed=3)
    second = PKSampler(LABELS, 4, 3, 10, seed=3)
    assert list(first) == list(second)
    second.set_epoch(1)
    assert list(first) != list(second)


def test_more_classes_per_batch_than_classes_is_a_clear_error():
    with pytest.raises(
        BenchError, match="data.classes_per_batch=11 but the training split has only 10 classes"
    ):
        PKSampler(LABELS, 11, 2, 1, seed=0)


def test_multi_hot_labels_get_random_batches_of_p_times_k_distinct_images():
    from benchmark.data.samplers import RandomBatchSampler, training_sampler

    labels = np.eye(4)[np.arange(30) % 4]
    labels[::5, 0] = 1  # some images hold two classes
    data_cfg = SimpleNamespace(classes_per_batch=2, samples_per_class=4)  # of DataSettings
    sampler = training_sampler(labels, data_cfg, iterations=6, seed=3)
    assert isinstance(sampler, RandomBatchSampler)
    sampler.set_epoch(2)
    batches = list(sampler)
    assert len(batches) == 6 and all(len(set(b)) == len(b) == 8 for b in batches)
    assert all(0 <= i < 30 for b in batches for i in b)
    again = training_sampler(labels, data_cfg, iterations=6, seed=3)
    again.set_epoch(2)
    assert list(again) == batches
    again.set_epoch(3)
    assert list(again) != batches
    assert isinstance(training_sampler(np.arange(30) % 4, data_cfg, 6, 3), PKSampler)


def test_a_random_batch_larger_than_the_split_is_refused():
    from benchmark.data.samplers import RandomBatchSampler

    with pytest.raises(BenchError, match="A batch of 40 images .* larger than the training split"):
        RandomBatchSampler(30, 40, iterations=1, seed=0)


def test_a_p_times_k_batch_larger_than_the_split_is_refused_before_sampling():
    from benchmark.data.samplers import training_sampler

    data_cfg = SimpleNamespace(classes_per_batch=4, samples_per_class=100_000_000)
    with pytest.raises(BenchError) as error:
        training_sampler(LABELS, data_cfg, iterations=1, seed=0)
    assert str(error.value) == (
        "A batch of 400,000,000 images (data.classes_per_batch x data.samples_per_class) is "
        "larger than the training split (47 images); lower it with --set."
    )
    assert len(next(iter(PKSampler(LABELS, 4, 11, 1, seed=0)))) == 44  # up to the split's size
