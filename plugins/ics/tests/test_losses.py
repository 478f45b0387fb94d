"""CSQ and ICS losses against naive loops, and ICS's alternating weight updates."""

from __future__ import annotations

import math

import pytest
import torch
from bench_ics import (
    CSQ_SPEC,
    ICS_SPEC,
    CSQLoss,
    ICSLoss,
    centre_loss,
    mean_targets,
    project_to_simplex,
    quantisation_loss,
    sign_of_mean_targets,
)

from benchmark.specs import Batch, BuildContext

BITS, CLASSES = 8, 5
LABELS = torch.tensor(
    [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 1]]
)


def codes(seed: int = 0, n: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(n, BITS, generator=generator, dtype=torch.float64) * 2)


def naive_centre_loss(h, target):
    total = 0.0
    for hb, cb in zip(h.tolist(), target.tolist(), strict=True):
        q, p = (hb + 1) / 2, (cb + 1) / 2
        total += -(p * math.log(q) + (1 - p) * math.log(1 - q))
    return total / len(h)


def test_centre_loss_matches_a_loop_over_bits():
    h = codes()
    targets = torch.where(codes(1) > 0, 1.0, -1.0).double()
    losses = centre_loss(h, targets)
    for row in range(len(h)):
        assert losses[row].item() == pytest.approx(naive_centre_loss(h[row], targets[row]), 1e-9)


@pytest.mark.parametrize("form", ["squared", "log-cosh"])
def test_quantisation_matches_a_loop(form):
    h = codes(2)
    one = (lambda x: (abs(x) - 1) ** 2) if form == "squared" else (
        lambda x: math.log(math.cosh(abs(x) - 1)))  # fmt: skip
    expected = sum(one(x) for row in h.tolist() for x in row) / h.numel()
    assert quantisation_loss(h, form).item() == pytest.approx(expected, rel=1e-9)
    assert quantisation_loss(torch.tensor([[1.0, -1.0]]), form).item() == 0.0


def test_log_cosh_stays_finite_far_from_one():
    assert torch.isfinite(quantisation_loss(torch.tensor([[500.0]]), "log-cosh"))


def test_sign_of_mean_target_fills_ties_from_the_fixed_vector():
    centres = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, 1.0, 1.0]])
    fill = torch.tensor([-1.0, -1.0, -1.0, 1.0])
    labels = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
    targets = sign_of_mean_targets(labels, centres, fill)
    # Row 0: sum (2, 0, 0, -2) -> (1, fill, fill, -1); row 1: (3, 1, 1, -1); row 2: all fill.
    assert targets.tolist() == [[1, -1, -1, -1], [1, 1, 1, -1], [-1, -1, -1, 1]]
    torch.testing.assert_close(
        mean_targets(labels, centres, fill)[:2],
        torch.tensor([[1, 0, 0, -1], [1, 1 / 3, 1 / 3, -1 / 3]]),
    )


def build(spec, **hparams):
    context = BuildContext(
        hparams={**spec.defaults, **hparams}, embedding_dim=16, num_classes=CLASSES,
        num_train_images=10, num_attributes=0, device=torch.device("cpu"), hash_bits=BITS,
    )  # fmt: skip
    return spec.build(context)


def batch(indices=(0, 1, 2, 3, 4)) -> Batch:
    return Batch(torch.zeros(5, 3, 4, 4), LABELS, torch.tensor(indices))


def test_csq_loss_is_the_mean_centre_loss_plus_weighted_quantisation():
    criterion = build(CSQ_SPEC, lambda_q=0.3).double()
    h = codes(3)
    loss, logs = criterion({"hash": h}, batch())
    targets = sign_of_mean_targets(LABELS, criterion.centres, criterion.tie_fill).double()
    expected = sum(naive_centre_loss(h[i], targets[i]) for i in range(5)) / 5
    expected += 0.3 * quantisation_loss(h).item()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert float(logs["centre"]) + 0.3 * float(logs["quantisation"]) == pytest.approx(loss.item())


def test_ics_without_weight_steps_is_csq_with_unbinarised_mean_targets():
    h = codes(4).float()
    ics = build(ICS_SPEC, eta=0.0, lambda_r=0.0)
    csq = build(CSQ_SPEC, target="mean")
    ics_loss, _ = ics({"hash": h}, batch())
    csq_loss, _ = csq({"hash": h}, batch())
    assert ics_loss.item() == pytest.approx(csq_loss.item(), rel=1e-6)


