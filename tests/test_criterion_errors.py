"""A method whose criterion misbehaves is named, with its plugin, instead of a traceback."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from benchmark import hookimpl
from benchmark.config import build_run_config
from benchmark.engine.run import RunOptions, execute
from benchmark.errors import BenchError
from benchmark.plugins import load_plugins

FAST = ("train.epochs=1", "train.iterations_per_epoch=2", "data.classes_per_batch=4")
OWNER = "method 'faulty' of plugin 'faulty-plugin'"


class Returns(nn.Module):
    """A criterion whose loss is `make(outputs)`."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def forward(self, outputs, batch):
        return self.make(outputs["embedding"])


def run_faulty(data_root, tmp_path, build):
    from bench_ms import MS_SPEC

    spec = dataclasses.replace(MS_SPEC, name="faulty", build=build, reported=())

    class Plugin:
        @hookimpl
        def bench_methods(self):
            return [spec]

    registry = load_plugins([("faulty-plugin", Plugin())])
    config = build_run_config(registry, method="faulty", dataset="synth-cub", overrides=FAST)
    with pytest.raises(BenchError) as error:
        execute(registry, config, RunOptions(data_root, tmp_path, "cpu", False))
    return str(error.value)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda e: e.pow(2).sum(1), "returned a torch.float32 tensor of shape (16,) as its loss"),
        (lambda e: 0.5, "returned a float (0.5) as its loss"),
        (lambda e: None, "returned None as its loss"),
        (lambda e: (e.sum(), [1.0]), "returned a list ([1.0]) as its logs"),
    ],
)
def test_a_loss_that_is_not_a_scalar_tensor_is_refused_naming_the_method(
    data_root, tmp_path, make, expected
):
    message = run_faulty(data_root, tmp_path, lambda context: Returns(make))
    assert message == (
        f"{OWNER} {expected}; a criterion returns a scalar (0-d) floating tensor, or "
        "(loss, {name: scalar})."
    )


def test_a_loss_without_gradient_is_refused(data_root, tmp_path):
    message = run_faulty(data_root, tmp_path, lambda context: Returns(lambda e: e.sum().detach()))
    assert message.startswith(f"{OWNER} returned a loss that does not depend on the model's")


def test_a_build_that_raises_is_named_with_its_plugin(data_root, tmp_path):
    def build(context):
        raise ValueError("margin must be below 1")

    message = run_faulty(data_root, tmp_path, build)
    assert message.startswith(
        f"{OWNER} failed to build its criterion: ValueError: margin must be below 1. "
    )


def test_nan_at_the_first_iteration_blames_the_criterion_not_the_learning_rate(data_root, tmp_path):
    message = run_faulty(
        data_root, tmp_path, lambda context: Returns(lambda e: e.sum() * torch.tensor(float("nan")))
    )
    assert message.startswith(f"{OWNER} returned a loss of nan at iteration 0, before any update")
