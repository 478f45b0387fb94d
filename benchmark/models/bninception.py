"""BN-Inception (Ioffe & Szegedy 2015, "Batch Normalization", Inception with batch norm), the
backbone of the Multi-Similarity, PDDM and Reality Check papers.

Layer names and shapes follow the widely used Caffe port (Cadene's pretrainedmodels
`bninception`), so that its published state dict loads with strict=True: flat attributes such as
`inception_3a_double_3x3_1` and `inception_3a_double_3x3_1_bn`, 1024-d features of 7x7 maps at
224x224 input. Its weights expect BGR pixels in [0, 255] minus the mean [104, 117, 128] (std 1).
In the port every ReLU runs in place on its batch norm's output, so each unit is conv -> BN ->
ReLU. One difference: the port sets BatchNorm2d(momentum=0.9), a misreading of Caffe's moving
average fraction; here PyTorch's default 0.1 (it matters only when the statistics are trained).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from benchmark.errors import BenchError

# (name, input channels, 1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool kind, pool
# projection); a 1x1 of 0 marks the stride-2 modules (3c, 4e): no 1x1 branch, the 3x3 branches
# stride 2 and the max-pool branch is concatenated unprojected.
MODULES = (
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    ("3c", 320, 0, 128, 160, 64, 96, "max", 0),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    ("4e", 608, 0, 128, 192, 192, 256, "max", 0),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)
CLASSIFIER_KEYS = ("last_linear.weight", "last_linear.bias")


class BNInception(nn.Module):
    """forward(images (B, 3, H, W)) -> feature maps (B, 1024, H/32, W/32)."""

    def __init__(self) -> None:
        super().__init__()
        # The inception modules in order: (module name, its branches, each a sequence of layers)
        self.units: list[tuple[str, list[tuple[str, ...]]]] = []
        self._stem()
        for name, channels, *widths in MODULES:
            self._inception(f"inception_{name}", channels, *widths)
        self.out_channels = 1024

    def _conv(self, name: str, in_channels: int, out_channels: int, kernel: int, stride=1) -> str:
        setattr(self, name, nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(out_channels))
        return name

    def _stem(self) -> None:
        self._conv("conv1_7x7_s2", 3, 64, 7, 2)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3)

    def _inception(self, prefix, channels, c1, r3, c3, rd, cd, pool, proj) -> None:
        stride = 1 if c1 else 2
        branches = [] if not c1 else [(self._conv(f"{prefix}_1x1", channels, c1, 1),)]
        branches.append(
            (
                self._conv(f"{prefix}_3x3_reduce", channels, r3, 1),
                self._conv(f"{prefix}_3x3", r3, c3, 3, stride),
            )
        )
        branches.append(
            (
                self._conv(f"{prefix}_double_3x3_reduce", channels, rd, 1),
                self._conv(f"{prefix}_double_3x3_1", rd, cd, 3),
                self._conv(f"{prefix}_double_3x3_2", cd, cd, 3, stride),
            )
        )
        setattr(self, f"{prefix}_pool", _pool(pool, stride))
        pool_branch = [f"{prefix}_pool"]
        if proj:
            pool_branch.append(self._conv(f"{prefix}_pool_proj", channels, proj, 1))
        branches.append(tuple(pool_branch))
        self.units.append((prefix, branches))

    def _unit(self, name: str, x: torch.Tensor) -> torch.Tensor:
        layer = getattr(self, name)
        if isinstance(layer, nn.Conv2d):
            return torch.relu_(getattr(self, f"{name}_bn")(layer(x)))
        return layer(x)

    def _branch(self, names: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = self._unit(name, x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_input_size(*images.shape[-2:])
        x = self._stem_forward(images)
        for _, branches in self.units:
            x = torch.cat([self._branch(branch, x) for branch in branches], dim=1)
        return x

    def _stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _max_pool(self._unit("conv1_7x7_s2", x))
        x = self._unit("conv2_3x3", self._unit("conv2_3x3_reduce", x))
        return _max_pool(x)

    def load_published_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """The port's state dict, its ImageNet classifier dropped; every other name and shape
        must match (strict)."""
        state = {k: v for k, v in state_dict.items() if k not in CLASSIFIER_KEYS}
        self.load_state_dict(state, strict=True)


def check_input_size(height: int, width: int) -> None:
    """The port's stride-2 modules (3c, 4e) concatenate a padded stride-2 convolution with a
    ceil-mode max pool; their maps agree only when both modules get even sides."""
    if not all(_fits(side) for side in (height, width)):
        raise BenchError(
            f"BN-Inception cannot take {height}x{width} images: in the Caffe port's layout the "
            f"input sides must reach its modules 3c and 4e even. Set data.crop to a multiple "
            f"of 32 (224 as the papers; 64 or 96 for a CPU test)."
        )


def _fits(side: int) -> bool:
    conv1 = -(-side // 2)
    pool1 = -(-(conv1 - 1) // 2)
    into_3c = -(-(pool1 - 1) // 2)  # after pool2
    return into_3c % 4 == 0  # even into 3c, and its half even into 4e


def _pool(kind: str, stride: int) -> nn.Module:
    if kind == "avg":
        return nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
    if stride == 2:
        return nn.MaxPool2d(3, stride=2, ceil_mode=True)
    return nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.max_pool2d(x, 3, stride=2, ceil_mode=True)
