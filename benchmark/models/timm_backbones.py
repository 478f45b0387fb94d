"""timm models as backbones, named `timm:<model name>` (e.g. timm:vit_small_patch16_224.dino), with
the optional extra `pip install dmlbench[timm]`. timm is imported only when such a name is used.

A timm backbone pools as its model does (the class token of a ViT, the average of a CNN's maps)
and hands the pooled vector on as a 1x1 map, so the protocol's model.pooling does not change it.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from benchmark.errors import BenchError
from benchmark.specs import BackboneSpec, InputConvention


def _timm():
    try:
        import timm
    except ImportError:
        raise BenchError(
            "timm backbones need the timm package, which is not installed: "
            "pip install 'dmlbench[timm]' (or pip install timm)."
        ) from None
    return timm


class TimmTrunk(nn.Module):
    """A timm model without its classifier: (B, 3, H, W) -> (B, num_features, 1, 1)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.out_channels = model.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        return pooled[:, :, None, None]

    def load_published_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """A timm state dict of this model, its classifier dropped; the rest strictly."""
        classifier = self.model.pretrained_cfg.get("classifier") or "head"
        kept = {k: v for k, v in state_dict.items() if not k.startswith(f"{classifier}.")}
        self.model.load_state_dict(kept, strict=True)


def timm_backbone(model_name: str) -> BackboneSpec:
    """The spec of `timm:<model_name>`; `pretrained="timm"` takes the weights timm publishes
    for that name (its tag after the dot picks them)."""
    timm = _timm()
    if not model_name or not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(f'timm:{c}' for c in close)}?" if close else ""
        raise BenchError(
            f"Unknown timm model '{model_name}' (backbone 'timm:{model_name}').{hint} "
            f'`python -c "import timm; print(timm.list_models())"` lists them.'
        )

    def build(pretrained: str | None) -> nn.Module:
        try:
            model = timm.create_model(model_name, pretrained=pretrained == "timm", num_classes=0)
        except Exception as error:  # downloads from the Hugging Face hub may fail offline
            raise BenchError(
                f"Cannot build timm model '{model_name}' with pretrained={pretrained!r}: "
                f"{error}. Offline, put the weights file somewhere and set model.pretrained to "
                f"its path and model.pretrained_sha256 to its sha256."
            ) from None
        return TimmTrunk(model)

    return BackboneSpec(
        f"timm:{model_name}",
        f"timm model {model_name}",
        build,
        weights=("timm",),
        input_convention=_convention(timm, model_name),
    )


def _convention(timm, model_name: str) -> InputConvention | None:
    """timm's mean and std for the model's published weights (RGB in [0, 1])."""
    config = timm.models.get_pretrained_cfg(model_name, allow_unregistered=False)
    if config is None or config.mean is None or config.std is None:
        return None
    return InputConvention("rgb", 1.0, tuple(config.mean), tuple(config.std))


def _family_build(pretrained: str | None) -> nn.Module:
    raise BenchError(
        "Backbone 'timm' is a family: name one of its models, e.g. "
        "model.backbone=timm:vit_small_patch16_224.dino."
    )


TIMM_FAMILY = BackboneSpec(
    "timm",
    "timm models as timm:<model name> (pip install 'dmlbench[timm]')",
    _family_build,
    variants=timm_backbone,
)
