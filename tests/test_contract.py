"""One contract over every registered method and dataset (as timm tests every model)."""

from __future__ import annotations

import jsonschema
import pytest
import torch
import torch.nn.functional as F

from benchmark.plugins import load_plugins
from benchmark.specs import TASKS, Batch, BuildContext

REGISTRY = load_plugins()
METHODS = sorted(REGISTRY.methods)
NUM_ATTRIBUTES = 6
HASH_BITS = 16


def criterion_for(name: str, dim: int = 16):
    spec = REGISTRY.method(name)
    torch.manual_seed(0)  # criteria may own parameters: make their initialisation fixed
    context = BuildContext(
        hparams=dict(spec.defaults),
        embedding_dim=dim,
        num_classes=4,
        num_train_images=16,
        num_attributes=NUM_ATTRIBUTES if "attributes" in spec.heads else 0,
        device=torch.device("cpu"),
        hash_bits=HASH_BITS if "hash" in spec.heads else 0,
    )
    return spec, spec.build(context)


def batch_of(embeddings: torch.Tensor, heads: tuple[str, ...]) -> tuple[dict, Batch]:
    """The outputs of every head a method asks for, all functions of `embeddings`, and a
    4 x 4 batch (with attributes, some unknown, when the method has an attribute head; with
    multi-hot labels, some images holding a second class, for hashing methods)."""
    labels = torch.arange(4).repeat_interleave(4)
    generator = torch.Generator().manual_seed(5)
    outputs = {"embedding": F.normalize(embeddings, dim=1)}
    if "hash" in heads:
        projection = torch.randn(embeddings.shape[1], HASH_BITS, generator=generator)
        outputs["hash"] = torch.tanh(embeddings @ projection / 4)
        multi_hot = F.one_hot(labels, 4).float()
        multi_hot[::3, 0] = 1.0
        labels = multi_hot
    attributes = mask = None
    if "attributes" in heads:
        projection = torch.randn(embeddings.shape[1], NUM_ATTRIBUTES, generator=generator)
        outputs["attributes"] = embeddings @ projection
        attributes = (torch.rand(16, NUM_ATTRIBUTES, generator=generator) > 0.5).float()
        mask = torch.rand(16, NUM_ATTRIBUTES, generator=generator) > 0.2
    batch = Batch(torch.zeros(16, 3, 8, 8), labels, torch.arange(16), attributes, mask)
    return outputs, batch


def loss_of(criterion, embeddings: torch.Tensor, heads: tuple[str, ...]) -> torch.Tensor:
    value = criterion(*batch_of(embeddings, heads))
    return value[0] if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", METHODS)
def test_spec_is_complete(name):
    spec = REGISTRY.method(name)
    assert spec.summary and spec.paper.title and spec.paper.url.startswith("http")
    assert set(spec.tasks) <= set(TASKS) and spec.fidelity in ("faithful", "reconstructed")
    jsonschema.validate(dict(spec.defaults), dict(spec.hparam_schema))
    for reported in spec.reported:
        assert reported.dataset in REGISTRY.datasets and reported.source
        assert all(0.0 <= value <= 1.0 for value in reported.metrics.values())


@pytest.mark.parametrize("name", METHODS)
def test_loss_is_finite_and_gradients_flow(name):
    spec, criterion = criterion_for(name)
    embeddings = torch.randn(16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = loss_of(criterion, embeddings, spec.heads)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0


@pytest.mark.parametrize("name", METHODS)
def test_a_few_steps_lower_the_loss(name):
    spec, criterion = criterion_for(name)
    embeddings = torch.nn.Parameter(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    optimizer = torch.optim.Adam([embeddings, *criterion.parameters()], lr=0.05)
    first = loss_of(criterion, embeddings, spec.heads).item()
    for _ in range(30):
        optimizer.zero_grad()
        loss_of(criterion, embeddings, spec.heads).backward()
        optimizer.step()
    assert loss_of(criterion, embeddings, spec.heads).item() < first


@pytest.mark.parametrize("name", sorted(REGISTRY.datasets))
def test_every_dataset_declares_what_info_and_eval_need(name):
    spec = REGISTRY.dataset(name)
    assert spec.summary and spec.layout
    if spec.task == "hashing":
        assert spec.recall_at == () and (spec.top_k is None or spec.top_k > 0)
    else:
        assert spec.recall_at and list(spec.recall_at) == sorted(spec.recall_at)
