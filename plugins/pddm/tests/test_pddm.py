"""Tests of PDDM: the unit, the mining and the loss against naive float64 loops, and the spec."""

from __future__ import annotations

import math

import bench_pddm
import jsonschema
import pluggy
import pytest
import torch
import torch.nn.functional as F
from bench_pddm import (
    PDDM_SPEC,
    PDDMLoss,
    PDDMUnit,
    Quadruplets,
    double_header_hinge,
    hard_quadruplets,
)
from bench_pddm.mining import MODES

from benchmark import hookspecs
from benchmark.specs import Batch, BuildContext

HPARAMS = {"alpha": 0.5, "beta": 1.0, "lam": 0.5}


def clustered_batch(seed: int, per_class: tuple[int, ...] = (3, 3, 2), dim: int = 5):
    """L2-normalised float64 points around one random centre per class, and their labels."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(len(per_class), dim, generator=generator, dtype=torch.float64)
    labels = torch.repeat_interleave(torch.arange(len(per_class)), torch.tensor(per_class))
    noise = 0.8 * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
    return F.normalize(centres[labels] + noise, dim=1), labels


def make_unit(dim: int = 5, hidden: int = 4, seed: int = 0, **options) -> PDDMUnit:
    torch.manual_seed(seed)
    return PDDMUnit(dim, hidden, **options).double()


def naive_score(
    unit: PDDMUnit, first: list[float], second: list[float], normalize_inputs: bool = False
) -> float:
    """The PDDM unit restated over Python floats, with the unit's weights copied out."""

    def linear(layer: torch.nn.Linear, x: list[float]) -> list[float]:
        weight, bias = layer.weight.tolist(), layer.bias.tolist()
        return [
            sum(w * xi for w, xi in zip(row, x, strict=True)) + b
            for row, b in zip(weight, bias, strict=True)
        ]

    def relu(x: list[float]) -> list[float]:
        return [max(value, 0.0) for value in x]

    def normalize(x: list[float]) -> list[float]:
        norm = max(math.sqrt(sum(value * value for value in x)), 1e-12)
        return [value / norm for value in x]

    u = [abs(a - b) for a, b in zip(first, second, strict=True)]
    v = [(a + b) / 2 for a, b in zip(first, second, strict=True)]
    if normalize_inputs:
        u, v = normalize(u), normalize(v)
    features = normalize(relu(linear(unit.difference, u))) + normalize(relu(linear(unit.mean, v)))
    return linear(unit.score, relu(linear(unit.combine, features)))[0]


def naive_loss(scores, embeddings, quadruplets, *, alpha, beta, lam) -> float:
    S, f = scores.tolist(), embeddings.tolist()

    def D(a: int, b: int) -> float:
        return sum((x - y) ** 2 for x, y in zip(f[a], f[b], strict=True))

    total = 0.0
    for i, j, k, l in quadruplets.tolist():  # noqa: E741
        metric = max(0.0, alpha + S[i][k] - S[i][j]) + max(0.0, alpha + S[j][l] - S[i][j])
        embed = max(0.0, beta + D(i, j) - D(i, k)) + max(0.0, beta + D(i, j) - D(j, l))
        total += metric + lam * embed
    return total / len(quadruplets)


# --- the unit ------------------------------------------------------------------------------------


def test_unit_with_normalised_inputs_matches_naive_forward():
    unit = make_unit(normalize_inputs=True)
    embeddings, _ = clustered_batch(3)
    scores = unit.pairwise(embeddings)
    for a, b in [(0, 1), (4, 6)]:
        expected = naive_score(unit, embeddings[a].tolist(), embeddings[b].tolist(), True)
        assert scores[a, b].item() == pytest.approx(expected, abs=1e-12)
    plain = make_unit()
    assert not torch.allclose(plain.pairwise(embeddings), scores)  # the switch matters


def test_unit_matches_naive_forward_on_three_pairs():
    unit = make_unit()
    embeddings, _ = clustered_batch(0)
    pairs = [(0, 1), (2, 5), (7, 3)]
    scores = unit.pairwise(embeddings)
    for a, b in pairs:
        expected = naive_score(unit, embeddings[a].tolist(), embeddings[b].tolist())
        assert scores[a, b].item() == pytest.approx(expected, abs=1e-12)
        assert unit(embeddings[a], embeddings[b]).item() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(scores, scores.T)


def test_self_pair_gives_a_finite_score_and_finite_gradients():
    unit = make_unit()
    embeddings, _ = clustered_batch(1)
    embeddings.requires_grad_(True)
    scores = unit.pairwise(embeddings)
    diagonal = scores.diagonal()
    expected = naive_score(unit, embeddings[0].tolist(), embeddings[0].tolist())
    assert torch.isfinite(diagonal).all() and diagonal[0].item() == pytest.approx(expected)
    scores.sum().backward()
    assert torch.isfinite(embeddings.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in unit.parameters())


