"""Confidence half-widths of one evaluation, near-ties between epochs, and the untrained
baseline every run records and prints."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.metrics.intervals import (
    near_ties,
    split_intervals,
    t_half_width,
    wilson_half_width,
)
from benchmark.metrics.retrieval import retrieval_metrics


def test_wilson_half_width_matches_the_closed_form():
    # p = 0.5, n = 100: 1.96 * sqrt(0.0025 + 1.96^2 / 40000) / (1 + 1.96^2 / 100)
    assert wilson_half_width(0.5, 100) == pytest.approx(0.0961685, abs=1e-6)
    # Unlike the normal approximation it is not zero at a rate of 1.
    assert wilson_half_width(1.0, 540) == pytest.approx(0.0035326, abs=1e-6)
    assert math.isnan(wilson_half_width(0.5, 0))


def test_t_half_width_uses_n_minus_one_degrees_of_freedom():
    assert t_half_width(1.0, 10) == pytest.approx(2.2621572 / math.sqrt(10), abs=1e-6)
    assert math.isnan(t_half_width(1.0, 1))


def test_split_intervals_turns_deviations_and_rates_into_half_widths():
    figures = {"recall@1": 0.5, "map@r": 0.3, "sd:map@r": 1.0, "queries": 10}
    metrics, intervals = split_intervals(figures)
    assert metrics == {"recall@1": 0.5, "map@r": 0.3, "queries": 10}
    assert intervals == {
        "recall@1": pytest.approx(wilson_half_width(0.5, 10)),
        "map@r": pytest.approx(2.2621572 / math.sqrt(10), abs=1e-6),
    }


def test_retrieval_metrics_give_the_per_query_deviation_when_asked():
    embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.6], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    options = {"exclude_self": True, "recall_at": (1, 2)}
    plain = retrieval_metrics(embeddings, embeddings, labels, labels, **options)
    spread = retrieval_metrics(embeddings, embeddings, labels, labels, spread=True, **options)
    assert {k: v for k, v in spread.items() if not k.startswith("sd:")} == plain
    # Per-query AP@R, by hand: 0 -> [1(0), 4(0), 3, 2]: R=2, hits at 1 -> AP@R 1/2
    # 1 -> [0, 3, 4, 2]: R=2 -> 1/2; 2 -> [4, 3, ...]: R=1, first is 4 (label 0) -> 0;
    # 3 -> [1, 0, 2, 4]: R=1, first is 1 (label 0) -> 0; 4 -> [2, 3, 1, 0]: R=2 -> 0.
    per_query = []
    for row in range(5):
        others = [i for i in range(5) if i != row]
        ranked = sorted(others, key=lambda i: (-float(embeddings[row] @ embeddings[i]), i))
        relevant = [int(labels[i] == labels[row]) for i in ranked]
        r = sum(relevant)
        hits = [sum(relevant[: k + 1]) / (k + 1) * relevant[k] for k in range(r)]
        per_query.append(sum(hits) / r)
    assert plain["map@r"] == pytest.approx(sum(per_query) / 5)
    assert spread["sd:map@r"] == pytest.approx(torch.tensor(per_query).std().item())


def entry(split, epoch, value, half):
    return {"split": split, "epoch": epoch, "iteration": 50 * epoch, "metrics": {"recall@1": value},
            "intervals": {"recall@1": half}}  # fmt: skip


def test_near_ties_are_the_epochs_whose_interval_reaches_the_chosen_figure():
    evaluations = [
        entry("test", 0, 0.95, 0.5),  # another split: never a rival
        entry("validation", 0, 0.50, 0.02),
        entry("validation", 1, 0.70, 0.02),
        entry("validation", 2, 0.71, 0.02),  # chosen
        entry("validation", 3, 0.695, 0.02),  # within its reach
        entry("validation", 4, 0.68, 0.02),
    ]
    assert near_ties(evaluations, 2, "validation", "recall@1") == [1, 3]
    assert near_ties(evaluations, 0, "validation", "recall@1") == []  # the others are far


def test_the_untrained_evaluation_leaves_the_random_states_as_they_were():
    from benchmark.engine.loop import measure_untrained

    class Pipeline:
        query = gallery = None

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    drawn = measure_untrained(lambda *args: torch.rand(100), Pipeline())
    assert len(drawn) == 100
    assert torch.equal(torch.rand(3), expected)


def footer_of(result):
    from benchmark.report import evaluations_table

    return evaluations_table(result).split("\n")[-4:]


def test_the_console_prints_the_untrained_figures_and_the_near_ties(make_result):
    result = make_result(recall=0.7, untrained=0.5)
    result["evaluations"][1:1] = [entry("validation", 5, 0.90, 0.03),
                                  entry("validation", 6, 0.91, 0.03)]  # fmt: skip
    for validation in result["evaluations"][1:3]:
        validation["metrics"] = {**result["final"]["metrics"], **validation["metrics"]}
    result["evaluations"][2]["metrics"]["queries"] = 540
    result["final"]["near_ties"] = [5]
    lines = footer_of(result)
    assert lines[:3] == [
        "test figures: weights of epoch 6, the best on the validation split",
        "near-tie: on the validation split, epoch 5 scored within noise of the chosen epoch "
        "(R@1 91.00 ± 3.00, 540 queries); the choice among them is chance",
        "no training -> trained (test): R@1 50.00 -> 70.00, MAP@R 25.00 -> 35.00",
    ]


def test_a_method_below_the_untrained_network_is_called_out(make_result):
    lines = footer_of(make_result(recall=0.37, untrained=0.54))
    assert lines[2] == (
        "no training -> trained (test): R@1 54.00 -> 37.00, MAP@R 27.00 -> 18.50 "
        "(BELOW the untrained network: the method did not learn)"
    )
