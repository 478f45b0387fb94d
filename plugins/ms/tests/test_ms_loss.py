"""Tests of the MS loss: by hand, against the official loop, against pytorch-metric-learning."""

from __future__ import annotations

import math

import bench_ms
import jsonschema
import pluggy
import pytest
import torch
import torch.nn.functional as F
from bench_ms import MS_SPEC, MultiSimilarityLoss, multi_similarity_loss
from bench_ms.loss import multi_similarity_per_anchor
from pytorch_metric_learning import losses, miners, reducers

from benchmark import hookspecs
from benchmark.specs import Batch, BuildContext

OFFICIAL = {"alpha": 2.0, "beta": 40.0, "base": 0.5, "margin": 0.1}
PAPER = {"alpha": 2.0, "beta": 50.0, "base": 1.0, "margin": 0.1}


def unit_vectors(degrees: list[float]) -> torch.Tensor:
    """Points on the unit circle at the given angles, float64."""
    radians = [math.radians(d) for d in degrees]
    return torch.tensor([[math.cos(r), math.sin(r)] for r in radians], dtype=torch.float64)


def clustered_batch(
    seed: int, spread: float, per_class: tuple[int, ...] = (4, 4, 4, 4), dim: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised float64 points around one random centre per class; a small spread leaves
    many anchors with empty mined sets."""
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(
        torch.randn(len(per_class), dim, generator=generator, dtype=torch.float64), dim=1
    )
    labels = torch.repeat_interleave(torch.arange(len(per_class)), torch.tensor(per_class))
    noise = spread * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
    return F.normalize(centres[labels] + noise, dim=1), labels


def naive_official_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    base: float,
    margin: float,
) -> float:
    """The official per-anchor loop (ret_benchmark/losses/multi_similarity_loss.py), restated
    over Python floats."""
    points, ids, m = embeddings.tolist(), labels.tolist(), len(labels)
    sim = [
        [sum(a * b for a, b in zip(points[i], points[j], strict=True)) for j in range(m)]
        for i in range(m)
    ]
    total = 0.0
    for i in range(m):
        pos_ = [sim[i][k] for k in range(m) if ids[k] == ids[i] and sim[i][k] < 1 - 1e-5]
        neg_ = [sim[i][k] for k in range(m) if ids[k] != ids[i]]
        if not pos_ or not neg_:  # the official min()/max() would raise here
            continue
        neg = [s for s in neg_ if s + margin > min(pos_)]
        pos = [s for s in pos_ if s - margin < max(neg_)]
        if not neg or not pos:
            continue
        total += math.log(1 + sum(math.exp(-alpha * (s - base)) for s in pos)) / alpha
        total += math.log(1 + sum(math.exp(beta * (s - base)) for s in neg)) / beta
    return total / m


def pml_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    base: float,
    margin: float,
    **loss_options,
) -> torch.Tensor:
    miner = miners.MultiSimilarityMiner(epsilon=margin)
    loss = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base, **loss_options)
    return loss(embeddings, labels, miner(embeddings, labels))


# --- (1) values computed by hand --------------------------------------------------------------


def test_hand_computed_value_on_four_points():
    # Class 0 at 0 and 90 degrees, class 1 at 45 and 180 degrees; S = cos(angle between).
    embeddings, labels = unit_vectors([0, 90, 45, 180]), torch.tensor([0, 0, 1, 1])
    alpha, beta, base, r = 2.0, 40.0, 0.5, math.sqrt(0.5)  # r = cos 45 = 0.7071

    def pos(*s):
        return math.log(1 + sum(math.exp(-alpha * (x - base)) for x in s)) / alpha

    def neg(*s):
        return math.log(1 + sum(math.exp(beta * (x - base)) for x in s)) / beta

    # anchor 0: positive 0; negatives r, -1. Keep negatives with S + 0.1 > 0: only r.
    anchor_0 = pos(0.0) + neg(r)
    # anchor 1: positive 0; negatives r, 0. Both pass S + 0.1 > 0.
    anchor_1 = pos(0.0) + neg(r, 0.0)
    # anchor 2: positive -r; negatives r, r. Both pass S + 0.1 > -r; -r - 0.1 < r keeps -r.
    anchor_2 = pos(-r) + neg(r, r)
    # anchor 3: positive -r; negatives -1, 0. -1 + 0.1 > -r fails, 0 + 0.1 > -r holds.
    anchor_3 = pos(-r) + neg(0.0)
    expected = (anchor_0 + anchor_1 + anchor_2 + anchor_3) / 4

    actual = multi_similarity_loss(embeddings, labels, **OFFICIAL)
    assert actual.item() == pytest.approx(expected, abs=1e-12)


def test_hand_computed_value_with_skipped_anchors():
    # Class 0 at 0 and -60 degrees, class 1 at 60 and 100 degrees. Only anchor 0 mines pairs:
    # its positive (S = 0.5) and its negative at 60 degrees (S = 0.5 > 0.5 - 0.1). The three
    # other anchors are skipped but still count in the division by 4.
    embeddings, labels = unit_vectors([0, -60, 60, 100]), torch.tensor([0, 0, 1, 1])
    expected = (math.log(1 + math.exp(-2 * 0.0)) / 2 + math.log(1 + math.exp(40 * 0.0)) / 40) / 4

    per_anchor, valid = multi_similarity_per_anchor(embeddings, labels, **OFFICIAL)
    assert valid.tolist() == [True, False, False, False]
    assert per_anchor.sum().item() / 4 == pytest.approx(expected, abs=1e-12)
    assert multi_similarity_loss(embeddings, labels, **OFFICIAL).item() == pytest.approx(
        expected, abs=1e-12
    )


# --- (2) the official loop, restated naively ---------------------------------------------------

NAIVE_CASES = [
    # (seed, spread, samples per class)
    (0, 0.3, (4, 4, 4, 4)),
    (1, 0.3, (4, 4, 4, 4)),
    (2, 0.6, (3, 5, 4)),
    (3, 1.0, (2, 2, 2, 2, 2, 2)),
    (4, 3.0, (5, 5)),
    (5, 0.2, (4, 4, 1, 3)),  # a class with one sample: its anchor has no positives at all
]


@pytest.mark.parametrize("hparams", [OFFICIAL, PAPER], ids=["official", "paper"])
@pytest.mark.parametrize(("seed", "spread", "per_class"), NAIVE_CASES)
def test_matches_naive_official_loop(seed, spread, per_class, hparams):
    embeddings, labels = clustered_batch(seed, spread, per_class)
    expected = naive_official_loss(embeddings, labels, **hparams)
    actual = multi_similarity_loss(embeddings, labels, **hparams)
    assert actual.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_naive_cases_include_anchors_with_empty_mined_sets():
    fractions = [
        multi_similarity_per_anchor(*clustered_batch(*case), **OFFICIAL)[1].double().mean()
        for case in NAIVE_CASES
    ]
    assert min(fractions) < 0.5 and max(fractions) == 1.0


def test_exact_duplicates_are_not_positives_as_in_official_code():
    embeddings, labels = clustered_batch(7, 0.5)
    embeddings[1] = embeddings[0]  # an exact duplicate within class 0
    expected = naive_official_loss(embeddings, labels, **OFFICIAL)
    assert multi_similarity_loss(embeddings, labels, **OFFICIAL).item() == pytest.approx(
        expected, rel=1e-10
    )


# --- (3) pytorch-metric-learning -------------------------------------------------------------
# PML computes the same loss when: embeddings are L2-normalised; no two distinct same-label
# items have S >= 1 - 1e-5; the miner returns more than one positive or more than one negative
# pair; and no anchor has mined pairs of one kind only (impossible in exact arithmetic, see
# test_pml_keeps_one_sided_anchors_at_rounding_ties). PML's default MeanReducer divides by the
# batch size, skipped anchors included, as the official code does.

PML_CASES = [(2, 0.2), (6, 0.2), (0, 0.3), (3, 0.3), (1, 0.6)]


@pytest.mark.parametrize("hparams", [OFFICIAL, PAPER], ids=["official", "paper"])
@pytest.mark.parametrize(("seed", "spread"), PML_CASES)
def test_matches_pml_miner_and_loss_where_definitions_coincide(seed, spread, hparams):
    embeddings, labels = clustered_batch(seed, spread)
    a1, _, a2, _ = miners.MultiSimilarityMiner(epsilon=hparams["margin"])(embeddings, labels)
    assert len(a1) > 1 or len(a2) > 1  # PML's shortcut to zero is not taken
    assert (embeddings @ embeddings.T).fill_diagonal_(0).max() < 1 - 1e-5  # no duplicates
    per_anchor, valid = multi_similarity_per_anchor(embeddings, labels, **hparams)
    assert set(a1.tolist()) == set(a2.tolist()) == set(valid.nonzero().flatten().tolist())

    ours = multi_similarity_loss(embeddings, labels, **hparams)
    assert ours.item() == pytest.approx(pml_loss(embeddings, labels, **hparams).item(), rel=1e-12)


def test_pml_cases_include_skipped_anchors():
    fractions = [
        multi_similarity_per_anchor(*clustered_batch(*case), **OFFICIAL)[1].double().mean()
        for case in PML_CASES
    ]
    assert min(fractions) < 0.5 and max(fractions) == 1.0


def test_pml_counts_duplicates_as_positives():
    # Class 0 is a point and its exact duplicate, class 1 two points at 10 and -20 degrees.
    # Ours (and the official code) see no positive for anchors 0 and 1 and skip them. PML
    # excludes only the diagonal, so each of them has the positive S = 1, and since
    # 1 - 0.1 < cos 10 it is mined, with both negatives (S + 0.1 > 1).
    embeddings, labels = unit_vectors([0, 0, 10, -20]), torch.tensor([0, 0, 1, 1])
    cos10, cos20 = math.cos(math.radians(10)), math.cos(math.radians(20))
    duplicate_anchor = (
        math.log(1 + math.exp(-2 * (1 - 0.5))) / 2
        + math.log(1 + math.exp(40 * (cos10 - 0.5)) + math.exp(40 * (cos20 - 0.5))) / 40
    )

    ours = multi_similarity_loss(embeddings, labels, **OFFICIAL).item()
    pml = pml_loss(embeddings, labels, **OFFICIAL).item()
    assert multi_similarity_per_anchor(embeddings, labels, **OFFICIAL)[1].tolist() == [
        False,
        False,
        True,
        True,
    ]
    assert pml - ours == pytest.approx(2 * duplicate_anchor / 4, rel=1e-12)


def test_pml_returns_zero_when_at_most_one_pair_of_each_kind_is_mined():
    # GenericPairLoss.compute_loss: `if all(len(x) <= 1 for x in indices_tuple)` -> zero.
    # Same batch as test_hand_computed_value_with_skipped_anchors: one pair of each kind.
    embeddings, labels = unit_vectors([0, -60, 60, 100]), torch.tensor([0, 0, 1, 1])
    a1, p, a2, n = miners.MultiSimilarityMiner(epsilon=0.1)(embeddings, labels)
    assert (a1.tolist(), p.tolist(), a2.tolist(), n.tolist()) == ([0], [1], [0], [2])

    assert pml_loss(embeddings, labels, **OFFICIAL).item() == 0.0
    assert multi_similarity_loss(embeddings, labels, **OFFICIAL).item() == pytest.approx(
        (math.log(2) / 2 + math.log(2) / 40) / 4, abs=1e-12
    )


def test_pml_keeps_one_sided_anchors_at_rounding_ties():
    # If an anchor mines any positive, it mines its least similar one p, so max_neg > S_p - eps
    # and its most similar negative is mined too (and conversely): in exact arithmetic the two
    # mined sets are empty together. In floating point `S_p - eps < max_neg` and
    # `max_neg + eps > S_p` can disagree. The official code then skips the anchor (`continue`);
    # PML keeps the side that was mined. c_p and c_n below are such a float64 tie.
    c_p, c_n = 0.2600023, 0.16000230000000004
    tie = torch.tensor([c_p, c_n], dtype=torch.float64)
    assert (tie[0] - 0.1 < tie[1]) and not (tie[1] + 0.1 > tie[0])
    # Anchor 0 = (1, 0) sees S = c_p (class 0) and c_n (class 1) exactly; anchor 3 = (-1, 0)
    # sees the negated values and is one-sided the other way.
    embeddings = torch.tensor(
        [[1.0, 0.0], [c_p, math.sqrt(1 - c_p**2)], [c_n, -math.sqrt(1 - c_n**2)], [-1.0, 0.0]],
        dtype=torch.float64,
    )
    labels = torch.tensor([0, 0, 1, 1])
    assert torch.equal(F.normalize(embeddings, dim=1), embeddings)  # PML's re-normalising is exact
    assert (embeddings @ embeddings.T)[0].tolist()[1:3] == [c_p, c_n]

    a1, p, a2, n = miners.MultiSimilarityMiner(epsilon=0.1)(embeddings, labels)
    assert (0, 1) in zip(a1.tolist(), p.tolist(), strict=True) and 0 not in a2.tolist()
    assert (3, 1) in zip(a2.tolist(), n.tolist(), strict=True) and 3 not in a1.tolist()
    valid = multi_similarity_per_anchor(embeddings, labels, **OFFICIAL)[1]
    assert valid.tolist() == [False, False, True, False]

    only_positive = math.log(1 + math.exp(-2 * (c_p - 0.5))) / 2  # anchor 0
    only_negative = math.log(1 + math.exp(40 * (-c_p - 0.5))) / 40  # anchor 3
    ours = multi_similarity_loss(embeddings, labels, **OFFICIAL).item()
    assert ours == pytest.approx(naive_official_loss(embeddings, labels, **OFFICIAL), rel=1e-12)
    assert pml_loss(embeddings, labels, **OFFICIAL).item() - ours == pytest.approx(
        (only_positive + only_negative) / 4, rel=1e-12
    )


def test_pml_avg_non_zero_reducer_divides_by_valid_anchors_instead():
    embeddings, labels = clustered_batch(0, 0.3)
    valid = multi_similarity_per_anchor(embeddings, labels, **OFFICIAL)[1]
    assert 0 < valid.sum() < len(labels)
    ours = multi_similarity_loss(embeddings, labels, **OFFICIAL).item()
    pml = pml_loss(embeddings, labels, **OFFICIAL, reducer=reducers.AvgNonZeroReducer()).item()
    assert pml == pytest.approx(ours * len(labels) / valid.sum().item(), rel=1e-12)


def test_pml_normalises_embeddings_and_ours_expects_them_normalised():
    embeddings, labels = clustered_batch(1, 0.6)
    ours = multi_similarity_loss(embeddings, labels, **OFFICIAL).item()
    assert pml_loss(3 * embeddings, labels, **OFFICIAL).item() == pytest.approx(ours, rel=1e-12)
    assert multi_similarity_loss(3 * embeddings, labels, **OFFICIAL).item() != pytest.approx(
        ours, rel=1e-3
    )


# --- (4) gradients -----------------------------------------------------------------------------


def test_gradients_are_finite_and_nonzero():
    embeddings, labels = clustered_batch(1, 0.6)
    embeddings.requires_grad_(True)
    multi_similarity_loss(embeddings, labels, **OFFICIAL).backward()
    assert torch.isfinite(embeddings.grad).all()
    assert embeddings.grad.abs().sum() > 0


def test_no_valid_anchor_gives_a_connected_zero_with_zero_gradient():
    # Two tight classes at opposite poles: every negative is far below min positive - 0.1.
    embeddings = unit_vectors([-2, 0, 3, 178, 180, 183]).requires_grad_(True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    loss = multi_similarity_loss(embeddings, labels, **OFFICIAL)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))


def test_low_precision_embeddings_and_autocast_stay_finite():
    embeddings, labels = clustered_batch(2, 0.6)
    reference = multi_similarity_loss(embeddings.float(), labels, **OFFICIAL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = multi_similarity_loss(embeddings.float(), labels, **OFFICIAL)
        half = multi_similarity_loss(embeddings.half(), labels, **OFFICIAL)
    assert in_autocast.dtype == torch.float32 and in_autocast.item() == reference.item()
    assert torch.isfinite(half) and half.item() == pytest.approx(reference.item(), rel=0.05)


# --- (5) the criterion module ------------------------------------------------------------------


def test_module_matches_function_and_logs_valid_anchor_fraction():
    embeddings, labels = clustered_batch(0, 0.3)
    batch = Batch(
        images=torch.zeros(len(labels), 3, 4, 4), labels=labels, indices=torch.arange(len(labels))
    )
    loss, logs = MultiSimilarityLoss(**OFFICIAL)({"embedding": embeddings}, batch)

    valid = multi_similarity_per_anchor(embeddings, labels, **OFFICIAL)[1]
    assert loss.item() == multi_similarity_loss(embeddings, labels, **OFFICIAL).item()
    assert logs == {"valid_anchors": valid.double().mean().item()}
    assert 0 < logs["valid_anchors"] < 1


# --- (6) the spec ------------------------------------------------------------------------------


def test_defaults_and_presets_validate_against_the_schema():
    jsonschema.Draft202012Validator.check_schema(MS_SPEC.hparam_schema)
    jsonschema.validate(dict(MS_SPEC.defaults), MS_SPEC.hparam_schema)
    for preset in MS_SPEC.presets.values():
        jsonschema.validate(dict(preset), MS_SPEC.hparam_schema)
    assert MS_SPEC.defaults == MS_SPEC.presets["official"] == OFFICIAL
    assert MS_SPEC.presets["paper"] == PAPER
    with pytest.raises(jsonschema.ValidationError, match="scale_neg"):
        jsonschema.validate({**OFFICIAL, "scale_neg": 40.0}, MS_SPEC.hparam_schema)


def test_bench_methods_hook_returns_the_spec():
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(bench_ms)
    assert manager.hook.bench_methods() == [[MS_SPEC]]
    assert MS_SPEC.name == "ms" and MS_SPEC.eval_output == "embedding"
    assert {r.dataset for r in MS_SPEC.reported} == {"cub", "cars196", "inshop"}
    assert all(0 < v < 1 for r in MS_SPEC.reported for v in r.metrics.values())


def test_build_returns_the_criterion_with_its_hparams():
    ctx = BuildContext(
        hparams=PAPER,
        embedding_dim=8,
        num_classes=4,
        num_train_images=16,
        num_attributes=0,
        device=torch.device("cpu"),
    )
    criterion = MS_SPEC.build(ctx)
    assert isinstance(criterion, MultiSimilarityLoss)
    assert (criterion.alpha, criterion.beta, criterion.base, criterion.margin) == (
        2.0,
        50.0,
        1.0,
        0.1,
    )
