"""dmlbench plugin: the pytorch-metric-learning losses as baseline methods `pml-<name>`.

Each method is the library's own implementation, with the library's default hyper-parameters
(overridable with --set) and, where the Reality Check (Musgrave et al., ECCV 2020) tuned them,
presets `mlrc-cub` and `mlrc-cars`. No loss is written here by hand.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from bench_pml.catalogue import BASELINES, Baseline
from bench_pml.criterion import LibraryCriterion, build_loss, build_miner
from benchmark.hookspecs import hookimpl
from benchmark.specs import BuildContext, MethodSpec, closed_schema

__all__ = ["BASELINES", "LibraryCriterion", "bench_methods", "method_spec"]

LIBRARY = f"pytorch-metric-learning {version('pytorch-metric-learning')}"


def _property(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer", "minimum": 1}
    return {"type": "number", "description": f"{name} (library default {value})"}


def _schema(baseline: Baseline) -> dict[str, Any]:
    properties = {name: _property(name, value) for name, value in baseline.defaults.items()}
    if baseline.miners:
        properties["miner"] = {
            "enum": list(baseline.miners),
            "description": "which pairs or triplets the loss sees",
        }
    return closed_schema(properties)


def _defaults(baseline: Baseline) -> dict[str, Any]:
    miner = {"miner": baseline.miners[0]} if baseline.miners else {}
    return {**baseline.defaults, **miner}


def _builder(baseline: Baseline):
    def build(ctx: BuildContext) -> LibraryCriterion:
        hparams = dict(ctx.hparams)
        loss = build_loss(
            baseline.loss, hparams, ctx.num_classes, ctx.embedding_dim, baseline.parametric
        )
        return LibraryCriterion(loss, build_miner(hparams), ctx.class_ids)

    return build


def method_spec(baseline: Baseline) -> MethodSpec:
    defaults = _defaults(baseline)
    miner = f" Miner: {baseline.miners[0]} by default." if baseline.miners else ""
    return MethodSpec(
        name=f"pml-{baseline.name}",
        summary=f"{baseline.summary} ({LIBRARY})",
        paper=baseline.paper,
        tasks=("retrieval", "query-gallery"),
        build=_builder(baseline),
        defaults=defaults,
        hparam_schema=_schema(baseline),
        presets={name: {**defaults, **values} for name, values in baseline.presets.items()},
        heads=("embedding",),
        eval_output="embedding",
        distance="cosine",
        fidelity="faithful",
        order_invariant=baseline.order_invariant,
        fidelity_notes=(
            f"The {baseline.loss} of {LIBRARY}, with the library's defaults; faithful to the "
            f"library, whose fidelity to the paper is the library's.{miner} Presets mlrc-* "
            f"hold the Reality Check's tuned loss values (their separate learning rates for "
            f"proxies or class weights are not applied: those parameters use the protocol's)."
        ),
    )


@hookimpl
def bench_methods() -> list[MethodSpec]:
    return [method_spec(baseline) for baseline in BASELINES]