# --- mining --------------------------------------------------------------------------------------

# labels 0 0 0 1 1; symmetric scores with the answers worked out by hand below.
LABELS = torch.tensor([0, 0, 0, 1, 1])
SCORES = torch.tensor(
    [
        [9.0, 0.9, 0.2, 0.1, 0.7],
        [0.9, 9.0, 0.5, 0.8, 0.0],
        [0.2, 0.5, 9.0, 0.3, 0.3],
        [0.1, 0.8, 0.3, 9.0, 0.2],
        [0.7, 0.0, 0.3, 0.2, 9.0],
    ]
)
# Hardest negatives: row 0 -> 4 (0.7), 1 -> 3 (0.8), 2 -> 3 (0.3 tie with 4: lowest index),
# 3 -> 1 (0.8), 4 -> 0 (0.7). Positive pairs: (0,1) 0.9, (0,2) 0.2, (1,2) 0.5, (3,4) 0.2.
NO_EMBEDDINGS = torch.zeros(5, 2)  # neighbours=0 never reads them


def lookup(scores: torch.Tensor, calls: list | None = None):
    """A pair score read from a fixed matrix; records how many pairs were asked for."""

    def score(first, second):
        if calls is not None:
            calls.append(first.numel())
        return scores[first, second]

    return score


def mine(scores=SCORES, labels=LABELS, embeddings=NO_EMBEDDINGS, **options):
    return hard_quadruplets(lookup(scores), embeddings, labels, **options)


def test_one_per_batch_takes_the_hardest_positive_pair_lowest_index_on_ties():
    # (0, 2) and (3, 4) tie at 0.2: the lowest index wins.
    quadruplets = mine(mode="one-per-batch")
    assert quadruplets.indices.dtype == torch.long
    assert quadruplets.indices.tolist() == [[0, 2, 4, 3]]
    assert quadruplets.positive_scores.tolist() == pytest.approx([0.2])
    assert quadruplets.negative_scores.tolist() == [pytest.approx([0.7, 0.3])]


def test_one_per_batch_follows_the_minimum():
    scores = SCORES.clone()
    scores[3, 4] = scores[4, 3] = 0.1
    assert mine(scores, mode="one-per-batch").indices.tolist() == [[3, 4, 1, 0]]


def test_per_positive_pair_keeps_every_positive_pair_once_with_its_scores():
    quadruplets = mine(mode="per-positive-pair")
    expected = [[0, 1, 4, 3], [0, 2, 4, 3], [1, 2, 3, 3], [3, 4, 1, 0]]
    assert quadruplets.indices.tolist() == expected
    i, j, k, l = torch.tensor(expected).unbind(dim=1)  # noqa: E741
    assert torch.equal(quadruplets.positive_scores, SCORES[i, j])
    assert torch.equal(quadruplets.negative_scores, torch.stack([SCORES[i, k], SCORES[j, l]], 1))


@pytest.mark.parametrize("labels", [[0, 0, 0, 0, 0], [0, 1, 2, 3, 4]])
@pytest.mark.parametrize("mode", ["one-per-batch", "per-positive-pair"])
def test_no_positive_pair_or_no_negative_mines_nothing(labels, mode):
    quadruplets = mine(labels=torch.tensor(labels), mode=mode)
    assert quadruplets.indices.shape == (0, 4) and quadruplets.indices.dtype == torch.long
    assert quadruplets.scored_pairs == 0


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mining mode 'hardest'"):
        mine(mode="hardest")


# Points on the unit circle: 0 and 1 (class 0) at 0 and 10 degrees; negatives 2, 3, 4 (class 1)
# at 20, 90 and 180 degrees. Euclidean neighbours of 0 and 1 among the negatives: 2, then 3.
CIRCLE = torch.tensor([0.0, 10.0, 20.0, 90.0, 180.0]).deg2rad()
CIRCLE_POINTS = torch.stack([CIRCLE.cos(), CIRCLE.sin()], dim=1)
CIRCLE_LABELS = torch.tensor([0, 0, 1, 1, 1])


def test_the_neighbourhood_limits_the_negatives_the_unit_can_choose():
    # The PDDM unit likes the far negative 4 best, then 3, then the nearest, 2.
    scores = torch.zeros(5, 5)
    scores[:2, 2], scores[:2, 3], scores[:2, 4] = 0.1, 0.5, 0.9
    chosen = {
        neighbours: mine(scores, CIRCLE_LABELS, CIRCLE_POINTS, neighbours=neighbours)
        .indices[0, 2:]
        .tolist()
        for neighbours in (1, 2, 0)
    }
    # 1: only the nearest negative; 2: the unit's choice among the two nearest; 0: all three.
    assert chosen == {1: [2, 2], 2: [3, 3], 0: [4, 4]}


