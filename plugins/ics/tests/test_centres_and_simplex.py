"""Hash centres and the simplex projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bench_ics import generate_centres, load_centres, project_to_simplex, sylvester_hadamard
from bench_ics.centres import distance_stats, hamming_distances
from scipy.linalg import hadamard
from scipy.optimize import minimize


@pytest.mark.parametrize("bits", [1, 2, 16, 64])
def test_sylvester_hadamard_is_scipys_matrix(bits):
    assert torch.equal(sylvester_hadamard(bits), torch.from_numpy(hadamard(bits)).float())


def test_hadamard_needs_a_power_of_two():
    with pytest.raises(ValueError, match="power of 2 bits, got 24"):
        sylvester_hadamard(24)


@pytest.mark.parametrize("bits,classes", [(16, 16), (32, 20), (64, 64)])
def test_hadamard_centres_have_pairwise_distance_half_the_bits(bits, classes):
    centres, construction = generate_centres(classes, bits, "hadamard", seed=0)
    distances = hamming_distances(centres)
    off_diagonal = distances[~torch.eye(classes, dtype=torch.bool)]
    assert construction == "hadamard rows" and centres.shape == (classes, bits)
    assert (off_diagonal == bits / 2).all()


def test_beyond_the_bits_the_negated_rows_follow():
    centres, construction = generate_centres(20, 16, "hadamard", seed=0)
    assert construction == "hadamard rows and negations"
    assert torch.equal(centres[16:], -sylvester_hadamard(16)[:4])
    # A row and its negation are K apart, every other pair K / 2.
    assert distance_stats(centres) == {"min_distance": 8.0, "mean_distance": pytest.approx(
        (8 * (190 - 4) + 16 * 4) / 190), "max_distance": 16.0}  # fmt: skip


@pytest.mark.parametrize("bits", [32, 64])
def test_the_shipped_convention_skips_the_all_ones_row(bits):
    # The official NUS-WIDE files (21 classes) at 32 and 64 bits are rows 1..21 of H (decoded
    # from yuanli2333/Hadamard-Matrix-for-hashing @ 55cab00); the default takes rows 0..20.
    centres, construction = generate_centres(21, bits, "shipped", seed=0)
    assert construction == "hadamard rows 1..21"
    assert torch.equal(centres, sylvester_hadamard(bits)[1:22])
    default, _ = generate_centres(21, bits, "hadamard", seed=0)
    assert torch.equal(default, sylvester_hadamard(bits)[:21])
    assert not (centres == 1).all(dim=1).any()  # no all-ones centre


@pytest.mark.parametrize("classes,bits", [(21, 16), (16, 16), (80, 64)])
def test_the_shipped_convention_is_balanced_random_from_as_many_classes_as_bits(classes, bits):
    # The official NUS-WIDE 16-bit and COCO 64-bit files are balanced random rows.
    centres, construction = generate_centres(classes, bits, "shipped", seed=0)
    assert construction == "balanced random" and (centres.sum(dim=1) == 0).all()
    assert torch.equal(centres, generate_centres(classes, bits, "random", seed=0)[0])


def test_an_unknown_construction_is_refused():
    with pytest.raises(ValueError, match="unknown centre construction 'sylvester'"):
        generate_centres(4, 8, "sylvester", seed=0)


@pytest.mark.parametrize("how,classes,bits", [("hadamard", 80, 16), ("random", 20, 32)])
def test_random_centres_are_balanced_seeded_and_checked(how, classes, bits):
    centres, construction = generate_centres(classes, bits, how, seed=3)
    again, _ = generate_centres(classes, bits, how, seed=3)
    other, _ = generate_centres(classes, bits, how, seed=4)
    assert construction == "balanced random"
    assert torch.equal(centres, again) and not torch.equal(centres, other)
    assert ((centres == 1) | (centres == -1)).all()
    assert (centres.sum(dim=1) == 0).all()  # exactly half the bits are -1
    stats = distance_stats(centres)
    assert 0 < stats["min_distance"] <= stats["mean_distance"] <= stats["max_distance"]
    assert stats["mean_distance"] == pytest.approx(bits / 2, rel=0.05)


def test_centres_load_from_npy_txt_and_torch_files(tmp_path):
    centres, _ = generate_centres(20, 16, "random", seed=1)
    np.save(tmp_path / "c.npy", centres.numpy())
    np.savetxt(tmp_path / "c.txt", centres.numpy(), fmt="%d")
    torch.save(centres, tmp_path / "c.pkl")
    for name in ("c.npy", "c.txt", "c.pkl"):
        loaded, construction = load_centres(tmp_path / name, 20, 16)
        assert torch.equal(loaded, centres)
        assert construction.startswith(f"file {name} sha256 ")


def test_a_centres_file_of_the_wrong_shape_says_what_it_needs(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((10, 16)))
    with pytest.raises(
        ValueError, match=r"must be a \(20, 16\) array of \+1/-1 .* got shape \(10, 16\)"
    ):
        load_centres(tmp_path / "c.npy", 20, 16)
    with pytest.raises(ValueError, match="cannot read the centres file"):
        load_centres(tmp_path / "missing.npy", 20, 16)


# --- the simplex projection -----------------------------------------------------------------


def brute_force_projection(v: np.ndarray) -> np.ndarray:
    """argmin ||w - v||² on the simplex, by a constrained minimiser."""
    result = minimize(
        lambda w: ((w - v) ** 2).sum(), np.full(len(v), 1 / len(v)), jac=lambda w: 2 * (w - v),
        bounds=[(0, None)] * len(v), constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        method="SLSQP", options={"ftol": 1e-15, "maxiter": 1000},
    )  # fmt: skip
    return result.x


def test_projection_matches_a_constrained_minimiser_on_random_vectors():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(40, 7, generator=generator, dtype=torch.float64) * 3  # negatives too
    support = torch.rand(40, 7, generator=generator) > 0.3
    support[:, 0] = True
    projected = project_to_simplex(values, support)
    for row in range(40):
        kept = support[row].nonzero().flatten()
        expected = brute_force_projection(values[row, kept].numpy())
        np.testing.assert_allclose(projected[row, kept].numpy(), expected, atol=1e-7)
        assert (projected[row, ~support[row]] == 0).all()
    torch.testing.assert_close(projected.sum(dim=1), torch.ones(40, dtype=torch.float64))


def test_a_point_on_the_simplex_is_its_own_projection():
    point = torch.tensor([[0.2, 0.5, 0.3, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(project_to_simplex(point), point)


def test_hand_cases_and_zero_entries_that_come_back():
    projected = project_to_simplex(torch.tensor([[2.0, 0.0], [0.5, 0.5], [-1.0, -1.0]]))
    torch.testing.assert_close(projected, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]]))
    # An entry at 0 whose value rises comes back into the support.
    again = project_to_simplex(torch.tensor([[1.0, 0.8]]))
    torch.testing.assert_close(again, torch.tensor([[0.6, 0.4]]))


def test_a_row_without_support_is_all_zero():
    projected = project_to_simplex(torch.ones(2, 3), torch.tensor([[False] * 3, [True] * 3]))
    torch.testing.assert_close(projected, torch.tensor([[0.0] * 3, [1 / 3] * 3]))
