import math

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from benchmark.errors import BenchError
from benchmark.metrics.clustering import AVERAGE_METHODS, kmeans, nmi, normalized_mutual_info


@pytest.mark.parametrize("average_method", AVERAGE_METHODS)
@pytest.mark.parametrize("seed", range(6))
def test_nmi_of_given_assignments_equals_sklearn(average_method, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    labels_true = rng.integers(0, rng.integers(1, 30), n) * 7 - 20  # arbitrary label values
    labels_pred = rng.integers(0, rng.integers(1, 30), n)
    if seed == 0:  # strongly dependent: mostly a relabelling of the truth
        labels_pred = np.where(rng.random(n) < 0.8, labels_true // 7 + 3, labels_pred)
    expected = normalized_mutual_info_score(labels_true, labels_pred, average_method=average_method)
    actual = normalized_mutual_info(labels_true, labels_pred, average_method=average_method)
    assert actual == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("labels_true", "labels_pred"),
    [
        ([3, 3, 3], [0, 0, 0]),  # one cluster each: 1.0
        ([0, 0, 1, 1], [5, 5, 5, 5]),  # one side has no information: 0.0
        ([0, 0, 0, 0], [0, 1, 2, 3]),
        ([0, 0, 1, 1], [1, 1, 0, 0]),  # a relabelling: 1.0
        ([0, 1, 0, 1], [0, 0, 1, 1]),  # independent: 0.0
    ],
)
@pytest.mark.parametrize("average_method", AVERAGE_METHODS)
def test_special_cases_match_sklearn(labels_true, labels_pred, average_method):
    expected = normalized_mutual_info_score(labels_true, labels_pred, average_method=average_method)
    actual = normalized_mutual_info(labels_true, labels_pred, average_method=average_method)
    assert actual == pytest.approx(expected, abs=1e-12)


def test_average_methods_differ_when_the_entropies_differ():
    # H(true) = log 2 < H(pred) = 1.5 log 2 and I = log 2, so NMI = I / mean(H_true, H_pred):
    # min -> 1, geometric -> sqrt(2/3), arithmetic -> 0.8, max -> 2/3.
    labels_true, labels_pred = [0, 0, 1, 1], [0, 1, 2, 2]
    values = {
        method: normalized_mutual_info(labels_true, labels_pred, average_method=method)
        for method in AVERAGE_METHODS
    }
    expected = {"min": 1.0, "geometric": math.sqrt(2 / 3), "arithmetic": 0.8, "max": 2 / 3}
    assert values == pytest.approx(expected, abs=1e-12)


def separated_clusters(seed: int, num_classes: int = 6, per_class: int = 30, dim: int = 5):
    generator = torch.Generator().manual_seed(seed)
    centres = 100 * torch.randn(num_classes, dim, generator=generator)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    return centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=generator), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_well_separated_clusters_give_one(seed):
    embeddings, labels = separated_clusters(seed)
    for method in AVERAGE_METHODS:
        value = nmi(embeddings, labels * 3 + 10, seed=seed, average_method=method)
        assert value == pytest.approx(1.0, abs=1e-12)


def test_kmeans_finds_separated_clusters_with_blocked_distances():
    embeddings, labels = separated_clusters(5)
    clusters = kmeans(embeddings, 6, seed=0, block_size=7)
    # Each class maps to exactly one cluster and vice versa.
    pairs = set(zip(labels.tolist(), clusters.tolist(), strict=True))
    assert len(pairs) == 6 == len({c for _, c in pairs})


def test_same_seed_same_value_and_seeds_matter():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(300, 8, generator=generator)  # no structure: k-means++ seeding shows
    labels = torch.randint(0, 10, (300,), generator=generator)
    first = nmi(embeddings, labels, seed=3)
    assert nmi(embeddings, labels, seed=3) == first
    assert torch.equal(kmeans(embeddings, 10, seed=3), kmeans(embeddings, 10, seed=3))
    assert len({nmi(embeddings, labels, seed=seed) for seed in range(4)}) > 1
    assert 0.0 <= first < 0.3


def test_duplicate_points_do_not_break_the_seeding():
    embeddings = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    labels = torch.tensor([0, 1, 2] * 3 + [0])
    clusters = kmeans(embeddings, 3, seed=0)
    assert clusters.shape == (10,) and clusters.max() < 3
    assert math.isfinite(nmi(embeddings, labels))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, y: nmi(x, y, average_method="mean"), "average_method='mean': expected one of"),
        (lambda x, y: nmi(x, y[:-1]), r"labels have shape \(9,\) but embeddings \(10, 2\)"),
        (lambda x, y: nmi(x[:, 0], y), r"embeddings are not 2-D"),
        (lambda x, y: nmi(x * float("nan"), y), "embeddings contain 20 NaN values"),
        (lambda x, y: kmeans(x, 11), "k=11"),
    ],
)
def test_bad_input_is_named(call, message):
    embeddings, labels = torch.randn(10, 2), torch.arange(10) % 3
    with pytest.raises(BenchError, match=message):
        call(embeddings, labels)