def test_the_unit_scores_only_the_pairs_the_mining_needs():
    calls: list[int] = []
    quadruplets = hard_quadruplets(
        lookup(SCORES, calls), NO_EMBEDDINGS, LABELS, mode="one-per-batch", neighbours=0
    )
    # The 4 positive pairs, then one row of 5 candidates for each head of the chosen pair.
    assert calls == [4, 10] and quadruplets.scored_pairs == 14


@pytest.mark.parametrize("classes", [4, 16, 64])
def test_with_p_by_k_batches_the_scored_pairs_grow_linearly(classes):
    per_class, neighbours = 4, 3
    labels = torch.arange(classes).repeat_interleave(per_class)
    size = len(labels)
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(size, 5, generator=generator), dim=1)
    scores = torch.randn(size, size, generator=torch.Generator().manual_seed(1))
    quadruplets = mine(scores, labels, embeddings, neighbours=neighbours)
    positive_pairs = classes * per_class * (per_class - 1) // 2
    assert len(quadruplets) == positive_pairs
    assert quadruplets.scored_pairs == positive_pairs + size * neighbours  # 1.5 B + 3 B
    dense = mine(scores, labels, embeddings, neighbours=0)
    assert dense.scored_pairs == positive_pairs + size * size


def test_the_anchor_and_its_positives_are_never_its_hardest_negative():
    # A batch on which metriclearningbench (model.py, Pddm.criterion, @ 6ee5992) picks the
    # anchor itself: it zeroes the positive pairs' scores but keeps the self score, so a row's
    # maximum is the self pair when that is the largest, or a positive (at 0) when every
    # negative scores below 0.
    labels = torch.tensor([0, 0, 1, 1])
    scores = torch.tensor(
        [
            [2.0, -0.5, -0.3, -0.1],
            [-0.5, -0.2, -0.4, -0.6],
            [-0.3, -0.4, 1.0, -0.9],
            [-0.1, -0.6, -0.9, 1.0],
        ]
    )
    positives_but_self = (labels[:, None] == labels[None, :]).float() - torch.eye(4)
    restated = (scores * (1 - positives_but_self)).argmax(dim=1)
    assert restated.tolist() == [0, 0, 2, 3]  # rows 0, 2, 3: itself; row 1: its positive, 0
    quadruplets = mine(scores, labels, torch.zeros(4, 2))
    assert quadruplets.indices.tolist() == [[0, 1, 3, 2], [2, 3, 0, 0]]
    i, j, k, l = quadruplets.indices.unbind(dim=1)  # noqa: E741
    assert (labels[k] != labels[i]).all() and (labels[l] != labels[j]).all()


# --- the loss ------------------------------------------------------------------------------------


def unit_score(unit: PDDMUnit, embeddings: torch.Tensor):
    return lambda first, second: unit(embeddings[first], embeddings[second])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("hparams", [HPARAMS, {"alpha": 2.0, "beta": 3.0, "lam": 1.5}])
def test_loss_matches_naive_per_quadruplet_loop(seed, hparams):
    embeddings, labels = clustered_batch(seed)
    unit = make_unit(seed=seed)
    scores = unit.pairwise(embeddings)
    for mode in MODES:
        for neighbours in (0, 2):
            quadruplets = hard_quadruplets(
                unit_score(unit, embeddings), embeddings, labels, mode=mode, neighbours=neighbours
            )
            loss = double_header_hinge(embeddings, quadruplets, **hparams)
            expected = naive_loss(scores, embeddings, quadruplets.indices, **hparams)
            assert loss.item() == pytest.approx(expected, abs=1e-12) and expected > 0


def test_hand_computed_loss_on_one_quadruplet():
    # Unit vectors: D_01 = 4 (opposite), D_02 = D_13 = 0 (same point).
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    quadruplets = Quadruplets(
        indices=torch.tensor([[0, 1, 2, 3]]),
        positive_scores=torch.tensor([0.1]),
        negative_scores=torch.tensor([[0.4, -0.5]]),
        scored_pairs=3,
    )
    loss = double_header_hinge(embeddings, quadruplets, **HPARAMS)
    # E_m = [0.5 + 0.4 - 0.1]+ + [0.5 - 0.5 - 0.1]+ = 0.8; E_e = 2 * [1 + 4 - 0]+ = 10.
    assert loss.item() == pytest.approx(0.8 + 0.5 * 10.0)


