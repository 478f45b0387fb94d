"""The built-in backbones: a small CNN for CPU smoke runs, torchvision ResNets and GoogLeNet,
BN-Inception (the Caffe port's layout) and, with timm installed, timm:<model name>.

Each returns feature maps; pooling and heads are added by `benchmark.models.model`.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from benchmark.errors import BenchError
from benchmark.files import read_tensors
from benchmark.models.bninception import BNInception
from benchmark.models.timm_backbones import TIMM_FAMILY
from benchmark.models.weights import hub_file
from benchmark.specs import BackboneSpec, InputConvention

# The Caffe port's convention (pretrainedmodels' settings for bninception).
CAFFE_BGR = InputConvention("bgr", 255.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0))


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

    def __init__(self, resnet: torchvision.models.ResNet, arch: str) -> None:
        super().__init__()
        self.body = nn.Sequential(*list(resnet.children())[:-2])
        self.out_channels = resnet.fc.in_features
        self.arch = arch  # torchvision's name, for load_published_weights

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def load_published_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """A torchvision ResNet state dict (classifier included), strictly."""
        resnet = getattr(torchvision.models, self.arch)(weights=None)
        resnet.load_state_dict(state_dict, strict=True)
        self.body.load_state_dict(ResNetTrunk(resnet, self.arch).body.state_dict(), strict=True)


class GoogLeNetTrunk(nn.Module):
    """torchvision's GoogLeNet (Inception v1) up to inception5b: 1024-d feature maps.

    transform_input: torchvision's ImageNet weights were trained on (x - 0.5) / 0.5 inputs and
    re-normalise ImageNet-normalised ones; on with those weights, as torchvision does."""

    STAGES = (
        "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
        "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
        "maxpool4", "inception5a", "inception5b",
    )  # fmt: skip

    def __init__(self, googlenet: torchvision.models.GoogLeNet) -> None:
        super().__init__()
        self.body = nn.Sequential(*(getattr(googlenet, name) for name in self.STAGES))
        self.transform_input = googlenet.transform_input
        self.out_channels = googlenet.fc.in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            images = _googlenet_input(images)
        return self.body(images)

    def load_published_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """torchvision's GoogLeNet state dict (auxiliary heads and classifier included)."""
        trunk = GoogLeNetTrunk(_loaded_googlenet(state_dict))
        self.body.load_state_dict(trunk.body.state_dict(), strict=True)
        self.transform_input = True

    # The flag travels with the weights, so that a re-scored or resumed run (rebuilt without
    # pretrained weights, then loaded) transforms its input as the run that saved it did.
    def get_extra_state(self) -> dict[str, bool]:
        return {"transform_input": self.transform_input}

    def set_extra_state(self, state: dict[str, bool]) -> None:
        self.transform_input = bool(state["transform_input"])


def _googlenet_input(images: torch.Tensor) -> torch.Tensor:
    """torchvision GoogLeNet._transform_input: ImageNet-normalised to (x - 0.5) / 0.5."""
    mean = torch.tensor([0.485, 0.456, 0.406], device=images.device, dtype=images.dtype)
    std = torch.tensor([0.229, 0.224, 0.225], device=images.device, dtype=images.dtype)
    return (images * (std / 0.5).view(1, 3, 1, 1)) + ((mean - 0.5) / 0.5).view(1, 3, 1, 1)


def _loaded_googlenet(state_dict: dict[str, torch.Tensor]) -> torchvision.models.GoogLeNet:
    model = torchvision.models.GoogLeNet(aux_logits=True, transform_input=True, init_weights=False)
    model.load_state_dict(state_dict, strict=True)
    return model


def build_googlenet(pretrained: str | None) -> nn.Module:
    if pretrained is None:
        # PyTorch's default initialisation: torchvision's truncated normal takes seconds
        return GoogLeNetTrunk(torchvision.models.GoogLeNet(aux_logits=False, init_weights=False))
    return GoogLeNetTrunk(_loaded_googlenet(imagenet_state_dict("googlenet")))


def build_bninception(pretrained: str | None) -> nn.Module:
    # It offers no weights by name (config refuses one): the Caffe port's file
    # (bn_inception-239d2248.pth) comes through model.pretrained with model.pretrained_sha256.
    return BNInception()


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
        return ResNetTrunk(model, arch)

    return build


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights from the torch hub cache; fetched unless BENCH_OFFLINE=1."""
    url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
    return read_tensors(hub_file(url, f"ImageNet weights for {arch}"), "ImageNet weights")


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
    BackboneSpec(
        "googlenet",
        "torchvision GoogLeNet (Inception v1) trunk, 1024-d features",
        build_googlenet,
        weights=("imagenet",),
    ),
    BackboneSpec(
        "bninception",
        "BN-Inception (Caffe port layout), 1024-d features; BGR 0-255 input, weights from a file",
        build_bninception,
        input_convention=CAFFE_BGR,
    ),
    TIMM_FAMILY,
]
