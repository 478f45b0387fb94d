import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from benchmark.errors import BenchError
from benchmark.metrics.retrieval import (
    DEFAULT_METRICS,
    _ordering_key,
    best_ranked,
    retrieval_metrics,
)

RECALL_AT = (1, 2, 4, 8)


def naive_metrics(
    query, gallery, query_labels, gallery_labels, recall_at, exclude_self, distance, full=False
):
    """One query at a time in float64: stable argsort, remove self by index, count.

    This is the old full-sort path; `full` adds mAP over the whole ranking.
    """
    query, gallery = query.double().numpy(), gallery.double().numpy()
    if distance == "cosine":
        query = query / np.linalg.norm(query, axis=1, keepdims=True)
        gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    hits = {k: 0 for k in recall_at}
    map_sum = r_precision_sum = full_map_sum = 0.0
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
        n_all = range(len(relevant))
        full_map_sum += sum(sum(relevant[: n + 1]) / (n + 1) * relevant[n] for n in n_all) / r
    results = {f"recall@{k}": hits[k] / counted for k in recall_at}
    results["precision@1"] = results["recall@1"]
    results |= {"map@r": map_sum / counted, "r_precision": r_precision_sum / counted}
    if full:
        results["map"] = full_map_sum / counted
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
    expected |= {"precision@1": 0.2, "queries": 5, "queries_without_relevant": 1}
    assert_same(result, expected)


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


# --- Against PML on harder data ------------------------------------------------------------