def test_empty_mining_gives_a_connected_zero_with_zero_gradients():
    embeddings, _ = clustered_batch(0)
    labels = torch.arange(len(embeddings))  # singletons: no positive pair
    criterion = PDDMLoss(embedding_dim=5, **HPARAMS).double()
    embeddings.requires_grad_(True)
    batch = Batch(images=torch.zeros(len(labels), 3, 4, 4), labels=labels, indices=labels)
    loss, logs = criterion({"embedding": embeddings}, batch)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    assert logs == {"quadruplets": 0.0, "scored_pairs": 0.0}
    loss.backward()
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))
    assert all(p.grad is None for p in criterion.parameters())  # the unit scored nothing


def test_pddm_parameters_and_embeddings_receive_gradients():
    embeddings, labels = clustered_batch(3)
    criterion = PDDMLoss(embedding_dim=5, hidden=6, neighbours=2, **HPARAMS).double()
    embeddings.requires_grad_(True)
    batch = Batch(images=torch.zeros(len(labels), 3, 4, 4), labels=labels, indices=labels)
    loss, logs = criterion({"embedding": embeddings}, batch)
    loss.backward()
    # 3 + 3 + 1 positive pairs; their 8 heads score 2 neighbours each.
    assert logs == {"quadruplets": 7.0, "scored_pairs": 7.0 + 8 * 2}
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0
    # The score bias cancels in S_ik - S_ij; every weight matrix must get a gradient.
    for name in ("difference", "mean", "combine", "score"):
        assert getattr(criterion.unit, name).weight.grad.abs().sum() > 0, name
    assert "unit.combine.weight" in criterion.state_dict()


def test_module_matches_function_and_normalises_its_input():
    embeddings, labels = clustered_batch(4)
    criterion = PDDMLoss(embedding_dim=5, mode="one-per-batch", **HPARAMS).double()
    batch = Batch(images=torch.zeros(len(labels), 3, 4, 4), labels=labels, indices=labels)
    loss, logs = criterion({"embedding": 3.0 * embeddings}, batch)
    quadruplets = hard_quadruplets(
        unit_score(criterion.unit, embeddings), embeddings, labels, mode="one-per-batch"
    )
    expected = double_header_hinge(embeddings, quadruplets, **HPARAMS)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12)
    assert logs["quadruplets"] == 1.0


# --- the spec ------------------------------------------------------------------------------------


def test_defaults_validate_against_the_schema():
    jsonschema.Draft202012Validator.check_schema(PDDM_SPEC.hparam_schema)
    jsonschema.validate(dict(PDDM_SPEC.defaults), PDDM_SPEC.hparam_schema)
    assert PDDM_SPEC.defaults == {
        "alpha": 0.5,
        "beta": 1.0,
        "lambda": 0.5,
        "hidden": 0,
        "quadruplets": "per-positive-pair",
        "neighbours": 8,
        "rerank_top_k": 0,
        "normalize_inputs": False,
    }
    for bad in ({"lam": 0.5}, {"quadruplets": "hardest"}, {"rerank_top_k": -1}, {"neighbours": -1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**PDDM_SPEC.defaults, **bad}, PDDM_SPEC.hparam_schema)


def test_bench_methods_hook_returns_the_spec():
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(bench_pddm)
    assert manager.hook.bench_methods() == [[PDDM_SPEC]]
    assert PDDM_SPEC.name == "pddm" and PDDM_SPEC.fidelity == "reconstructed"
    assert {r.dataset for r in PDDM_SPEC.reported} == {"cub", "cars196"}
    assert PDDM_SPEC.reported[0].metrics["recall@1"] == 0.583


@pytest.mark.parametrize(
    ("hidden", "mode", "neighbours", "width"),
    [(0, "one-per-batch", 0, 8), (3, "per-positive-pair", 5, 3)],
)
def test_build_uses_the_embedding_size_and_the_mining_options(hidden, mode, neighbours, width):
    hparams = {"hidden": hidden, "quadruplets": mode, "neighbours": neighbours}
    ctx = BuildContext(
        hparams={**PDDM_SPEC.defaults, **hparams},
        embedding_dim=8,
        num_classes=4,
        num_train_images=16,
        num_attributes=0,
        device=torch.device("cpu"),
    )
    criterion = PDDM_SPEC.build(ctx)
    assert isinstance(criterion, PDDMLoss)
    assert criterion.unit.difference.weight.shape == (width, 8)
    assert (criterion.mode, criterion.neighbours) == (mode, neighbours)
    assert (criterion.alpha, criterion.beta, criterion.lam) == (0.5, 1.0, 0.5)
