"""Hashing metrics against deliberately naive numpy loops, and the tie-aware figures against
averages over every order (or many random orders) of items tied in Hamming distance."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from benchmark.errors import BenchError
from benchmark.metrics import ties
from benchmark.metrics.hashing import hamming_distance, hash_codes, hashing_metrics, pr_by_radius

TIE_AWARE = ("map@k", "precision@radius2", "recall@radius2", "precision@1", "precision@4")


def naive_average_precision(ranked_relevance, k):
    """AP@k of one ranking, CSQ conventions: divide by the hits in the top k; 0 without any."""
    top = np.asarray(ranked_relevance[:k], dtype=float)
    if top.sum() == 0:
        return 0.0
    return float(np.sum(np.cumsum(top) / np.arange(1, len(top) + 1) * top) / top.sum())


def naive_rankings(query_codes, database_codes, query_labels, database_labels):
    """One query at a time, in float64: Hamming distances and relevance to every item."""
    database = database_codes.double().numpy()
    database_labels = database_labels.double().numpy()
    for code, labels in zip(
        query_codes.double().numpy(), query_labels.double().numpy(), strict=True
    ):
        yield 0.5 * (len(code) - database @ code), database_labels @ labels > 0


def naive_index_order(case, top_k):
    """mAP@k ranking by (distance, index) with a stable argsort, and the count of queries
    with no relevant item (kept in the mean with AP 0)."""
    k = len(case[1]) if top_k is None else top_k
    average_precisions, lone = [], 0
    for distance, relevant in naive_rankings(*case):
        average_precisions.append(
            naive_average_precision(relevant[np.argsort(distance, kind="stable")], k)
        )
        lone += not relevant.any()
    return float(np.mean(average_precisions)), lone


def brute_force_tie_aware(case, top_k, precision_at):
    """mAP@k and precision@n averaged over every order of the database: a stable sort of each
    permutation visits every order within tie groups equally often."""
    size = len(case[1])
    k = size if top_k is None else top_k
    sums = np.zeros(1 + len(precision_at))
    permutations = list(itertools.permutations(range(size)))
    for distance, relevant in naive_rankings(*case):
        for permutation in permutations:
            order = np.asarray(permutation)
            ranked = relevant[order[np.argsort(distance[order], kind="stable")]]
            sums[0] += naive_average_precision(ranked, k)
            sums[1:] += [ranked[:n].sum() / n for n in precision_at]
    return sums / (len(permutations) * len(case[0]))


def codes(rows):
    return torch.tensor(rows, dtype=torch.int8)


def random_case(seed, queries=12, items=200, bits=8, classes=5, density=0.25):
    """Random codes and multi-hot labels; at this density some queries have no label at all."""
    generator = torch.Generator().manual_seed(seed)
    all_codes = hash_codes(torch.randn(queries + items, bits, generator=generator))
    labels = (torch.rand(queries + items, classes, generator=generator) < density).int()
    return all_codes[:queries], all_codes[queries:], labels[:queries], labels[queries:]


# Two queries, seven items (three bits, three classes): distances 1,1,1,0,2,2,1 and
# 2,0,2,1,1,1,2, so three or four items tie at distances 1 and 2.
SMALL = (
    codes([[1, 1, 1], [1, -1, 1]]),
    codes([[1, 1, -1], [1, -1, 1], [-1, 1, 1], [1, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, 1]]),
    torch.tensor([[1, 0, 0], [0, 1, 1]]),
    torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 0]]),
)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("top_k", [5, 50, None])
def test_index_order_map_matches_naive_loop(seed, bits, top_k):
    case = random_case(seed, bits=bits)
    expected, lone = naive_index_order(case, top_k)
    results = hashing_metrics(*case, top_k=top_k)
    assert results["map@k_index_order"] == pytest.approx(expected, abs=1e-12)
    assert results["queries_without_relevant"] == lone
    assert results["queries"] == 12


def test_queries_without_labels_have_nothing_relevant():
    case = random_case(0)
    unlabelled = int((case[2].sum(1) == 0).sum())
    assert unlabelled == 4
    assert hashing_metrics(*case, top_k=5)["queries_without_relevant"] == unlabelled


@pytest.mark.parametrize("top_k", [1, 2, 3, 4, 5, 7, None])
def test_tie_aware_equals_the_average_over_every_order(top_k):
    expected = brute_force_tie_aware(SMALL, top_k, (1, 2, 3, 5))
    results = hashing_metrics(*SMALL, top_k=top_k, precision_at=(1, 2, 3, 5))
    keys = ("map@k", "precision@1", "precision@2", "precision@3", "precision@5")
    assert [results[key] for key in keys] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_tie_aware_equals_the_average_over_every_order_with_heavy_ties(seed):
    # Two bits for six items: every distance group holds ties.
    case = random_case(seed, queries=3, items=6, bits=2, classes=3, density=0.4)
    for top_k in (1, 2, 4):
        expected = brute_force_tie_aware(case, top_k, (3,))
        results = hashing_metrics(*case, top_k=top_k, precision_at=(3,))
        assert [results["map@k"], results["precision@3"]] == pytest.approx(expected, abs=1e-12)


def test_tie_aware_and_index_order_differ_on_the_small_case():
    results = hashing_metrics(*SMALL, top_k=3)
    assert results["map@k"] == pytest.approx(brute_force_tie_aware(SMALL, 3, ())[0], abs=1e-12)
    assert abs(results["map@k"] - results["map@k_index_order"]) > 0.05


def test_tie_aware_matches_random_tie_orders():
    case = random_case(5, queries=6, items=60, bits=4, classes=4, density=0.3)
    k, samples = 15, 20_000
    distances, relevant = map(np.array, zip(*naive_rankings(*case), strict=True))
    noise = np.random.default_rng(0).random((samples, *distances.shape))
    # Distances are integers, so adding noise in [0, 1) shuffles each tie group uniformly.
    ranked = np.take_along_axis(relevant[None], np.argsort(distances + noise, axis=2), axis=2)
    top = ranked[:, :, :k]
    hits = np.cumsum(top, axis=2)
    found = np.maximum(hits[:, :, -1], 1)
    sampled = ((hits / np.arange(1, k + 1) * top).sum(2) / found).mean(1)
    precision = top.mean((1, 2))
    # Five standard errors of each sample mean.
    tolerance = 5 * sampled.std() / math.sqrt(samples)
    results = hashing_metrics(*case, top_k=k, precision_at=(k,))
    assert results["map@k"] == pytest.approx(sampled.mean(), abs=tolerance)
    assert results[f"precision@{k}"] == pytest.approx(
        precision.mean(), abs=5 * precision.std() / math.sqrt(samples)
    )
    assert abs(results["map@k"] - results["map@k_index_order"]) > 5 * tolerance


def test_hand_computed_example():
    # Query code (1, 1), class 0. Items by distance: 0: item 2 (irrelevant); 1: item 0
    # (relevant) and item 1 (irrelevant), tied; 2: item 3 (relevant).
    query, items = codes([[1, 1]]), codes([[1, -1], [-1, 1], [1, 1], [-1, -1]])
    query_labels = torch.tensor([[1, 0, 0]])
    item_labels = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    case = (query, items, query_labels, item_labels)
    at_2 = hashing_metrics(*case, top_k=2, radius=1, precision_at=(2,))
    # Top 2 by index: item 2, item 0 -> AP = (1/2) / 1. Tie-aware: rank 2 is item 0 or item 1
    # with probability 1/2 each -> AP 1/2 or 0 -> 1/4; expected hits in the top 2 = 1/2.
    assert at_2["map@k_index_order"] == pytest.approx(0.5)
    assert at_2["map@k"] == pytest.approx(0.25)
    assert at_2["precision@2"] == pytest.approx(0.25)
    # Radius 1 retrieves items 2, 0, 1: 1 of 3 relevant, 1 of the 2 relevant items found.
    assert at_2["precision@radius1"] == pytest.approx(1 / 3)
    assert at_2["recall@radius1"] == pytest.approx(1 / 2)
    at_3 = hashing_metrics(*case, top_k=3)
    # Top 3 by index: item 2, 0, 1 -> 1/2. Tie-aware: the hit at rank 2 or 3 -> (1/2 + 1/3) / 2.
    assert at_3["map@k_index_order"] == pytest.approx(1 / 2)
    assert at_3["map@k"] == pytest.approx(5 / 12)
    # All four: by index AP = (1/2 + 2/4) / 2 = 1/2; tie-aware (1/2 + (1/2 + 1/3) / 2) / 2.
    at_all = hashing_metrics(*case, top_k=None)
    assert at_all["map@k_index_order"] == pytest.approx(1 / 2)
    assert at_all["map@k"] == pytest.approx((1 / 2 + 5 / 12) / 2)


def test_permuting_the_database_keeps_tie_aware_figures():
    case = random_case(3, items=300)
    permutation = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    shuffled = (case[0], case[1][permutation], case[2], case[3][permutation])
    options = {"top_k": 20, "precision_at": (1, 4)}
    before, after = hashing_metrics(*case, **options), hashing_metrics(*shuffled, **options)
    assert [after[key] for key in TIE_AWARE] == pytest.approx([before[key] for key in TIE_AWARE])
    assert after["map@k_index_order"] != pytest.approx(before["map@k_index_order"], abs=1e-3)


def test_perfect_codes_score_one():
    centres = hash_codes(torch.randn(4, 16, generator=torch.Generator().manual_seed(0)))
    assert len({tuple(row.tolist()) for row in centres}) == 4
    classes = torch.arange(40) % 4
    labels = torch.nn.functional.one_hot(classes, 4)
    for top_k in (3, None):
        results = hashing_metrics(centres[classes], centres[classes], labels, labels, top_k=top_k)
        assert results["map@k"] == results["map@k_index_order"] == pytest.approx(1.0)
        assert results["precision@radius2"] == pytest.approx(1.0)


def test_hash_codes_maps_zero_to_plus_one():
    binary = hash_codes(torch.tensor([[0.0, -0.0, 0.3, -2.0, 1e-30, -1e-30]]))
    assert binary.dtype == torch.int8
    assert binary.tolist() == [[1, 1, 1, -1, 1, -1]]


def test_hash_codes_rejects_nan():
    with pytest.raises(BenchError, match="outputs contain 2 NaN values"):
        hash_codes(torch.tensor([[0.5, float("nan")], [float("nan"), 1.0]]))


def test_hamming_distance_matches_counting_differing_bits():
    query, database, _, _ = random_case(1, bits=16)
    expected = (query[:, None, :] != database[None, :, :]).sum(2)
    assert torch.equal(hamming_distance(query, database), expected.int())
    assert torch.equal(hamming_distance(query.float(), database.float()), expected.int())


@pytest.mark.parametrize("radius", [0, 2, 5])
def test_radius_metrics_match_naive_loop(radius):
    case = random_case(2, bits=8)
    precision = recall = 0.0
    for distance, relevant in naive_rankings(*case):
        retrieved = distance <= radius
        found = (retrieved & relevant).sum()
        precision += found / retrieved.sum() if retrieved.any() else 0.0
        recall += found / relevant.sum() if relevant.any() else 0.0
    results = hashing_metrics(*case, top_k=10, radius=radius)
    assert results[f"precision@radius{radius}"] == pytest.approx(precision / 12, abs=1e-12)
    assert results[f"recall@radius{radius}"] == pytest.approx(recall / 12, abs=1e-12)


def test_pr_by_radius_matches_naive_loop():
    case = random_case(4, bits=8)
    precision, recall = np.zeros(9), np.zeros(9)
    for distance, relevant in naive_rankings(*case):
        for radius in range(9):
            retrieved = distance <= radius
            found = (retrieved & relevant).sum()
            precision[radius] += found / retrieved.sum() if retrieved.any() else 0.0
            recall[radius] += found / relevant.sum() if relevant.any() else 0.0
    curve = pr_by_radius(*case)
    assert curve["radius"] == list(range(9))
    assert curve["precision"] == pytest.approx(list(precision / 12), abs=1e-12)
    assert curve["recall"] == pytest.approx(list(recall / 12), abs=1e-12)


def test_block_size_does_not_change_results():
    case = random_case(6, queries=30, bits=16)
    options = {"top_k": 25, "precision_at": (1, 10)}
    whole = hashing_metrics(*case, **options, block_size=1000)
    for block_size in (1, 7):
        assert hashing_metrics(*case, **options, block_size=block_size) == whole
        assert pr_by_radius(*case, block_size=block_size) == pr_by_radius(*case)


def test_items_sharing_many_labels_give_the_same_results():
    # 130 copies of label 0 leave relevance unchanged but let items share up to 134 labels,
    # too many for the int8 product on CPU: this takes the float32 path.
    query, database, query_labels, database_labels = random_case(8)
    copies = (query_labels[:, :1].repeat(1, 130), database_labels[:, :1].repeat(1, 130))
    widened = (torch.cat([query_labels, copies[0]], 1), torch.cat([database_labels, copies[1]], 1))
    options = {"top_k": 30, "precision_at": (5,)}
    expected = hashing_metrics(query, database, query_labels, database_labels, **options)
    assert hashing_metrics(query, database, *widened, **options) == pytest.approx(expected)


def test_top_k_above_the_database_size_means_all():
    case = random_case(7)
    assert hashing_metrics(*case, top_k=10_000) == hashing_metrics(*case, top_k=None)


def test_radix_sort_and_topk_rank_alike():
    distance = torch.randint(0, 5, (6, 500), generator=torch.Generator().manual_seed(0))
    counts = torch.stack([row.bincount(minlength=5) for row in distance]).double()
    expected = torch.from_numpy(np.argsort(distance.numpy(), axis=1, kind="stable")[:, :40])
    # Keys carry the index in their low bits, to check that ties go to the lower index.
    keys = distance * 1024 + torch.arange(500)
    assert torch.equal(ties.nearest_keys(keys, counts, 40, shift=10) % 1024, expected)
    assert torch.equal(ties._nearest_by_topk(distance, 40), expected)


def test_expected_average_precision_at_scale():
    # Four distance groups, 115,500 items; the top 45,000 cut group 2 after 2,000 of its 2,500.
    counts = [3000, 40000, 2500, 70000]
    relevant = [200, 5000, 300, 8000]
    k = 45_000
    actual = ties.expected_average_precision(
        torch.tensor([counts], dtype=torch.float64),
        torch.tensor([relevant], dtype=torch.float64),
        k,
    )
    # The same expectation by explicit sums and the exact hypergeometric pmf over all j.
    full_sum = sum(
        explicit_kept_sum(sum(counts[:g]), sum(relevant[:g]), counts[g], relevant[g])
        for g in (0, 1)
    )
    before, found_before, size, hits, kept = 43000, 5200, 2500, 300, 2000
    total = math.comb(size, kept)
    expected = math.fsum(
        float(Fraction(math.comb(hits, j) * math.comb(size - hits, kept - j), total))
        * (full_sum + explicit_kept_sum(before, found_before, kept, j))
        / (found_before + j)
        for j in range(hits + 1)
    )
    assert actual.item() == pytest.approx(expected, rel=1e-10)


def explicit_kept_sum(before, found_before, kept, hits):
    """E[sum P(i) rel(i)] over `kept` tied slots holding `hits` relevant, slot by slot."""
    if hits == 0:
        return 0.0
    pair = (hits - 1) / (kept - 1) if kept > 1 else 0.0
    return math.fsum(
        hits / kept * (found_before + 1 + (p - 1) * pair) / (before + p) for p in range(1, kept + 1)
    )


def replace(position, value):
    """SMALL with one of its four arrays replaced."""
    return tuple(value if index == position else item for index, item in enumerate(SMALL))


@pytest.mark.parametrize(
    ("arguments", "options", "message"),
    [
        (replace(0, torch.tensor([[1, 0, 1], [1, 1, 1]])), {}, "query_codes has 1 entries that"),
        (replace(1, SMALL[1].bool()), {}, "database_codes has dtype torch.bool"),
        (replace(0, SMALL[0][0]), {}, r"query_codes has shape \(3,\)"),
        (replace(0, SMALL[0][:0]), {}, r"query_codes has shape \(0, 3\)"),
        (replace(1, SMALL[1][:0]), {}, r"database_codes has shape \(0, 3\)"),
        (replace(1, SMALL[1][:, :2]), {}, "query_codes has 3 bits but database_codes 2"),
        (replace(2, SMALL[2][:1]), {}, r"query_labels has shape \(1, 3\) for 2 codes"),
        (replace(3, torch.arange(7)), {}, r"database_labels has shape \(7,\) for 7 codes"),
        (replace(3, SMALL[3] * 2), {}, "database_labels has 7 entries that are not 0 or 1"),
        (replace(3, SMALL[3][:, :2]), {}, "query_labels has 3 classes and database_labels 2"),
        (SMALL, {"top_k": 0}, "top_k=0: expected an int >= 1"),
        (SMALL, {"radius": -1}, "radius=-1"),
        (SMALL, {"precision_at": (0,)}, r"precision_at=\[0\]"),
        (SMALL, {"precision_at": (8,)}, "the database size, 7"),
        (SMALL, {"block_size": 0}, "block_size=0"),
    ],
)
def test_bad_input_is_named(arguments, options, message):
    with pytest.raises(BenchError, match=message):
        hashing_metrics(*arguments, **({"top_k": 3} | options))


def test_errors_name_the_function_called():
    with pytest.raises(BenchError, match="^pr_by_radius: query_codes has 1 entries"):
        pr_by_radius(*replace(0, torch.tensor([[1, 0, 1], [1, 1, 1]])))
    with pytest.raises(BenchError, match="^hamming_distance: query_codes has 3 bits but"):
        hamming_distance(SMALL[0], SMALL[1][:, :2])
