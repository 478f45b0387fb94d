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
    clamped_centre_loss,
    mean_targets,
    project_to_simplex,
    quantisation_loss,
    sign_of_mean_targets,
)

from benchmark.models.model import HashHead
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
    losses = centre_loss(h.atanh(), targets)
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
    expected = centre_loss(h.atanh(), targets).mean() + 0.05 * quantisation_loss(h)
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


# --- the centre loss's two forms, saturation and mixed precision ----------------------------------

# The official CSQ loss (yuanli2333/Hadamard-Matrix-for-hashing, train.py @ 55cab00: its
# Hash_center_multilables target, nn.BCELoss on 0.5 (y + 1) plus 0.05 x the squared Q_loss),
# run in float64 outside this project on the batch below with its shipped 32-bit NUS-WIDE
# centres (Hadamard rows 1..21, which centres=shipped builds) and our tie-filling vector.
OFFICIAL_LOSS = 1.5838165840265184
OFFICIAL_GRADIENT_SUM = 0.084034123521468398
OFFICIAL_GRADIENT_ROW_0 = [
    -0.00011116963940020321, 0.0089326043733053712, -0.0052449881931187067, 0.0081953438262074192
]  # fmt: skip
NUS_LABELS = [[0], [0, 1], [2, 3, 4], [5, 20], [7, 8, 9, 10], [1, 2, 3]]


def official_batch(dtype):
    labels = torch.zeros(6, 21)
    for row, classes in enumerate(NUS_LABELS):
        labels[row, classes] = 1
    generator = torch.Generator().manual_seed(17)
    z = (2 * torch.randn(6, 32, generator=generator, dtype=torch.float64)).to(dtype)
    return z.requires_grad_(), Batch(torch.zeros(6, 3, 4, 4), labels, torch.arange(6))


def nus_csq(**options) -> CSQLoss:
    shared = {"centres_file": "", "centre_seed": 0, "lambda_q": 0.05, "quantisation": "squared"}
    return CSQLoss(classes=21, bits=32, centres="shipped", **shared | options)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("form", ["logits", "official-clamped"])
def test_both_forms_give_the_official_loss_and_gradient_on_unsaturated_codes(
    dtype, tolerance, form
):
    z, batch = official_batch(dtype)
    assert z.abs().max() < 6  # no bit saturated
    loss, _ = nus_csq(centre_form=form).to(dtype)({"hash": z.tanh(), "hash_pre_tanh": z}, batch)
    loss.backward()
    # float32 official arithmetic itself is 7.7e-6 off the float64 value here (1 - tanh z
    # loses digits at |z| = 5.7); in logit space the float32 loss stays within 1e-7 of it.
    loss_tolerance = tolerance if form == "logits" or dtype == torch.float64 else 1e-5
    assert loss.item() == pytest.approx(OFFICIAL_LOSS, abs=loss_tolerance)
    assert z.grad.sum().item() == pytest.approx(OFFICIAL_GRADIENT_SUM, abs=tolerance)
    assert z.grad[0, :4].tolist() == pytest.approx(OFFICIAL_GRADIENT_ROW_0, abs=tolerance)


def test_the_float32_logit_form_is_the_official_formula_where_unsaturated():
    # The official formula (torch's BCELoss on the codes) in float64 is the reference: in
    # float32 its own arithmetic is up to 5e-6 off at |z| = 4, the logit form 2e-7.
    generator = torch.Generator().manual_seed(3)
    z = (8 * torch.rand(64, 32, generator=generator) - 4).requires_grad_()
    targets = torch.where(torch.rand(64, 32, generator=generator) < 0.5, -1.0, 1.0)
    z64 = z.detach().double().requires_grad_()
    ours, official = centre_loss(z, targets), clamped_centre_loss(z64.tanh(), targets.double())
    torch.testing.assert_close(ours.double(), official, atol=1e-6, rtol=0)
    (ours_gradient,) = torch.autograd.grad(ours.sum(), z)
    (official_gradient,) = torch.autograd.grad(official.sum(), z64)
    torch.testing.assert_close(ours_gradient.double(), official_gradient, atol=1e-6, rtol=0)


def wrong_side_gradient(form: str, z: torch.Tensor) -> torch.Tensor:
    """d loss / d z of a one-image batch of codes tanh z whose first bit's centre is +1."""
    outputs = {"hash": z.tanh(), "hash_pre_tanh": z}
    criterion = build(CSQ_SPEC, centre_loss=form, lambda_q=0.0)
    labels = torch.tensor([[1, 0, 0, 0, 0]])
    criterion.centres[0] = 1.0  # the first bit's centre is +1
    loss, _ = criterion(outputs, Batch(torch.zeros(1, 3, 4, 4), labels, torch.tensor([0])))
    (gradient,) = torch.autograd.grad(loss, z)
    return gradient


def test_a_wrong_side_bit_at_z_12_keeps_its_gradient_in_logit_space_only():
    z = torch.zeros(1, BITS)
    z[0, 0] = -12.0  # tanh rounds to exactly -1 in float32
    z.requires_grad_()
    # 2 (q - p) / K with q = sigmoid(-24), p = 1.
    assert wrong_side_gradient("logits", z)[0, 0].item() == pytest.approx(-2 / BITS, rel=1e-6)
    assert wrong_side_gradient("official-clamped", z)[0, 0].item() == 0.0


def test_under_bf16_autocast_the_hash_head_keeps_a_wrong_side_bit_learning():
    head = HashHead(in_features=4, bits=BITS, hidden=0, dropout=0.0)
    last = head.layers[-1]
    with torch.no_grad():  # bit 0 at z = -12, the others at +-4 (bf16 rounds tanh 4 to 1)
        last.weight.zero_()
        last.bias.copy_(torch.tensor([-12.0] + [4.0, -4.0] * 3 + [4.0]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = head(torch.randn(1, 4))
        assert last(torch.randn(1, 4)).dtype == torch.bfloat16  # autocast is on
    assert outputs["hash"].dtype == outputs["hash_pre_tanh"].dtype == torch.float32
    assert outputs["hash"][0, 1].item() == pytest.approx(math.tanh(4.0), abs=1e-6)
    criterion = build(CSQ_SPEC, lambda_q=0.05)
    criterion.centres[0] = 1.0
    labels = torch.tensor([[1, 0, 0, 0, 0]])
    loss, _ = criterion(outputs, Batch(torch.zeros(1, 3, 4, 4), labels, torch.tensor([0])))
    loss.backward()
    assert last.bias.grad[0].item() == pytest.approx(-2 / BITS, rel=1e-3)
    assert (last.bias.grad[1:] != 0).all()  # every bit's codes are off +-1, and learn


def test_without_the_pre_tanh_value_the_codes_give_it_where_they_can():
    h = codes(10)
    criterion = build(CSQ_SPEC).double()
    from_codes, _ = criterion({"hash": h}, batch())
    from_z, _ = criterion({"hash": h, "hash_pre_tanh": h.atanh()}, batch())
    assert from_codes.item() == pytest.approx(from_z.item(), rel=1e-12)
