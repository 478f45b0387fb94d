from __future__ import annotations

import pytest
import torch

from benchmark import hookimpl
from benchmark.errors import BenchError
from benchmark.plugins import load_plugins
from benchmark.specs import DatasetSpec, MethodSpec, Paper


def _method(name: str, **changes) -> MethodSpec:
    fields = dict(
        name=name,
        summary="test method",
        paper=Paper("t", "a", "v", "u"),
        tasks=("retrieval",),
        build=lambda ctx: torch.nn.Identity(),
        defaults={"margin": 0.1},
        hparam_schema={
            "type": "object",
            "properties": {"margin": {"type": "number"}},
            "additionalProperties": False,
        },
    )
    return MethodSpec(**{**fields, **changes})


class GoodPlugin:
    @hookimpl
    def bench_methods(self):
        return [_method("good")]


class DuplicatePlugin:
    @hookimpl
    def bench_methods(self):
        return [_method("good"), _method("other")]


class RaisingPlugin:
    @hookimpl
    def bench_datasets(self):
        raise RuntimeError("boom")


class MalformedPlugin:
    @hookimpl
    def bench_methods(self):
        return [
            "not a spec",
            _method("Bad Name"),
            _method("bad-defaults", defaults={"margin": "x"}),
            _method("bad-head", heads=("embedding", "segmentation")),
            _method("bad-output", heads=("embedding",), eval_output="hash"),
        ]


def test_builtins_register_datasets_backbones_and_protocols():
    registry = load_plugins(entry_points=False)
    assert {"cub", "synth-cub"} <= set(registry.datasets)
    assert {"convnet-small", "resnet18", "resnet50"} <= set(registry.backbones)
    assert "cpu-smoke" in registry.protocols
    builtin = registry.plugins[0]
    assert (builtin.name, builtin.source, builtin.errors) == ("builtin", "built-in", [])


def test_bundled_ms_plugin_is_found_through_its_entry_point(registry):
    info = registry.owner("methods", "ms")
    assert info.name == "ms"
    assert info.source == "entry point bench_ms"
    assert info.version == "0.1.0"


def test_duplicate_name_is_reported_naming_both_plugins_and_the_rest_works():
    registry = load_plugins(
        [("first", GoodPlugin()), ("second", DuplicatePlugin())], entry_points=False
    )
    second = next(p for p in registry.plugins if p.name == "second")
    assert second.errors == [
        "method 'good' is already registered by plugin 'first' ?; this one was ignored"
    ]
    assert registry.owner("methods", "good").name == "first"
    assert registry.owner("methods", "other").name == "second"


def test_raising_hook_is_reported_and_does_not_stop_others():
    registry = load_plugins(
        [("raising", RaisingPlugin()), ("good", GoodPlugin())], entry_points=False
    )
    raising = next(p for p in registry.plugins if p.name == "raising")
    assert raising.errors == ["bench_datasets raised RuntimeError: boom"]
    assert "good" in registry.methods and "synth-cub" in registry.datasets


def test_malformed_specs_are_rejected_with_reasons():
    registry = load_plugins([("malformed", MalformedPlugin())], entry_points=False)
    errors = next(p for p in registry.plugins if p.name == "malformed").errors
    assert errors[0] == "malformed method: expected a MethodSpec, got str"
    assert errors[1].startswith("malformed method: name 'Bad Name' must match")
    assert errors[2] == (
        "malformed method: method 'bad-defaults': defaults do not match its "
        "hparam_schema: 'x' is not of type 'number'"
    )
    assert errors[3] == (
        "malformed method: method 'bad-head': heads ('embedding', 'segmentation') must be a "
        "non-empty subset of ('embedding', 'attributes', 'hash')"
    )
    assert errors[4] == (
        "malformed method: method 'bad-output': eval_output 'hash' is not one of its heads "
        "('embedding',)"
    )
    assert not {"Bad Name", "bad-defaults", "bad-head", "bad-output"} & set(registry.methods)


def test_plugin_that_fails_to_load_is_reported():
    def explode():
        raise ImportError("No module named 'missing_dependency'")

    from benchmark.plugins import Registry, _register

    registry = Registry(load_plugins(entry_points=False).manager)
    _register(registry, "broken", explode, "1.0", "entry point broken")
    assert registry.plugins[0].errors == [
        "failed to load: ImportError: No module named 'missing_dependency'"
    ]


def test_unknown_names_get_suggestions(registry):
    with pytest.raises(BenchError) as error:
        registry.dataset("synth_cub")
    assert str(error.value).startswith("Unknown dataset 'synth_cub'. Did you mean 'synth-cub',")
    assert str(error.value).endswith(
        "Available: cars196, coco, cub, inshop, synth-coco, synth-cub, synth-inshop."
    )
    with pytest.raises(BenchError, match=r"Unknown method plugin 'mss'\. Did you mean 'ms'\?"):
        registry.method("mss")


def test_bench_plugins_env_var_selects_entry_points(monkeypatch):
    monkeypatch.setenv("BENCH_PLUGINS", "")
    assert "ms" not in load_plugins().methods
    monkeypatch.setenv("BENCH_PLUGINS", "ms")
    assert "ms" in load_plugins().methods


def test_dataset_with_unknown_task_is_malformed():
    class Plugin:
        @hookimpl
        def bench_datasets(self):
            return [DatasetSpec("odd", "s", "classification", load=lambda root: None)]

    registry = load_plugins([("odd", Plugin())], entry_points=False)
    errors = next(p for p in registry.plugins if p.name == "odd").errors
    assert errors == [
        "malformed dataset: dataset 'odd': task 'classification' is not one of "
        "('retrieval', 'query-gallery', 'hashing')"
    ]


def test_an_invalid_hparam_schema_is_a_malformed_spec_not_a_crash():
    class InvalidSchema:
        @hookimpl
        def bench_methods(self):
            return [_method("bad-schema", hparam_schema={"type": "nonsense"}), _method("fine")]

    registry = load_plugins([("invalid", InvalidSchema())], entry_points=False)
    errors = next(p for p in registry.plugins if p.name == "invalid").errors
    assert len(errors) == 1 and errors[0].startswith(
        "malformed method: method 'bad-schema': its hparam_schema is not a valid JSON schema: "
    )
    assert "fine" in registry.methods


def test_a_backbone_family_needs_a_member_name(registry):
    with pytest.raises(BenchError, match=r"Backbone 'timm' is a family: name one of its models"):
        registry.backbone("timm")