def hard_set(seed, n=360, dim=8):
    """Class imbalance (one class of about 40%, many of 2-6, a lone label) and near-duplicates:
    a fifth of the points are copies moved by about 1e-2, a quarter of those relabelled."""
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([120, 40, 25, 15, 10, 8, 6, 5, 4, 3, 3, 2, 2, 1])
    num_originals = n - n // 5
    labels = torch.multinomial(sizes.double(), num_originals, True, generator=generator)
    labels[0] = 99  # lone
    centres = torch.randn(100, dim, generator=generator)
    embeddings = centres[labels] + 0.9 * torch.randn(num_originals, dim, generator=generator)
    originals = torch.randint(1, num_originals, (n // 5,), generator=generator)
    copies = embeddings[originals] + 1e-2 * torch.randn(n // 5, dim, generator=generator)
    copy_labels = labels[originals].clone()
    copy_labels[::4] = torch.randint(0, len(sizes), copy_labels[::4].shape, generator=generator)
    order = torch.randperm(n, generator=generator)
    return torch.cat([embeddings, copies])[order], torch.cat([labels, copy_labels])[order]


def pml_reference(query, gallery, query_labels, gallery_labels, exclude_self, distance):
    metric = CosineSimilarity() if distance == "cosine" else LpDistance(normalize_embeddings=False)
    calculator = AccuracyCalculator(
        include=(
            "precision_at_1",
            "r_precision",
            "mean_average_precision_at_r",
            "mean_average_precision",
        ),
        k=None,  # the whole gallery: "mean_average_precision" is then mAP over the full ranking
        device=torch.device("cpu"),
        knn_func=CustomKNN(metric),
    )
    return calculator.get_accuracy(
        query, query_labels, gallery, gallery_labels, ref_includes_query=exclude_self
    )


PML_KEYS = {
    "precision@1": "precision_at_1",
    "r_precision": "r_precision",
    "map@r": "mean_average_precision_at_r",
    "map": "mean_average_precision",
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_agrees_with_pml_under_class_imbalance_and_near_duplicates(seed, distance, exclude_self):
    gallery, gallery_labels = hard_set(seed)
    query, query_labels = gallery, gallery_labels
    if not exclude_self:  # split: queries have near-duplicates (and lone labels) in the gallery
        query, query_labels = gallery[240:], gallery_labels[240:].clone()
        gallery, gallery_labels = gallery[:240], gallery_labels[:240]
        query_labels[0] = 77  # lone
    args = (query, gallery, query_labels, gallery_labels)
    reference = pml_reference(*args, exclude_self, distance)
    result = retrieval_metrics(
        *args,
        recall_at=[1, 5],
        exclude_self=exclude_self,
        distance=distance,
        block_size=64,
        metrics=["recall", "precision@1", "r_precision", "map@r", "map"],
    )
    for ours, theirs in PML_KEYS.items():
        assert result[ours] == pytest.approx(reference[theirs], abs=1e-6), ours
    assert result["recall@1"] == result["precision@1"]
    assert result["queries_without_relevant"] >= 1


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_exact_ties_follow_the_stable_sort_not_pml(distance, exclude_self):
    # Exact ties (duplicates, equidistant points): PML's torch.topk orders tied items
    # arbitrarily, so its values may differ from ours; the reference is the stable sort by
    # (distance, gallery index) of the naive loop, which ours reproduces exactly. The points
    # are chosen so that float32 and float64 scores are both exact: integers for Euclidean,
    # +-1 in 4-D (norm 2, so normalised entries are +-0.5) for cosine.
    generator = torch.Generator().manual_seed(8)
    gallery = torch.randint(-1, 2, (90, 4), generator=generator).float()
    if distance == "cosine":
        gallery = torch.where(gallery < 0, -1.0, 1.0)
    gallery_labels = torch.randint(0, 5, (90,), generator=generator)
    gallery_labels[:30] = 0  # imbalance
    query, query_labels = gallery, gallery_labels
    if not exclude_self:
        query, query_labels = gallery[::3] + 0.0, gallery_labels[::3]
    args = (query, gallery, query_labels, gallery_labels)
    expected = naive_metrics(*args, [1, 3], exclude_self, distance, full=True)
    result = retrieval_metrics(
        *args,
        recall_at=[1, 3],
        exclude_self=exclude_self,
        distance=distance,
        block_size=16,
        metrics=["recall", "precision@1", "r_precision", "map@r", "map"],
    )
    assert_same(result, expected)


# --- The exact top-k -----------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 19, 20])
def test_exact_topk_equals_a_stable_full_sort(k):
    # Few distinct values, so ties straddle the k-th place in most rows; zeros of both signs.
    generator = torch.Generator().manual_seed(k)
    scores = torch.randint(-3, 4, (64, 20), generator=generator).float() / 4
    scores[scores == 0] = torch.tensor([0.0, -0.0])[torch.randint(0, 2, (1,), generator=generator)]
    scores[:, 7] = -0.0
    expected = torch.sort(-scores, dim=1, stable=True).indices[:, :k]
    assert torch.equal(best_ranked(scores, k), expected)


def test_ordering_key_orders_floats_then_lower_index():
    values = torch.tensor([-float("inf"), -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, float("inf")])
    keys = _ordering_key(values, torch.zeros(len(values), dtype=torch.long))
    assert torch.equal(keys[1:] >= keys[:-1], torch.ones(len(values) - 1, dtype=torch.bool))
    assert keys[3] == keys[4]  # -0.0 and 0.0 tie, as they compare equal
    tied = _ordering_key(torch.full((3,), 1.5), torch.tensor([0, 1, 2]))
    assert tied[0] > tied[1] > tied[2]


def test_topk_path_equals_the_full_sort_path_on_many_ties():
    # The default set takes the top-k route; asking for "map" ranks whole rows instead.
    generator = torch.Generator().manual_seed(4)
    x = torch.randint(-2, 3, (120, 2), generator=generator).float()
    labels = torch.randint(0, 6, (120,), generator=generator)
    options = {"recall_at": [1, 2, 4, 8], "exclude_self": True, "distance": "euclidean"}
    topk = retrieval_metrics(x, x, labels, labels, **options, block_size=32)
    full = retrieval_metrics(x, x, labels, labels, **options, metrics=[*DEFAULT_METRICS, "map"])
    assert full.pop("map") > 0
    assert topk == full
    assert_same(topk, naive_metrics(x, x, labels, labels, [1, 2, 4, 8], True, "euclidean"))


# --- Properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("exclude_self", [True, False])
def test_permuting_the_gallery_changes_nothing_without_ties(exclude_self):
    generator = torch.Generator().manual_seed(2)
    gallery = torch.randn(150, 6, generator=generator)
    gallery_labels = torch.randint(0, 9, (150,), generator=generator)
    query, query_labels = gallery[:50] + 0.3, gallery_labels[:50]
    permutation = torch.randperm(150, generator=generator)
    options = {"recall_at": [1, 2, 4], "exclude_self": exclude_self, "distance": "cosine"}
    options["metrics"] = [*DEFAULT_METRICS, "map"]
    if exclude_self:
        before = retrieval_metrics(gallery, gallery, gallery_labels, gallery_labels, **options)
        moved, moved_labels = gallery[permutation], gallery_labels[permutation]
        after = retrieval_metrics(moved, moved, moved_labels, moved_labels, **options)
    else:
        before = retrieval_metrics(query, gallery, query_labels, gallery_labels, **options)
        moved, moved_labels = gallery[permutation], gallery_labels[permutation]
        after = retrieval_metrics(query, moved, query_labels, moved_labels, **options)
    assert after == pytest.approx(before, abs=1e-12)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_perfect_embeddings_score_one_everywhere(distance, exclude_self):
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 3, 0, 3, 3])
    x = torch.eye(4)[labels]  # each class its own one-hot vector
    query, query_labels = x, labels
    if not exclude_self:
        query, query_labels = x[:5], labels[:5]
    result = retrieval_metrics(
        query,
        x,
        query_labels,
        labels,
        recall_at=[1, 2],
        exclude_self=exclude_self,
        distance=distance,
        metrics=[*DEFAULT_METRICS, "map"],
    )
    counts = result.pop("queries"), result.pop("queries_without_relevant")
    assert counts == (len(query), 0)
    assert result == {key: 1.0 for key in result}
    assert set(result) == {"recall@1", "recall@2", "precision@1", "r_precision", "map@r", "map"}


@pytest.mark.parametrize("exclude_self", [True, False])
def test_euclidean_results_ignore_a_shift_of_all_embeddings(exclude_self):
    # Integer coordinates keep every float32 product and sum exact, so the shift cannot move
    # a score by rounding: results must be identical, not just close.
    generator = torch.Generator().manual_seed(6)
    gallery = torch.randint(-50, 51, (100, 8), generator=generator).float()
    gallery_labels = torch.randint(0, 7, (100,), generator=generator)
    query, query_labels = gallery, gallery_labels
    if not exclude_self:
        query = torch.randint(-50, 51, (40, 8), generator=generator).float()
        query_labels = torch.randint(0, 7, (40,), generator=generator)
    shift = torch.randint(-900, 901, (8,), generator=generator).float()
    options = {"recall_at": [1, 4], "exclude_self": exclude_self, "distance": "euclidean"}
    options["metrics"] = [*DEFAULT_METRICS, "map"]
    before = retrieval_metrics(query, gallery, query_labels, gallery_labels, **options)
    after = retrieval_metrics(
        query + shift, gallery + shift, query_labels, gallery_labels, **options
    )
    assert after == before


def test_metrics_selects_what_is_computed():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [30.0], [-50.0]])
    labels = torch.tensor([0, 1, 0, 0, 1, 9])
    options = {"exclude_self": True, "distance": "euclidean"}
    result = retrieval_metrics(x, x, labels, labels, **options, metrics=["map", "r_precision"])
    # Hand-computed from the rankings in test_hand_computed_example, over all five ranks:
    # AP = 7/12, 1/4, 7/12, 5/6, 1/3 -> mean 31/60.
    assert result == pytest.approx(
        {"map": 31 / 60, "r_precision": 0.3, "queries": 5, "queries_without_relevant": 1}
    )


