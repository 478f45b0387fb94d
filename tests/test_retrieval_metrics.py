import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from benchmark.errors import BenchError
from benchmark.metrics.retrieval import retrieval_metrics

RECALL_AT = (1, 2, 4, 8)


def naive_metrics(query, gallery, query_labels, gallery_labels, recall_at, exclude_self, distance):
    """One query at a time in float64: stable argsort, remove self by index, count."""
    query, gallery = query.double().numpy(), gallery.double().numpy()
    if distance == "cosine":
        query = query / np.linalg.norm(query, axis=1, keepdims=True)
        gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    hits = {k: 0 for k in recall_at}
    map_sum = r_precision_sum = 0.0
    counted = lone = 0
    for i, q in enumerate(query):
        if distance == "cosine":
            keys = [-float(np.dot(q, g)) for g in gallery]
        else:
            keys = [float(np.sum((q - g) ** 2)) for g in gallery]
        order = [j for j in np.argsort(keys, kind="stable") if not (exclude_self and j == i)]
        relevant = [int(gallery_labels[j] == query_labels[i]) for j in order]
        r = sum(relevant)
        if r == 0:
            lone += 1
            continue
        counted += 1
        for k in recall_at:
            hits[k] += any(relevant[:k])
        r_precision_sum += sum(relevant[:r]) / r
        map_sum += sum(sum(relevant[: n + 1]) / (n + 1) * relevant[n] for n in range(r)) / r
    results = {f"recall@{k}": hits[k] / counted for k in recall_at}
    results |= {"map@r": map_sum / counted, "r_precision": r_precision_sum / counted}
    return results | {"queries": counted, "queries_without_relevant": lone}


def assert_same(actual, expected):
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=1e-12), key


