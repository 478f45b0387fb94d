"""The conformance kit (benchmark.testing, `bench check`): its quick checks over every bundled
method, and broken methods failing with the reasons. The checks that train run in
tests/test_scaffold.py's round trip (`bench check` on a freshly installed plugin)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from benchmark import cli, hookimpl
from benchmark.plugins import load_plugins
from benchmark.specs import MethodSpec, Paper
from benchmark.testing import format_results, run_checks
from benchmark.testing.result import CheckResult

REGISTRY = load_plugins()
METHODS = sorted(REGISTRY.methods)
LOSS_CHECKS = [
    "spec is valid",
    "hyper-parameters agree",
    "loss: random batch",
    "loss: single class",
    "loss: repeated embeddings",
    "invariant to batch order",
]


def root_for(name: str, request) -> object:
    hashing = REGISTRY.method(name).tasks == ("hashing",)
    return request.getfixturevalue("coco_root" if hashing else "data_root")


@pytest.mark.parametrize("name", METHODS)
def test_every_bundled_method_passes_the_quick_checks(name, registry, request):
    results = run_checks(name, root_for(name, request), registry=registry, quick=True)
    assert [result.name for result in results] == LOSS_CHECKS
    assert all(result.passed for result in results), format_results(name, results)


class NanCriterion(torch.nn.Module):
    def forward(self, outputs, batch):
        return outputs["embedding"].sum() * float("nan")


class FirstRowCriterion(torch.nn.Module):
    """A loss that reads the batch's first image only: it changes when the batch is reordered."""

    def forward(self, outputs, batch):
        return outputs["embedding"][0].sum()


def spec(name: str, criterion: type, schema: dict) -> MethodSpec:
    return MethodSpec(
        name=name,
        summary="a broken loss",
        paper=Paper("A paper", "Someone", "Nowhere 2026", "https://example.org/paper"),
        tasks=("retrieval",),
        build=lambda ctx: criterion(),
        defaults={},
        hparam_schema=schema,
    )


class BrokenPlugin:
    @hookimpl
    def bench_methods(self):
        closed = {"type": "object", "additionalProperties": False}
        return [
            spec("nan-loss", NanCriterion, closed),
            spec("first-row-loss", FirstRowCriterion, {"type": "object"}),
        ]


def test_bench_check_fails_a_nan_loss_with_the_reason(monkeypatch, data_root):
    monkeypatch.setattr(
        cli, "load_plugins", lambda extra=(): load_plugins([*extra, ("broken", BrokenPlugin())])
    )
    outcome = CliRunner().invoke(
        cli.cli, ["check", "nan-loss", "--quick", "--data-root", str(data_root)]
    )
    assert outcome.exit_code == 1, outcome.output
    lines = outcome.output.splitlines()
    assert lines[0] == "bench check nan-loss"
    assert "✓   spec is valid" in outcome.output
    for check in ("loss: random batch", "loss: single class", "loss: repeated embeddings"):
        assert any(line.startswith(f"✗   {check}") and "the loss is nan" in line for line in lines)
    assert lines[-1] == "2 of 6 checks passed."


def test_an_open_schema_and_an_order_dependent_loss_fail_with_the_reasons(data_root):
    registry = load_plugins([("broken", BrokenPlugin())])
    results = run_checks("first-row-loss", data_root, registry=registry, quick=True)
    failed = {result.name: result.reason for result in results if not result.passed}
    assert sorted(failed) == ["hyper-parameters agree", "invariant to batch order"]
    assert failed["hyper-parameters agree"].startswith("hparam_schema allows unknown names")
    assert "declares MethodSpec(order_invariant=False)" in failed["invariant to batch order"]


def test_bench_check_refuses_an_unknown_method_with_exit_status_2(data_root):
    outcome = CliRunner().invoke(cli.cli, ["check", "mss", "--data-root", str(data_root)])
    assert outcome.exit_code == 2
    assert "Unknown method plugin 'mss'. Did you mean 'ms'" in outcome.output


def test_the_table_marks_each_check():
    table = format_results(
        "x", [CheckResult("a", True, "fine"), CheckResult("b", False, "the loss is nan")]
    )
    assert table.splitlines() == [
        "bench check x",
        "    check    detail",
        "--  -------  ---------------",
        "✓   a        fine",
        "✗   b        the loss is nan",
    ]