def test_recall_at_k_names_pick_single_ks():
    x, labels = random_set(4)
    options = {"recall_at": [1, 2], "exclude_self": True}
    picked = retrieval_metrics(x, x, labels, labels, **options, metrics=["recall@16", "map@r"])
    assert list(picked) == ["recall@16", "map@r", "queries", "queries_without_relevant"]
    both = retrieval_metrics(x, x, labels, labels, **options, metrics=["recall", "recall@2"])
    assert list(both)[:2] == ["recall@1", "recall@2"] and len(both) == 4
    default = retrieval_metrics(x, x, labels, labels, recall_at=[1, 16], exclude_self=True)
    assert picked["recall@16"] == default["recall@16"] and picked["map@r"] == default["map@r"]


# --- Errors --------------------------------------------------------------------------------


def call(query=None, gallery=None, query_labels=None, gallery_labels=None, **options):
    x, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    options = {"recall_at": [1], "exclude_self": False} | options
    return retrieval_metrics(
        x if query is None else query,
        x if gallery is None else gallery,
        labels if query_labels is None else query_labels,
        labels if gallery_labels is None else gallery_labels,
        **options,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"query_labels": torch.tensor([0, 1])}, "query labels have 2 entries but the query "),
        ({"gallery_labels": torch.zeros(7)}, "gallery labels have 7 entries but the gallery"),
        ({"query_labels": torch.zeros(6, 1)}, r"query labels have shape \(6, 1\): expected a 1-D"),
        ({"query": torch.zeros(0, 3), "query_labels": torch.zeros(0)}, "query embeddings are em"),
        ({"gallery": torch.zeros(0, 3), "gallery_labels": torch.zeros(0)}, "gallery embeddings a"),
        ({"query": torch.zeros(6)}, r"query embeddings are not 2-D \(shape \(6,\)\)"),
        ({"gallery": torch.zeros(6, 4)}, "query embeddings have 3 dimensions but gallery .* 4"),
        ({"recall_at": [1, 7]}, "K=7 is larger than the gallery: 6 items"),
        ({"recall_at": [6], "exclude_self": True}, "K=6 is larger than the gallery: 5 items"),
        ({"recall_at": [0]}, r"recall_at=\[0\]: expected positive integers"),
        ({"distance": "manhattan"}, "distance='manhattan'"),
        ({"metrics": ["nmi"]}, "unknown retrieval metric 'nmi': available: recall, recall@K"),
        ({"metrics": ["map@R"]}, "did you mean 'map@r'"),
        ({"metrics": []}, r"metrics=\[\]: name at least one of recall"),
        ({"metrics": ["recall@0"]}, "unknown retrieval metric 'recall@0'"),
        ({"metrics": ["recall@9"], "recall_at": [0]}, "K=9 is larger than the gallery: 6"),
    ],
)
def test_bad_input_is_named(arguments, message):
    with pytest.raises(BenchError, match=message):
        call(**arguments)


@pytest.mark.parametrize("which", ["query", "gallery"])
def test_non_finite_embeddings_are_counted_and_named(which):
    x = torch.randn(6, 3)
    x[0, 0] = x[2, 1] = x[5, 2] = float("nan")
    with pytest.raises(BenchError, match=f"^{which} embeddings contain 3 NaN values"):
        call(**{which: x})
    x = torch.randn(6, 3)
    x[1, 1], x[4, 0] = float("inf"), -float("inf")
    with pytest.raises(BenchError, match=f"^{which} embeddings contain 2 infinite values"):
        call(**{which: x})
