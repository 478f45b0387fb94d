"""SGML and binomial deviance against naive float64 loops over pairs, and their behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from bench_sgml import (
    BINOMIAL_SPEC,
    SGML_SPEC,
    BinomialDevianceLoss,
    SGMLLoss,
    attribute_loss,
    binomial_deviance,
    granularity_similarity,
    modulation,
    soft_binomial_deviance,
)

from benchmark.specs import Batch

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 2])


def embeddings(seed: int = 0, n: int = 7, dim: int = 5) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive_deviance(x, labels, alpha, beta, cost, factor=lambda i, j: 1.0, soften="weight"):
    """Textbook loop over ordered pairs i != j, in float64."""
    x = F.normalize(x.double(), dim=1)
    positives, negatives = [], []
    for i in range(len(x)):
        for j in range(len(x)):
            if i == j:
                continue
            same = bool(labels[i] == labels[j])
            s, m = float(x[i] @ x[j]), 1.0 if same else -cost
            g = factor(i, j)
            if soften == "label":
                m *= g
            term = math.log1p(math.exp(-alpha * (s - beta) * m))
            (positives if same else negatives).append(term * (g if soften == "weight" else 1.0))
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return mean(positives) + mean(negatives)


def naive_cosine(a, b, known_a, known_b):
    both = known_a & known_b
    u, v = a[both].double(), b[both].double()
    denominator = float(u.norm() * v.norm())
    return 0.0 if denominator == 0 else float(u @ v) / denominator


def naive_jaccard(a, b, known_a, known_b):
    both = known_a & known_b
    u, v = a[both] >= 0.5, b[both] >= 0.5
    union = int((u | v).sum())
    return 0.0 if union == 0 else int((u & v).sum()) / union


# --- binomial deviance ------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,beta,cost", [(2.0, 0.5, 25.0), (1.0, 0.0, 10.0), (4.0, 0.7, 1.0)])
def test_binomial_deviance_matches_a_loop_over_pairs(alpha, beta, cost):
    x = embeddings()
    loss = binomial_deviance(x, LABELS, alpha=alpha, beta=beta, cost=cost).double()
    assert loss.item() == pytest.approx(naive_deviance(x, LABELS, alpha, beta, cost), rel=1e-5)


def test_binomial_deviance_by_hand_on_two_pairs():
    # Two orthogonal unit vectors of different classes and a copy: S = 1 (positive), 0 (negative).
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    positive = math.log1p(math.exp(-2 * (1 - 0.5)))  # log(1 + e^-1)
    negative = math.log1p(math.exp(-2 * (0 - 0.5) * -25))  # log(1 + e^-25)
    assert binomial_deviance(x, labels).item() == pytest.approx(positive + negative, rel=1e-6)


def test_binomial_deviance_without_positives_is_the_negative_mean_only():
    x, labels = embeddings(n=3), torch.tensor([0, 1, 2])
    expected = naive_deviance(x, labels, 2.0, 0.5, 25.0)
    assert binomial_deviance(x, labels).item() == pytest.approx(expected, rel=1e-5)


def test_binomial_criterion_reads_the_embedding():
    x = embeddings().float()
    batch = Batch(torch.zeros(7, 3, 4, 4), LABELS, torch.arange(7))
    criterion = BinomialDevianceLoss(alpha=2.0, beta=0.5, cost=25.0)
    assert criterion({"embedding": x}, batch).item() == pytest.approx(
        naive_deviance(x, LABELS, 2.0, 0.5, 25.0), rel=1e-5
    )


# --- granularity similarity -----------------------------------------------------------------


def random_attributes(seed: int = 3, n: int = 7, a: int = 9):
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(n, a, generator=generator)
    known = torch.rand(n, a, generator=generator) > 0.25
    known[0] = False  # an image with nothing known
    return values, known


@pytest.mark.parametrize(
    "kind,naive", [("cosine", naive_cosine), ("jaccard", naive_jaccard)], ids=["cosine", "jaccard"]
)
def test_granularity_similarity_matches_a_loop(kind, naive):
    values, known = random_attributes()
    similarity = granularity_similarity(values, known, kind)
    for i in range(len(values)):
        for j in range(len(values)):
            expected = naive(values[i], values[j], known[i], known[j])
            assert similarity[i, j].item() == pytest.approx(expected, abs=1e-6), (i, j)
    assert (similarity[0] == 0).all()  # nothing to compare scores 0


def test_granularity_similarity_on_known_binary_vectors():
    a = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    cosine = granularity_similarity(a, None, "cosine")
    jaccard = granularity_similarity(a, None, "jaccard")
    assert cosine[0, 1].item() == pytest.approx(0.5) and cosine[0, 2].item() == 0.0
    assert jaccard[0, 1].item() == pytest.approx(1 / 3) and jaccard[1, 1].item() == 1.0


def test_granularity_similarity_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown granularity similarity 'dice'"):
        granularity_similarity(torch.ones(2, 3), None, "dice")


@pytest.mark.parametrize("form", ["exp", "linear"])
def test_modulation_is_one_at_gamma_zero_and_decreases_in_similarity(form):
    s = torch.linspace(0, 1, 11)
    assert torch.equal(modulation(s, 0.0, form), torch.ones(11))
    g = modulation(s, 2.0, form)
    assert g[0].item() == pytest.approx(1.0)
    assert (g[1:] < g[:-1]).all() and (g > 0).all()


def test_modulation_rejects_a_negative_gamma():
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        modulation(torch.zeros(1), -1.0)


# --- soft-binomial deviance -----------------------------------------------------------------


@pytest.mark.parametrize("soften", ["weight", "label"])
@pytest.mark.parametrize("pairs", ["negatives", "all"])
def test_gamma_zero_is_exactly_plain_binomial_deviance(soften, pairs):
    x, (values, known) = embeddings(), random_attributes()
    similarity = granularity_similarity(values, known)
    soft = soft_binomial_deviance(
        x, LABELS, similarity, alpha=2.0, beta=0.5, cost=25.0, gamma=0.0, soften=soften,
        pairs=pairs,
    )  # fmt: skip
    assert torch.equal(soft, binomial_deviance(x, LABELS, alpha=2.0, beta=0.5, cost=25.0))


@pytest.mark.parametrize("form", ["exp", "linear"])
@pytest.mark.parametrize("soften", ["weight", "label"])
@pytest.mark.parametrize("pairs", ["negatives", "all"])
def test_soft_binomial_deviance_matches_a_loop(form, soften, pairs):
    x, (values, known) = embeddings(1), random_attributes(4)
    similarity = granularity_similarity(values, known).double()

    def factor(i, j):
        s = float(similarity[i, j])
        if LABELS[i] != LABELS[j]:
            return float(modulation(torch.tensor(s), 1.5, form))
        return float(modulation(torch.tensor(1 - s), 1.5, form)) if pairs == "all" else 1.0

    loss = soft_binomial_deviance(
        x, LABELS, similarity, alpha=2.0, beta=0.5, cost=25.0, gamma=1.5, form=form,
        soften=soften, pairs=pairs,
    )  # fmt: skip
    expected = naive_deviance(x, LABELS, 2.0, 0.5, 25.0, factor, soften)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def pair_gradients(similarity_value: float) -> torch.Tensor:
    """The gradient on the similarity of one negative pair (0, 1) with a given granularity."""
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [1.0, 0.0], [0.8, 0.6]], requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1])
    similarity = torch.full((4, 4), similarity_value)
    loss = soft_binomial_deviance(x, labels, similarity, alpha=2.0, beta=0.5, cost=25.0, gamma=2.0)
    loss.backward()
    return x.grad


def test_a_negative_sharing_every_attribute_is_pushed_less_than_one_sharing_none():
    shared_all, shared_none = pair_gradients(1.0), pair_gradients(0.0)
    # Same direction (apart), smaller magnitude: exp(-2) times as hard.
    assert torch.allclose(shared_all, shared_none * math.exp(-2.0), atol=1e-7)
    assert shared_none.abs().sum() > 0


def test_the_granularity_similarity_gets_no_gradient():
    similarity = torch.rand(7, 7, requires_grad=True)
    soft_binomial_deviance(
        embeddings().float().requires_grad_(), LABELS, similarity, alpha=2.0, beta=0.5,
        cost=25.0, gamma=1.0,
    ).backward()  # fmt: skip
    assert similarity.grad is None


# --- attribute loss and the SGML criterion --------------------------------------------------


def test_attribute_loss_ignores_masked_values():
    logits = torch.tensor([[2.0, -1.0, 5.0], [0.5, 0.0, -3.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    known = torch.tensor([[True, True, False], [True, False, True]])
    expected = [
        -math.log(torch.sigmoid(torch.tensor(2.0)).item()),
        -math.log(1 - torch.sigmoid(torch.tensor(-1.0)).item()),
        -math.log(1 - torch.sigmoid(torch.tensor(0.5)).item()),
        -math.log(torch.sigmoid(torch.tensor(-3.0)).item()),
    ]
    assert attribute_loss(logits, targets, known).item() == pytest.approx(sum(expected) / 4)
    changed = targets.clone()
    changed[0, 2], changed[1, 1] = 1.0, 0.0  # only masked values change
    assert (
        attribute_loss(logits, changed, known).item()
        == attribute_loss(logits, targets, known).item()
    )


def sgml_criterion(**overrides) -> SGMLLoss:
    return SGMLLoss(**{**SGML_SPEC.defaults, **overrides})


def sgml_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    attributes = (torch.rand(7, 6, generator=generator) > 0.5).float()
    known = torch.rand(7, 6, generator=generator) > 0.2
    return Batch(torch.zeros(7, 3, 4, 4), LABELS, torch.arange(7), attributes, known)


def test_sgml_total_is_deviance_plus_weighted_attribute_loss():
    batch = sgml_batch()
    x, logits = embeddings().float(), torch.randn(7, 6, generator=torch.Generator().manual_seed(9))
    loss, logs = sgml_criterion(attribute_weight=0.3)({"embedding": x, "attributes": logits}, batch)
    similarity = granularity_similarity(torch.sigmoid(logits))
    deviance = soft_binomial_deviance(
        x, LABELS, similarity, alpha=2.0, beta=0.5, cost=25.0, gamma=1.0
    )
    attributes = attribute_loss(logits, batch.attributes, batch.attribute_mask)
    assert loss.item() == pytest.approx((deviance + 0.3 * attributes).item(), rel=1e-6)
    assert float(logs["deviance"]) == pytest.approx(deviance.item(), rel=1e-6)
    assert float(logs["attributes"]) == pytest.approx(attributes.item(), rel=1e-6)


def test_sgml_with_ground_truth_granularity_uses_the_dataset_attributes():
    batch = sgml_batch()
    x, logits = embeddings().float(), torch.zeros(7, 6)
    loss, _ = sgml_criterion(granularity="ground-truth", similarity="jaccard", attribute_weight=0)(
        {"embedding": x, "attributes": logits}, batch
    )
    similarity = granularity_similarity(batch.attributes, batch.attribute_mask, "jaccard")
    expected = soft_binomial_deviance(
        x, LABELS, similarity, alpha=2.0, beta=0.5, cost=25.0, gamma=1.0
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_sgml_gradients_reach_both_heads():
    embedding = torch.nn.Linear(4, 5)
    attribute_head = torch.nn.Linear(4, 6)
    features = torch.randn(7, 4, generator=torch.Generator().manual_seed(2))
    outputs = {
        "embedding": F.normalize(embedding(features), dim=1),
        "attributes": attribute_head(features),
    }
    loss, _ = sgml_criterion()(outputs, sgml_batch())
    loss.backward()
    for head in (embedding, attribute_head):
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_sgml_without_attributes_in_the_batch_says_so():
    batch = Batch(torch.zeros(7, 3, 4, 4), LABELS, torch.arange(7))
    with pytest.raises(ValueError, match="SGML needs attributes"):
        sgml_criterion()(
            {"embedding": embeddings().float(), "attributes": torch.zeros(7, 6)}, batch
        )


def test_specs_say_what_is_ours():
    assert SGML_SPEC.fidelity == "reconstructed" and SGML_SPEC.reported == ()
    assert SGML_SPEC.heads == ("embedding", "attributes")
    assert "not known" in SGML_SPEC.fidelity_notes
    assert dict(BINOMIAL_SPEC.defaults) == {"alpha": 2.0, "beta": 0.5, "cost": 25.0}
