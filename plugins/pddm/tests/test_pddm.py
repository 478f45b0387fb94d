"""Tests of PDDM: the unit, the mining and the loss against naive float64 loops, and the spec."""

from __future__ import annotations

import math

import bench_pddm
import jsonschema
import pluggy
import pytest
import torch
import torch.nn.functional as F
from bench_pddm import PDDM_SPEC, PDDMLoss, PDDMUnit, double_header_hinge, hard_quadruplets

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


def test_faithful_mining_takes_the_hardest_positive_pair_lowest_index_on_ties():
    # (0, 2) and (3, 4) tie at 0.2: the lowest index wins.
    quadruplets = hard_quadruplets(SCORES.requires_grad_(False), LABELS, per_positive_pair=False)
    assert quadruplets.dtype == torch.long
    assert quadruplets.tolist() == [[0, 2, 4, 3]]


def test_faithful_mining_follows_the_minimum():
    scores = SCORES.clone()
    scores[3, 4] = scores[4, 3] = 0.1
    assert hard_quadruplets(scores, LABELS, per_positive_pair=False).tolist() == [[3, 4, 1, 0]]


def test_per_positive_pair_mining_keeps_every_positive_pair_once():
    quadruplets = hard_quadruplets(SCORES, LABELS, per_positive_pair=True)
    assert quadruplets.tolist() == [[0, 1, 4, 3], [0, 2, 4, 3], [1, 2, 3, 3], [3, 4, 1, 0]]


@pytest.mark.parametrize("labels", [[0, 0, 0, 0, 0], [0, 1, 2, 3, 4]])
@pytest.mark.parametrize("per_positive_pair", [False, True])
def test_no_positive_pair_or_no_negative_mines_nothing(labels, per_positive_pair):
    quadruplets = hard_quadruplets(
        SCORES, torch.tensor(labels), per_positive_pair=per_positive_pair
    )
    assert quadruplets.shape == (0, 4) and quadruplets.dtype == torch.long


# --- the loss ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("hparams", [HPARAMS, {"alpha": 2.0, "beta": 3.0, "lam": 1.5}])
def test_loss_matches_naive_per_quadruplet_loop(seed, hparams):
    embeddings, labels = clustered_batch(seed)
    scores = make_unit(seed=seed).pairwise(embeddings)
    for per_positive_pair in (False, True):
        quadruplets = hard_quadruplets(scores, labels, per_positive_pair=per_positive_pair)
        loss = double_header_hinge(scores, embeddings, quadruplets, **hparams)
        expected = naive_loss(scores, embeddings, quadruplets, **hparams)
        assert loss.item() == pytest.approx(expected, abs=1e-12) and expected > 0


def test_hand_computed_loss_on_one_quadruplet():
    # Unit vectors: D_01 = 4 (opposite), D_02 = D_13 = 0 (same point).
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    scores = torch.tensor([[0.0, 0.1, 0.4, 0.0], [0.1, 0.0, 0.0, -0.5], [0.0] * 4, [0.0] * 4])
    loss = double_header_hinge(scores, embeddings, torch.tensor([[0, 1, 2, 3]]), **HPARAMS)
    # E_m = [0.5 + 0.4 - 0.1]+ + [0.5 - 0.5 - 0.1]+ = 0.8; E_e = 2 * [1 + 4 - 0]+ = 10.
    assert loss.item() == pytest.approx(0.8 + 0.5 * 10.0)


def test_empty_mining_gives_a_connected_zero_with_zero_gradients():
    embeddings, _ = clustered_batch(0)
    labels = torch.arange(len(embeddings))  # singletons: no positive pair
    criterion = PDDMLoss(embedding_dim=5, **HPARAMS).double()
    embeddings.requires_grad_(True)
    batch = Batch(images=torch.zeros(len(labels), 3, 4, 4), labels=labels, indices=labels)
    loss, logs = criterion({"embedding": embeddings}, batch)
    assert loss.item() == 0.0 and loss.grad_fn is not None and logs == {"quadruplets": 0.0}
    loss.backward()
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in criterion.parameters())


def test_pddm_parameters_and_embeddings_receive_gradients():
    embeddings, labels = clustered_batch(3)
    criterion = PDDMLoss(embedding_dim=5, hidden=6, per_positive_pair=True, **HPARAMS).double()
    embeddings.requires_grad_(True)
    batch = Batch(images=torch.zeros(len(labels), 3, 4, 4), labels=labels, indices=labels)
    loss, logs = criterion({"embedding": embeddings}, batch)
    loss.backward()
    assert logs == {"quadruplets": 7.0}  # 3 + 3 + 1 positive pairs
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0
    # The score bias cancels in S_ik - S_ij; every weight matrix must get a gradient.
    for name in ("difference", "mean", "combine", "score"):
        assert getattr(criterion.unit, name).weight.grad.abs().sum() > 0, name
    assert "unit.combine.weight" in criterion.state_dict()


def test_module_matches_function_and_normalises_its_input():
    embeddings, labels = clustered_batch(4)
    criterion = PDDMLoss(embedding_dim=5, **HPARAMS).double()
    batch = Batch(images=torch.zeros(len(labels), 3, 4, 4), labels=labels, indices=labels)
    loss, logs = criterion({"embedding": 3.0 * embeddings}, batch)
    scores = criterion.unit.pairwise(embeddings)
    quadruplets = hard_quadruplets(scores, labels)
    expected = double_header_hinge(scores, embeddings, quadruplets, **HPARAMS)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12) and logs == {"quadruplets": 1.0}


# --- the spec ------------------------------------------------------------------------------------


def test_defaults_validate_against_the_schema():
    jsonschema.Draft202012Validator.check_schema(PDDM_SPEC.hparam_schema)
    jsonschema.validate(dict(PDDM_SPEC.defaults), PDDM_SPEC.hparam_schema)
    assert PDDM_SPEC.defaults == {
        "alpha": 0.5,
        "beta": 1.0,
        "lambda": 0.5,
        "hidden": 0,
        "quadruplets": "hardest",
        "rerank_top_k": 0,
        "normalize_inputs": False,
    }
    for bad in ({"lam": 0.5}, {"quadruplets": "all"}, {"rerank_top_k": -1}):
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
    ("hidden", "mode", "width", "per_positive_pair"),
    [(0, "hardest", 8, False), (3, "per-positive-pair", 3, True)],
)
def test_build_uses_the_embedding_size_and_the_mining_mode(hidden, mode, width, per_positive_pair):
    ctx = BuildContext(
        hparams={**PDDM_SPEC.defaults, "hidden": hidden, "quadruplets": mode},
        embedding_dim=8,
        num_classes=4,
        num_train_images=16,
        num_attributes=0,
        device=torch.device("cpu"),
    )
    criterion = PDDM_SPEC.build(ctx)
    assert isinstance(criterion, PDDMLoss)
    assert criterion.unit.difference.weight.shape == (width, 8)
    assert criterion.per_positive_pair is per_positive_pair
    assert (criterion.alpha, criterion.beta, criterion.lam) == (0.5, 1.0, 0.5)
