"""The core's own plugin: built-in datasets, backbones and protocols, registered through the same
hooks a third-party plugin uses."""

from __future__ import annotations

from pathlib import Path

from benchmark.hookspecs import hookimpl
from benchmark.specs import BackboneSpec, DatasetSpec

PROTOCOL_DIR = Path(__file__).parent / "protocols"


@hookimpl
def bench_datasets() -> list[DatasetSpec]:
    from benchmark.data.datasets.cub import CUB_SPEC
    from benchmark.data.datasets.synth import SYNTH_CUB_SPEC

    return [CUB_SPEC, SYNTH_CUB_SPEC]


@hookimpl
def bench_backbones() -> list[BackboneSpec]:
    from benchmark.models.backbones import BACKBONES

    return list(BACKBONES)


@hookimpl
def bench_protocols() -> list[Path]:
    return sorted(PROTOCOL_DIR.glob("*.json"))
