"""The core's own plugin: built-in datasets, backbones and protocols, registered through the same
hooks a third-party plugin uses."""

from __future__ import annotations

from pathlib import Path

from benchmark.hookspecs import hookimpl
from benchmark.specs import BackboneSpec, DatasetSpec

PROTOCOL_DIR = Path(__file__).parent / "protocols"


@hookimpl
def bench_datasets() -> list[DatasetSpec]:
    from benchmark.data.datasets.cars196 import CARS196_SPEC
    from benchmark.data.datasets.coco import COCO_SPEC
    from benchmark.data.datasets.cub import CUB_SPEC
    from benchmark.data.datasets.inshop import INSHOP_SPEC
    from benchmark.data.datasets.synth import SYNTH_CUB_SPEC
    from benchmark.data.datasets.synth_coco import SYNTH_COCO_SPEC
    from benchmark.data.datasets.synth_inshop import SYNTH_INSHOP_SPEC

    return [
        *(CUB_SPEC, CARS196_SPEC, INSHOP_SPEC, COCO_SPEC),
        *(SYNTH_CUB_SPEC, SYNTH_INSHOP_SPEC, SYNTH_COCO_SPEC),
    ]


@hookimpl
def bench_backbones() -> list[BackboneSpec]:
    from benchmark.models.backbones import BACKBONES

    return list(BACKBONES)


@hookimpl
def bench_protocols() -> list[Path]:
    return sorted(PROTOCOL_DIR.glob("*.json"))
