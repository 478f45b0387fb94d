"""Single-GPU speed options of a protocol's train section: channels-last memory format and
torch.compile. Neither changes what is computed, only how (beyond float noise)."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.protocol import TrainSettings


def apply_speed_options(model: nn.Module, train_cfg: TrainSettings) -> nn.Module:
    """In place: train.channels_last puts the weights and every input in channels-last format;
    train.compile compiles the backbone (nn.Module.compile keeps the state-dict names)."""
    if train_cfg.channels_last:
        model.to(memory_format=torch.channels_last)
        model.register_forward_pre_hook(_channels_last_input)
    if train_cfg.compile:
        model.backbone.compile()
    return model


def _channels_last_input(module: nn.Module, args: tuple) -> tuple:
    images, *rest = args
    return (images.contiguous(memory_format=torch.channels_last), *rest)