def naive_weight_step(h, weights, labels, centres, eta, lambda_r):
    """Finite-difference gradient of one image's objective, then the projection."""

    def objective(w):
        target = w @ centres
        entropy = sum(x * math.log(x) for x in w.tolist() if x > 0)
        return naive_centre_loss(h, target) + lambda_r * entropy

    gradient = torch.zeros_like(weights)
    for k in range(len(weights)):
        step = torch.zeros_like(weights)
        step[k] = 1e-6
        gradient[k] = (objective(weights + step) - objective(weights - step)) / 2e-6
    return project_to_simplex((weights - eta * gradient)[None], labels[None])[0]


def test_one_ics_step_moves_each_image_weights_by_a_projected_gradient_step():
    criterion = build(ICS_SPEC, eta=0.5, lambda_r=0.01).double()
    h = codes(5)
    criterion({"hash": h}, batch())
    centres = criterion.centres.double()
    for i in range(5):
        support = LABELS[i] > 0
        uniform = support.double() / support.sum()
        expected = naive_weight_step(h[i], uniform, support, centres, 0.5, 0.01)
        torch.testing.assert_close(criterion.weights[i], expected, atol=1e-6, rtol=0)
        assert criterion.weights[i].sum().item() == pytest.approx(1.0)
        assert (criterion.weights[i][~support] == 0).all()
    assert criterion.seen[:5].all() and not criterion.seen[5:].any()


def test_the_network_step_uses_the_updated_weights():
    criterion = build(ICS_SPEC, eta=0.5, lambda_r=0.0).double()
    h = codes(6).requires_grad_()
    loss, _ = criterion({"hash": h}, batch())
    targets = criterion.targets(criterion.weights[:5], LABELS > 0)
    expected = centre_loss(h, targets).mean() + 0.05 * quantisation_loss(h)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    loss.backward()
    assert h.grad.abs().sum() > 0


def test_weights_follow_the_image_index_not_the_batch_position():
    criterion = build(ICS_SPEC)
    h = codes(7).float()
    criterion({"hash": h}, batch((9, 8, 7, 6, 5)))
    assert criterion.seen.tolist() == [False] * 5 + [True] * 5
    # Image 9 is the batch's first, with one label (class 0): weight 1 on it.
    assert criterion.weights[9].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert criterion.support[7].tolist() == [False, True, True, True, False]


def test_evaluation_mode_leaves_the_weights_alone():
    criterion = build(ICS_SPEC).eval()
    criterion({"hash": codes(8).float()}, batch())
    assert not criterion.seen.any() and (criterion.weights == 0).all()


def test_weights_survive_a_state_dict_round_trip_and_are_summarised():
    criterion = build(ICS_SPEC, eta=2.0)
    for seed in range(3):
        criterion({"hash": codes(seed).float()}, batch())
    restored = build(ICS_SPEC, eta=2.0)
    restored.load_state_dict(criterion.state_dict())
    for name in ("weights", "support", "seen", "centres", "tie_fill"):
        assert torch.equal(getattr(restored, name), getattr(criterion, name)), name
    summary = restored.summary()["weights"]
    assert summary["images_seen"] == 5 and summary["multi_label_images"] == 3
    assert sum(summary["normalised_entropy_histogram"]) == 3
    assert 0.0 <= summary["normalised_entropy_mean"] <= 1.0
    assert restored.summary()["centres"]["construction"] == "hadamard rows"


def test_the_specs():
    assert CSQ_SPEC.heads == ("hash",) and CSQ_SPEC.eval_output == "hash"
    assert [r.metrics["map@k"] for r in CSQ_SPEC.reported] == [0.796, 0.838, 0.861]
    assert ICS_SPEC.fidelity == "reconstructed" and ICS_SPEC.reported == ()
    with pytest.raises(ValueError, match="needs the protocol's model.hash.bits"):
        CSQ_SPEC.build(
            BuildContext(dict(CSQ_SPEC.defaults), 16, 5, 10, 0, torch.device("cpu"), hash_bits=0)
        )
    assert isinstance(build(ICS_SPEC), ICSLoss) and isinstance(build(CSQ_SPEC), CSQLoss)


def test_single_label_batches_are_refused_with_a_reason():
    single = Batch(torch.zeros(5, 3, 4, 4), torch.arange(5), torch.arange(5))
    for spec in (CSQ_SPEC, ICS_SPEC):
        with pytest.raises(ValueError, match=r"needs \(batch, 5\) multi-hot labels, got shape"):
            build(spec)({"hash": codes(9).float()}, single)
