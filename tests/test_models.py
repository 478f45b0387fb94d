from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torchvision

from benchmark.errors import BenchError
from benchmark.models.backbones import build_convnet_small, resnet_builder
from benchmark.models.model import HashHead, build_model
from benchmark.protocol import HashSettings, ModelSettings

MODEL_CFG = ModelSettings(
    backbone="convnet-small", pretrained=None, pooling="avg", embedding_dim=16, normalize=True,
    freeze_bn=False,
)  # fmt: skip


def test_convnet_small_model_outputs_normalised_embeddings():
    model = build_model(build_convnet_small(None), ("embedding",), MODEL_CFG)
    outputs = model(torch.randn(3, 3, 56, 56))
    assert outputs["features"].shape == (3, 256)
    assert outputs["embedding"].shape == (3, 16)
    torch.testing.assert_close(outputs["embedding"].norm(dim=1), torch.ones(3))


@pytest.mark.parametrize("pooling", ["avg", "max", "avg+max"])
def test_pooling_variants(pooling):
    model = build_model(
        build_convnet_small(None), ("embedding",), replace(MODEL_CFG, pooling=pooling)
    ).eval()
    images = torch.randn(2, 3, 32, 32)
    maps = model.backbone(images)
    expected = {
        "avg": maps.mean((2, 3)),
        "max": maps.amax((2, 3)),
        "avg+max": maps.mean((2, 3)) + maps.amax((2, 3)),
    }[pooling]
    torch.testing.assert_close(model(images)["features"], expected)


def test_frozen_batch_norm_stays_in_eval_mode_while_training():
    frozen = replace(MODEL_CFG, freeze_bn=True)
    model = build_model(build_convnet_small(None), ("embedding",), frozen)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.heads.training


def test_imagenet_weights_load_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18(weights=None)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    checkpoint = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    checkpoint.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoint)
    trunk = resnet_builder("resnet18")("imagenet")
    assert trunk.out_channels == 512
    torch.testing.assert_close(trunk.body[0].weight, reference.conv1.weight)


def test_missing_imagenet_weights_say_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BenchError) as error:
        resnet_builder("resnet50")("imagenet")
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert str(error.value) == (
        "ImageNet weights for resnet50 cannot be fetched (BENCH_OFFLINE=1 is set). Download "
        "https://download.pytorch.org/models/resnet50-0676ba61.pth on a machine with internet "
        f"access and put it at {expected} (the torch hub cache; set TORCH_HOME to move it)."
    )


def test_convnet_small_has_no_pretrained_weights():
    with pytest.raises(BenchError, match="has no pretrained weights"):
        build_convnet_small("imagenet")


def test_the_attribute_head_gives_one_logit_per_attribute():
    model = build_model(build_convnet_small(None), ("embedding", "attributes"), MODEL_CFG, 7)
    outputs = model(torch.randn(3, 3, 32, 32))
    assert outputs["attributes"].shape == (3, 7)
    expected = outputs["features"] @ model.heads["attributes"].linear.weight.T
    torch.testing.assert_close(
        outputs["attributes"], expected + model.heads["attributes"].linear.bias
    )


def test_an_attribute_head_without_attributes_is_refused():
    with pytest.raises(BenchError, match="'attributes' head needs a dataset with attributes"):
        build_model(build_convnet_small(None), ("embedding", "attributes"), MODEL_CFG, 0)


def test_the_hash_head_is_csqs_official_head_or_a_single_layer():
    cfg = replace(MODEL_CFG, hash=HashSettings(bits=12, hidden=64, dropout=0.5))
    model = build_model(build_convnet_small(None), ("hash",), cfg).eval()
    layers = model.heads["hash"].layers
    assert [type(layer).__name__ for layer in layers] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear",
    ]  # fmt: skip
    assert (layers[0].in_features, layers[0].out_features, layers[-1].out_features) == (256, 64, 12)
    outputs = model(torch.randn(3, 3, 32, 32))
    codes, pre_tanh = outputs["hash"], outputs["hash_pre_tanh"]
    assert codes.shape == (3, 12) and (codes.abs() < 1).all()
    assert set(outputs) == {"features", "hash", "hash_pre_tanh"}
    torch.testing.assert_close(codes, pre_tanh.tanh())
    one_layer = replace(cfg, hash=HashSettings(bits=12, hidden=0, dropout=0.5))
    single = build_model(build_convnet_small(None), ("hash",), one_layer).heads["hash"].layers
    assert [type(layer).__name__ for layer in single] == ["Linear"]


def test_a_hash_head_without_the_protocols_hash_section_is_refused():
    with pytest.raises(BenchError, match="'hash' head needs the protocol's model.hash section"):
        build_model(build_convnet_small(None), ("hash",), MODEL_CFG)


def test_under_autocast_the_hash_codes_are_float32_tanh_of_the_last_layer():
    # bf16's tanh rounds to exactly +-1 from |z| = 3.47 on, where its gradient is 0.
    head = HashHead(in_features=4, bits=3, hidden=0, dropout=0.0)
    with torch.no_grad():
        head.layers[0].weight.zero_()
        head.layers[0].bias.copy_(torch.tensor([4.0, -6.0, 12.0]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = head(torch.randn(2, 4))
    assert outputs["hash"].dtype == outputs["hash_pre_tanh"].dtype == torch.float32
    assert outputs["hash"][0].tolist() == pytest.approx([math.tanh(4.0), math.tanh(-6.0), 1.0])
    outputs["hash"][:, :2].sum().backward()
    assert (head.layers[0].bias.grad[:2] > 0).all()  # 1 - tanh^2 z, not 0
