"""The built-in backbones: a small CNN for CPU smoke runs and torchvision ResNets.

Each returns feature maps; pooling and heads are added by `benchmark.models.model`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from benchmark.errors import BenchError
from benchmark.specs import BackboneSpec


class ConvNetSmall(nn.Module):
    """Four conv-BN-ReLU-pool stages (32-64-128-256 channels): fast on a CPU at 64x64."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers, channels = [], 3
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers[:-1])  # keep the last feature map's resolution
        self.out_channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and classifier."""

    def __init__(self, resnet: torchvision.models.ResNet) -> None:
        super().__init__()
        self.body = nn.Sequential(*list(resnet.children())[:-2])
        self.out_channels = resnet.fc.in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def build_convnet_small(pretrained: str | None) -> nn.Module:
    if pretrained is not None:
        raise BenchError(
            "Backbone 'convnet-small' has no pretrained weights; set model.pretrained to null."
        )
    return ConvNetSmall()


def resnet_builder(arch: str):
    def build(pretrained: str | None) -> nn.Module:
        model = getattr(torchvision.models, arch)(weights=None)
        if pretrained is not None:
            model.load_state_dict(imagenet_state_dict(arch))
        return ResNetTrunk(model)

    return build


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights from the torch hub cache; fetched unless BENCH_OFFLINE=1."""
    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.exists():
        if os.environ.get("BENCH_OFFLINE") == "1":
            raise BenchError(_missing_weights(arch, path, weights.url, "BENCH_OFFLINE=1 is set"))
        try:
            torch.hub.load_state_dict_from_url(weights.url, progress=True)
        except Exception as error:
            raise BenchError(_missing_weights(arch, path, weights.url, str(error))) from None
    return torch.load(path, map_location="cpu", weights_only=True)


def _missing_weights(arch: str, path: Path, url: str, why: str) -> str:
    return (
        f"ImageNet weights for {arch} are not available ({why}). Download {url} on a "
        f"machine with internet access and put it at {path} (the torch hub cache; set "
        f"TORCH_HOME to move it)."
    )


BACKBONES = [
    BackboneSpec(
        "convnet-small", "4-stage CNN, 256-d features; for CPU smoke runs", build_convnet_small
    ),
    BackboneSpec(
        "resnet18",
        "torchvision ResNet-18, 512-d features",
        resnet_builder("resnet18"),
        weights=("imagenet",),
    ),
    BackboneSpec(
        "resnet50",
        "torchvision ResNet-50, 2048-d features",
        resnet_builder("resnet50"),
        weights=("imagenet",),
    ),
]
