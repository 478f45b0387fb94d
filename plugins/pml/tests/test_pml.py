"""The pytorch-metric-learning adapter: library defaults, library values, label mapping,
learned parameters, and a few training steps on synth-cub for every method."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
import torch.nn.functional as F
from bench_pml import BASELINES, method_spec
from pytorch_metric_learning import losses, miners

from benchmark.specs import Batch, BuildContext

SPECS = {b.name: method_spec(b) for b in BASELINES}
REQUIRED = {
    "contrastive", "triplet", "margin", "npairs", "lifted", "ntxent", "proxynca", "proxyanchor",
    "normsoftmax", "cosface", "arcface", "softtriple", "fastap", "circle", "supcon", "ms",
}  # fmt: skip


def library_defaults(class_name: str) -> dict:
    """Keyword defaults of the loss class and of the classes it builds on."""
    found = {}
    for cls in reversed(getattr(losses, class_name).__mro__):
        if "__init__" in cls.__dict__:
            for parameter in inspect.signature(cls.__init__).parameters.values():
                if parameter.default is not inspect.Parameter.empty:
                    found[parameter.name] = parameter.default
    return found


def context(spec, **overrides) -> BuildContext:
    return BuildContext(
        hparams={**spec.defaults, **overrides}, embedding_dim=8, num_classes=3,
        num_train_images=12, num_attributes=0, device=torch.device("cpu"),
        class_ids=(10, 20, 30),
    )  # fmt: skip


def batch_and_embeddings(seed: int = 0):
    labels = torch.tensor([10, 10, 10, 10, 20, 20, 20, 20, 30, 30, 30, 30])
    embeddings = F.normalize(torch.randn(12, 8, generator=torch.Generator().manual_seed(seed)))
    return Batch(torch.zeros(12, 3, 4, 4), labels, torch.arange(12)), embeddings


def test_every_required_loss_is_registered():
    assert {b.name for b in BASELINES} == REQUIRED
    assert all(spec.name == f"pml-{name}" for name, spec in SPECS.items())


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_defaults_are_the_librarys(baseline):
    defaults = library_defaults(baseline.loss)
    for name, value in baseline.defaults.items():
        if name == "epsilon":  # the miner's
            assert inspect.signature(miners.MultiSimilarityMiner).parameters[name].default == value
        else:
            assert defaults[name] == value, name


@pytest.mark.parametrize("name", ["triplet", "ms", "contrastive", "ntxent", "circle"])
def test_a_criterion_gives_the_librarys_value(name):
    spec = SPECS[name]
    batch, embeddings = batch_and_embeddings()
    hparams = dict(spec.defaults)
    if name == "ms":
        hparams["miner"] = "ms"
    torch.manual_seed(0)
    criterion = spec.build(context(spec, **hparams))
    loss, _ = criterion({"embedding": embeddings}, batch)
    labels = torch.searchsorted(torch.tensor([10, 20, 30]), batch.labels)
    kwargs = {k: v for k, v in hparams.items() if k not in ("miner", "epsilon")}
    library = getattr(losses, next(b.loss for b in BASELINES if b.name == name))(**kwargs)
    mined = None
    if name == "triplet":
        mined = miners.TripletMarginMiner(margin=hparams["margin"], type_of_triplets="semihard")(
            embeddings, labels
        )
    elif name == "ms":
        mined = miners.MultiSimilarityMiner(epsilon=hparams["epsilon"])(embeddings, labels)
    assert loss.item() == pytest.approx(library(embeddings, labels, mined).item(), rel=1e-6)


@pytest.mark.parametrize("name", ["proxynca", "proxyanchor", "normsoftmax", "cosface", "arcface",
                                  "softtriple"])  # fmt: skip
def test_learned_parameters_are_sized_by_the_training_classes_and_saved(name):
    spec = SPECS[name]
    criterion = spec.build(context(spec))
    parameters = list(criterion.parameters())
    assert parameters and any(3 in p.shape or 30 in p.shape for p in parameters)
    assert set(criterion.state_dict()) >= {"class_ids"} | {
        f"loss.{k}" for k, _ in criterion.loss.named_parameters()
    }
    batch, embeddings = batch_and_embeddings(1)
    loss, _ = criterion({"embedding": embeddings.requires_grad_()}, batch)  # labels 10..30 map
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)


def test_labels_map_to_class_indices():
    criterion = SPECS["proxynca"].build(context(SPECS["proxynca"]))
    mapped = criterion.class_index(torch.tensor([30, 10, 20]))
    assert mapped.tolist() == [2, 0, 1]


def test_reality_check_presets_are_complete_and_named():
    presets = SPECS["triplet"].presets
    assert presets["mlrc-cub"] == {"margin": 0.0961, "swap": False, "smooth_loss": False,
                                   "miner": "semihard"}  # fmt: skip
    assert SPECS["ms"].presets["mlrc-cub-miner"]["miner"] == "ms"
    assert set(SPECS["cosface"].presets) == {"mlrc-cub", "mlrc-cars"}


# --- a few training steps on synth-cub, every method ---------------------------------------


@pytest.fixture(scope="module")
def synth_batches(registry, data_root):
    from benchmark.data.loading import train_loader
    from benchmark.data.pipeline import build_pipeline
    from benchmark.data.samplers import training_sampler
    from benchmark.protocol import Protocol

    protocol = Protocol.from_json(registry.protocols["cpu-smoke"])
    data_cfg = dataclasses.replace(protocol.data, classes_per_batch=4)
    splits = registry.dataset("synth-cub").load(data_root)
    pipeline = build_pipeline(splits, data_cfg, data_root, "synth-cub")
    sampler = training_sampler(splits.train.labels, data_cfg, iterations=3, seed=0)
    loader = train_loader(pipeline.train, sampler, 0, False)
    class_ids = tuple(int(c) for c in sorted(set(splits.train.labels.tolist())))
    return list(loader), class_ids, protocol.model


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_few_steps_on_synth_cub(name, synth_batches):
    from benchmark.models.backbones import build_convnet_small
    from benchmark.models.model import build_model

    batches, class_ids, model_cfg = synth_batches
    spec = SPECS[name]
    torch.manual_seed(0)
    model = build_model(build_convnet_small(None), spec.heads, model_cfg)
    context = BuildContext(
        hparams=dict(spec.defaults), embedding_dim=model_cfg.embedding_dim,
        num_classes=len(class_ids), num_train_images=0, num_attributes=0,
        device=torch.device("cpu"), class_ids=class_ids,
    )  # fmt: skip
    criterion = spec.build(context)
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=1e-3)
    before = model.heads["embedding"].linear.weight.detach().clone()
    for batch in batches:
        loss, _ = criterion(model(batch.images), batch)
        assert torch.isfinite(loss), name
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(model.heads["embedding"].linear.weight, before)


def test_a_label_outside_the_training_classes_is_named():
    criterion = SPECS["proxynca"].build(context(SPECS["proxynca"]))
    with pytest.raises(ValueError, match=r"labels \[25\] are not among the run's training"):
        criterion.class_index(torch.tensor([10, 25, 30]))