def random_set(seed, n=40, dim=4, num_labels=6):
    """Continuous points plus exact duplicates (ties) and one lone label (99)."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, dim, generator=generator)
    labels = torch.randint(0, num_labels, (n,), generator=generator)
    embeddings[[3, 30, 31]] = embeddings[[20, 2, 2]]  # copies before and after the original
    labels[[30, 7]] = torch.tensor([labels[2], 99])
    return embeddings, labels


def test_hand_computed_example():
    # 1-D, squared Euclidean, query = gallery. i(l) is point i with label l; rankings have the
    # query itself removed:
    #   q0 x=0  l0: 1(1) 2(0) 3(0) 4(1) 5(9) -> rel 0 1 1 0 0, R=2: R@1 0 R@2 1  RP 1/2 AP 1/4
    #   q1 x=1  l1: 0,2 tie at d=1, 0 first; 3 4 5 -> rel 0 0 0 1 0, R=1: R@4 1 RP 0 AP 0
    #   q2 x=2  l0: 1(1) 0(0) 3(0) 4(1) 5 -> rel 0 1 1 0 0, R=2: R@2 1  RP 1/2 AP 1/4
    #   q3 x=10 l0: 2(0) 1(1) 0(0) 4(1) 5 -> rel 1 0 1 0 0, R=2: R@1 1  RP 1/2 AP (1+0)/2
    #   q4 x=30 l1: 3(0) 2(0) 1(1) 0(0) 5 -> rel 0 0 1 0 0, R=1: R@4 1 RP 0 AP 0
    #   q5 x=-50 l9: no other 9 -> left out.
    # recall@1 = 1/5, recall@2 = 3/5, recall@4 = 5/5, RP = 1.5/5, MAP@R = 1/5.
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [30.0], [-50.0]])
    labels = torch.tensor([0, 1, 0, 0, 1, 9])
    result = retrieval_metrics(
        x, x, labels, labels, recall_at=[1, 2, 4], exclude_self=True, distance="euclidean"
    )
    expected = {"recall@1": 0.2, "recall@2": 0.6, "recall@4": 1.0, "map@r": 0.2, "r_precision": 0.3}
    assert_same(result, expected | {"queries": 5, "queries_without_relevant": 1})


def test_ties_go_to_the_lower_gallery_index():
    # Both gallery items are at distance 1 from the query; the one listed first ranks first.
    query, query_labels = torch.tensor([[0.0]]), torch.tensor([0])
    gallery = torch.tensor([[1.0], [-1.0]])
    options = {"recall_at": [1], "exclude_self": False, "distance": "euclidean"}
    first_wrong = retrieval_metrics(query, gallery, query_labels, torch.tensor([1, 0]), **options)
    first_right = retrieval_metrics(query, gallery, query_labels, torch.tensor([0, 1]), **options)
    assert (first_wrong["recall@1"], first_wrong["map@r"]) == (0.0, 0.0)
    assert (first_right["recall@1"], first_right["map@r"]) == (1.0, 1.0)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_duplicate_ranked_before_the_query_is_not_removed(distance):
    # Points 0 and 1 are identical; for query 1 the tie puts point 0 (label 1, not relevant)
    # first. Removing self by index leaves 0 2 3 -> rel 0 1 0, a miss at 1. Dropping column 0
    # would drop point 0 and keep the query itself as a hit. Every query misses at rank 1:
    # 1-D: q0 1(0) 2(0) 3(1) | q1 0(1) 2(0) 3(1) | q2 0(1) 1(0) tied, 3(1) | q3 2(0) 0(1) 1(0)
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    if distance == "euclidean":
        x = torch.tensor([[0.0], [0.0], [1.0], [5.0]])
    labels = torch.tensor([1, 0, 0, 1])
    result = retrieval_metrics(
        x, x, labels, labels, recall_at=[1, 2], exclude_self=True, distance=distance
    )
    assert result["recall@1"] == 0.0
    assert result["map@r"] == 0.0
    assert result["queries"] == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_matches_naive_loop(seed, distance, exclude_self):
    gallery, gallery_labels = random_set(seed)
    query, query_labels = gallery, gallery_labels
    if not exclude_self:
        query, query_labels = gallery[10:25].clone(), gallery_labels[10:25].clone()
        query[5:] += 0.1 * torch.randn(10, 4, generator=torch.Generator().manual_seed(seed))
        query_labels[6] = 77  # a label the gallery lacks; the first 5 queries tie exactly
    args = (query, gallery, query_labels, gallery_labels)
    result = retrieval_metrics(
        *args, recall_at=RECALL_AT, exclude_self=exclude_self, distance=distance, block_size=16
    )
    expected = naive_metrics(*args, RECALL_AT, exclude_self, distance)
    assert_same(result, expected)
    assert result["queries_without_relevant"] >= 1


@pytest.mark.parametrize("exclude_self", [True, False])
def test_matches_naive_loop_on_an_integer_grid_full_of_ties(exclude_self):
    # Small integers are exact in float32, so distinct points at equal distance tie exactly.
    generator = torch.Generator().manual_seed(5)
    gallery = torch.randint(-2, 3, (50, 2), generator=generator).float()
    gallery_labels = torch.randint(0, 4, (50,), generator=generator)
    query, query_labels = gallery, gallery_labels
    if not exclude_self:
        query, query_labels = gallery[:20], gallery_labels[:20]
    args = (query, gallery, query_labels, gallery_labels)
    result = retrieval_metrics(
        *args, recall_at=RECALL_AT, exclude_self=exclude_self, distance="euclidean", block_size=8
    )
    assert_same(result, naive_metrics(*args, RECALL_AT, exclude_self, "euclidean"))


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_block_size_does_not_change_results(distance):
    x, labels = random_set(3, n=60)
    options = {"recall_at": RECALL_AT, "exclude_self": True, "distance": distance}
    results = [
        retrieval_metrics(x, x, labels, labels, **options, block_size=block_size)
        for block_size in (1, 7, 60, 1000)
    ]
    assert all(result == results[0] for result in results[1:])
    assert results[0]["queries"] == 59


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_agrees_with_pytorch_metric_learning(distance, exclude_self):
    generator = torch.Generator().manual_seed(11)
    gallery = torch.randn(300, 16, generator=generator)
    gallery_labels = torch.randint(0, 12, (300,), generator=generator)
    gallery_labels[0] = 50  # a lone label, left out by both
    query, query_labels = gallery, gallery_labels
    if not exclude_self:
        query = torch.randn(80, 16, generator=generator)
        query_labels = torch.randint(0, 13, (80,), generator=generator)  # label 12: lone
    metric = CosineSimilarity() if distance == "cosine" else LpDistance(normalize_embeddings=False)
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(metric),
    )
    reference = calculator.get_accuracy(
        query, query_labels, gallery, gallery_labels, ref_includes_query=exclude_self
    )
    result = retrieval_metrics(
        query,
        gallery,
        query_labels,
        gallery_labels,
        recall_at=[1],
        exclude_self=exclude_self,
        distance=distance,
    )
    assert result["recall@1"] == pytest.approx(reference["precision_at_1"], abs=1e-9)
    assert result["r_precision"] == pytest.approx(reference["r_precision"], abs=1e-9)
    assert result["map@r"] == pytest.approx(reference["mean_average_precision_at_r"], abs=1e-9)
    assert result["queries_without_relevant"] >= 1


def test_no_query_with_a_relevant_item_gives_nan():
    x, labels = torch.eye(3), torch.tensor([0, 1, 2])
    result = retrieval_metrics(x, x, labels, labels, recall_at=[1], exclude_self=True)
    assert (result["queries"], result["queries_without_relevant"]) == (0, 3)
    assert math.isnan(result["recall@1"]) and math.isnan(result["map@r"])


def test_exclude_self_rejects_a_different_gallery():
    x, labels = torch.eye(3), torch.tensor([0, 1, 2])
    with pytest.raises(BenchError, match="exclude_self=True"):
        retrieval_metrics(x, x[:2], labels, labels[:2], recall_at=[1], exclude_self=True)
