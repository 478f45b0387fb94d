"""The validation split carved out of the training split, and replicate statistics."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest

from benchmark.data.validation import carve_validation
from benchmark.errors import BenchError
from benchmark.stats import parse_seeds, summarize

LABELS = np.repeat(np.arange(10, 30), 5)  # 20 classes of 5 images


def test_a_share_of_the_training_classes_is_held_out_whole():
    plan = carve_validation(LABELS, "retrieval", 0.25, seed=0)
    held, kept = set(LABELS[plan.query]), set(LABELS[plan.train])
    assert len(held) == 5 and len(kept) == 15 and not held & kept
    assert plan.gallery is None  # searched against itself
    assert sorted([*plan.train, *plan.query]) == list(range(len(LABELS)))


def test_the_carve_is_seeded():
    first = carve_validation(LABELS, "query-gallery", 0.25, seed=0)
    again = carve_validation(LABELS, "query-gallery", 0.25, seed=0)
    other = carve_validation(LABELS, "query-gallery", 0.25, seed=1)
    assert np.array_equal(first.query, again.query)
    assert not np.array_equal(first.query, other.query)


def test_hashing_holds_out_images_searched_against_the_remaining_training_images():
    labels = np.eye(4)[np.arange(40) % 4]
    plan = carve_validation(labels, "hashing", 0.25, seed=0)
    assert len(plan.query) == 10 and len(plan.train) == 30
    assert np.array_equal(plan.gallery, plan.train) and not set(plan.query) & set(plan.train)


@pytest.mark.parametrize("fraction", [0.02, 0.97])
def test_a_fraction_that_leaves_too_little_on_either_side_is_refused(fraction):
    with pytest.raises(BenchError, match=r"eval.validation.fraction=.* both need at least 2"):
        carve_validation(LABELS, "retrieval", fraction, seed=0)


def test_summary_of_replicates_uses_the_t_distribution():
    summary = summarize([0.60, 0.62, 0.64])
    assert summary["mean"] == pytest.approx(0.62) and summary["n"] == 3
    assert summary["std"] == pytest.approx(0.02)
    # t(0.975, 2 degrees of freedom) = 4.302653
    assert summary["ci95"] == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert summarize([0.5]) == {"mean": 0.5, "std": None, "ci95": None, "n": 1}


@pytest.mark.parametrize(
    "text,seeds", [("3", [0, 1, 2]), ("0,1,2", [0, 1, 2]), ("7,3", [7, 3]), ("1", [0])]
)
def test_seeds_are_a_count_or_a_list(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "text,message", [("0", "at least 1"), ("1,1", "distinct"), ("a,b", "a count (5) or a list")]
)
def test_bad_seeds_say_what_is_expected(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_seeds(text)


def test_the_first_evaluation_is_kept_even_when_its_metric_is_nan():
    import torch

    from benchmark.engine.loop import BestWeights
    from benchmark.engine.train import TrainState

    model, criterion = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    state = TrainState(model, criterion, None, None, None, torch.device("cpu"), False)
    best = BestWeights("recall@1")
    best.offer(0, {"recall@1": float("nan")}, state)
    saved = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    best.offer(1, {"recall@1": float("nan")}, state)  # NaN never improves
    best.restore(state)
    assert best.epoch == 0 and torch.equal(model.weight, saved)


def test_protocols_without_a_selection_field_select_the_last_weights(registry):
    from benchmark.protocol import Protocol

    document = copy.deepcopy(registry.protocol("cpu-smoke"))
    assert Protocol.from_json(document).eval.selection == "validation"
    del document["eval"]["selection"]
    assert Protocol.from_json(document).eval.selection == "last"


def test_unreadable_images_met_in_a_split_and_its_views_count_once():
    import torch

    from benchmark.data.pipeline import SubsetView
    from benchmark.engine.distributed import World
    from benchmark.engine.loop import _skipped_images

    class Split(torch.utils.data.Dataset):
        skipped: set[int]

    train, test = Split(), Split()
    train.skipped, test.skipped = {3, 5}, {1}
    view = SubsetView(train, [3, 4, 5, 6])
    view.skipped = {3, 6}
    assert _skipped_images([train, test, view], World()) == 4  # train {3, 5, 6}, test {1}
