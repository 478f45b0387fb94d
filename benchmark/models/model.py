"""The network a run trains: backbone, pooling, and the heads the method asks for."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchError
from benchmark.protocol import ModelSettings


class EmbeddingHead(nn.Module):
    """Linear projection to the embedding, optionally L2-normalised."""

    def __init__(self, in_features: int, dim: int, normalize: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, dim)
        nn.init.kaiming_normal_(self.linear.weight, mode="fan_out")
        nn.init.zeros_(self.linear.bias)
        self.normalize = normalize

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        embedding = self.linear(features)
        return F.normalize(embedding, dim=1) if self.normalize else embedding


class AttributeHead(nn.Module):
    """One logit per dataset attribute (multi-label; the method applies the sigmoid)."""

    def __init__(self, in_features: int, num_attributes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_attributes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


# The hash head's second output: z, of which its codes are tanh.
HASH_PRE_TANH = "hash_pre_tanh"


class HashHead(nn.Module):
    """Relaxed hash codes in (-1, 1)^bits: tanh of the last layer, whose output z is also given.

    hidden > 0 gives CSQ's official head, Linear(in, hidden) -> ReLU -> Dropout -> Linear(hidden,
    hidden) -> ReLU -> Linear(hidden, bits) -> tanh; hidden = 0 a single Linear(in, bits) -> tanh.
    forward returns {"hash": tanh z, "hash_pre_tanh": z}, both float32.
    """

    def __init__(self, in_features: int, bits: int, hidden: int, dropout: float) -> None:
        super().__init__()
        if hidden:
            self.layers = nn.Sequential(
                nn.Linear(in_features, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, bits),
            )
        else:
            self.layers = nn.Sequential(nn.Linear(in_features, bits))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        pre_tanh = self.layers(features).float()
        # Under autocast z is bf16 or fp16, whose tanh rounds to exactly +-1 from |z| = 3.47
        # (bf16) or 4.51 (fp16) on, with zero gradient: the tanh runs in float32.
        with torch.autocast(pre_tanh.device.type, enabled=False):
            codes = torch.tanh(pre_tanh)
        return {"hash": codes, HASH_PRE_TANH: pre_tanh}


# The heads a MethodSpec may ask for, by name.
HEADS = ("embedding", "attributes", "hash")


def build_head(
    name: str, in_features: int, model_cfg: ModelSettings, num_attributes: int = 0
) -> nn.Module:
    if name == "embedding":
        return EmbeddingHead(in_features, model_cfg.embedding_dim, model_cfg.normalize)
    if name == "attributes":
        if num_attributes < 1:
            raise BenchError(
                "The 'attributes' head needs a dataset with attributes; this has none."
            )
        return AttributeHead(in_features, num_attributes)
    if name == "hash":
        if model_cfg.hash is None:
            raise BenchError(
                "The 'hash' head needs the protocol's model.hash section ({bits, hidden, "
                "dropout}); this protocol has none. Use a protocol with one (cpu-smoke, or a "
                "hashing protocol) or add it."
            )
        cfg = model_cfg.hash
        return HashHead(in_features, cfg.bits, cfg.hidden, cfg.dropout)
    raise BenchError(f"Unknown model head '{name}'. Available: {', '.join(HEADS)}.")


class RetrievalModel(nn.Module):
    """forward(images) -> {"features": pooled backbone features, <head>: head output, ...}."""

    def __init__(
        self,
        backbone: nn.Module,
        heads: Mapping[str, nn.Module],
        pooling: str,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.pooling = pooling
        self.freeze_bn = freeze_bn

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = pool(self.backbone(images), self.pooling)
        outputs = {"features": features}
        for name, head in self.heads.items():
            value = head(features)  # a tensor, or named outputs (the hash head's)
            outputs |= value if isinstance(value, dict) else {name: value}
        return outputs

    def train(self, mode: bool = True) -> RetrievalModel:
        super().train(mode)
        if mode and self.freeze_bn:
            # Frozen running statistics (affine parameters still learn), as the official MS code.
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def pool(maps: torch.Tensor, how: str) -> torch.Tensor:
    if how == "avg":
        return maps.mean(dim=(2, 3))
    if how == "max":
        return maps.amax(dim=(2, 3))
    return maps.mean(dim=(2, 3)) + maps.amax(dim=(2, 3))


def build_model(
    backbone: nn.Module,
    head_names: tuple[str, ...],
    model_cfg: ModelSettings,
    num_attributes: int = 0,
) -> RetrievalModel:
    """The backbone with the named heads; `num_attributes` sizes an `attributes` head."""
    heads = {
        name: build_head(name, backbone.out_channels, model_cfg, num_attributes)
        for name in head_names
    }
    return RetrievalModel(backbone, heads, model_cfg.pooling, model_cfg.freeze_bn)
