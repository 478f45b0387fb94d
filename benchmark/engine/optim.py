"""Optimizer and per-iteration learning-rate schedule from the protocol's `train` section."""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmark.protocol import ScheduleSettings, TrainSettings


def build_optimizer(
    model: nn.Module, criterion: nn.Module, train_cfg: TrainSettings
) -> torch.optim.Optimizer:
    """Backbone parameters get lr x backbone_lr_mult; heads and the criterion's own get lr."""
    cfg = train_cfg.optimizer
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    rest = [p for p in model.heads.parameters() if p.requires_grad]
    rest += [p for p in criterion.parameters() if p.requires_grad]
    groups = [
        {"params": backbone, "lr": cfg.lr * train_cfg.backbone_lr_mult},
        {"params": rest, "lr": cfg.lr},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    optimizer_class = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return optimizer_class(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(iteration: int, total: int, schedule: ScheduleSettings) -> float:
    """Multiplier of the base learning rate at `iteration` (0-based) of `total`."""
    warmup = schedule.warmup_iterations
    if iteration < warmup:
        return (iteration + 1) / warmup
    if schedule.name == "multistep":
        passed = sum(iteration >= m * total for m in schedule.milestones)
        return schedule.gamma**passed
    if schedule.name == "cosine":
        progress = (iteration - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, total: int, schedule: ScheduleSettings
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(i, total, schedule))
