"""BN-Inception, GoogLeNet and timm backbones; weights files pinned by sha256; the backbone's input
convention in the data pipeline; frozen batch norm; the single-GPU speed options."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from benchmark.config import build_run_config
from benchmark.data.loading import build_transform
from benchmark.data.prepared import augment_batch
from benchmark.engine.speed import apply_speed_options
from benchmark.errors import BenchError
from benchmark.models.backbones import GoogLeNetTrunk, build_convnet_small, build_googlenet
from benchmark.models.bninception import BNInception, _fits
from benchmark.models.model import build_model
from benchmark.models.weights import build_backbone, file_sha256
from benchmark.protocol import ModelSettings, Protocol
from benchmark.specs import Batch

MODEL_CFG = ModelSettings(
    backbone="convnet-small", pretrained=None, pooling="max", embedding_dim=16, normalize=True,
    freeze_bn=False,
)  # fmt: skip
# Names and shapes of the Caffe port's state dict (pretrainedmodels' bninception).
PORT_SHAPES = {
    "conv1_7x7_s2.weight": (64, 3, 7, 7),
    "conv2_3x3_bn.running_var": (192,),
    "inception_3a_pool_proj.weight": (32, 192, 1, 1),
    "inception_3c_3x3.weight": (160, 128, 3, 3),
    "inception_4d_double_3x3_reduce.weight": (160, 608, 1, 1),
    "inception_4e_double_3x3_2.weight": (256, 256, 3, 3),
    "inception_5a_1x1.weight": (352, 1056, 1, 1),
    "inception_5b_pool_proj_bn.weight": (128,),
    "last_linear.weight": (1000, 1024),
}


@pytest.fixture(scope="module")
def port_weights(tmp_path_factory):
    """A weights file in the port's layout (random values, no num_batches_tracked, as the
    published file saved by an old PyTorch) and its state dict."""
    torch.manual_seed(0)
    shapes = {name: tensor.shape for name, tensor in BNInception().state_dict().items()}
    shapes |= {"last_linear.weight": (1000, 1024), "last_linear.bias": (1000,)}  # ImageNet's
    state = {
        name: torch.rand(shape) * 0.1 + (0.5 if name.endswith("running_var") else 0.0)
        for name, shape in shapes.items()
        if not name.endswith("num_batches_tracked")
    }
    path = tmp_path_factory.mktemp("weights") / "bn_inception.pth"
    torch.save(state, path)
    return path, state


def test_bninception_has_the_ports_names_and_shapes(port_weights):
    _, state = port_weights
    assert len(state) == 416  # 69 conv + BN units of six tensors, and the classifier
    assert {name: tuple(state[name].shape) for name in PORT_SHAPES} == PORT_SHAPES
    BNInception().load_published_weights(state)  # strict, the classifier dropped


def test_bninception_weights_from_a_file_load_and_give_1024_d_features(registry, port_weights):
    path, state = port_weights
    spec = registry.backbone("bninception")
    backbone = build_backbone(spec, str(path), file_sha256(path))
    torch.testing.assert_close(backbone.inception_4e_3x3.weight, state["inception_4e_3x3.weight"])
    torch.testing.assert_close(
        backbone.conv2_3x3_bn.running_mean, state["conv2_3x3_bn.running_mean"]
    )
    assert not hasattr(backbone, "last_linear")
    model = build_model(backbone, ("embedding",), MODEL_CFG).eval()
    images = torch.randn(2, 3, 64, 64)
    maps = backbone(images)
    assert maps.shape == (2, 1024, 2, 2)
    outputs = model(images)
    assert outputs["features"].shape == (2, 1024) and outputs["embedding"].shape == (2, 16)
    torch.testing.assert_close(outputs["features"], maps.amax(dim=(2, 3)))


def test_a_weights_file_with_another_sha256_is_refused(registry, port_weights):
    path, _ = port_weights
    with pytest.raises(BenchError) as error:
        build_backbone(registry.backbone("bninception"), str(path), "0" * 64)
    assert str(error.value) == (
        f"Weights file {path} has sha256 {file_sha256(path)}, but model.pretrained_sha256 is "
        f"{'0' * 64}: the file is not the one the protocol names. Fetch the right file, or set "
        f"model.pretrained_sha256 if you meant to change the weights."
    )


def test_a_weights_url_offline_says_where_to_put_the_file(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = "https://example.org/models/bn_inception-239d2248.pth"
    with pytest.raises(BenchError) as error:
        build_backbone(registry.backbone("bninception"), url, "a" * 64)
    expected = tmp_path / "hub" / "checkpoints" / "bn_inception-239d2248.pth"
    assert str(error.value) == (
        f"model.pretrained: {url} cannot be fetched (BENCH_OFFLINE=1 is set). Download {url} "
        f"on a machine with internet access and put it at {expected} (the torch hub cache; set "
        f"TORCH_HOME to move it); its sha256 must be {'a' * 64}."
    )


def test_weights_that_do_not_fit_the_backbone_are_refused(registry, tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(BenchError) as error:
        build_backbone(registry.backbone("bninception"), str(path), file_sha256(path))
    message = str(error.value)
    assert message.startswith(
        f"The weights of {path} (backbone 'bninception') do not fit the backbone (a file for "
        f"another network?): Error(s) in loading state_dict for BNInception: Missing key(s) "
        f'in state_dict: "conv1_7x7_s2.weight",'
    )
    assert message.endswith(" ... (shortened)") and len(message) < 800


def test_the_protocol_needs_a_sha256_for_a_weights_file_and_known_weight_names(registry):
    with pytest.raises(BenchError, match="'pretrained_sha256' is a required property"):
        config(registry, "model.backbone=bninception", "model.pretrained=./bn.pth")
    with pytest.raises(BenchError) as error:
        config(registry, "model.pretrained=imagenet")
    assert str(error.value).startswith(
        "model.pretrained: backbone 'convnet-small' offers no weights named 'imagenet' "
        "(it offers: none)."
    )
    pinned = config(registry, "model.pretrained=./bn.pth", f"model.pretrained_sha256={'b' * 64}")
    assert pinned.protocol.model.pretrained_sha256 == "b" * 64


def config(registry, *overrides):
    return build_run_config(registry, method="ms", dataset="synth-cub", overrides=overrides)


def test_bninception_runs_get_bgr_0_255_inputs_minus_the_caffe_mean(registry):
    data_cfg = config(registry, "model.backbone=bninception").protocol.data
    assert (data_cfg.channels, data_cfg.pixel_range) == ("bgr", 255.0)
    assert (data_cfg.mean, data_cfg.std) == ((104.0, 117.0, 128.0), (1.0, 1.0, 1.0))
    plain_data = config(registry).protocol.data  # others keep the protocol's
    assert (plain_data.channels, plain_data.pixel_range) == ("rgb", 1.0)
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 200, 100, 50  # R, G, B
    expected = torch.tensor([50 - 104.0, 100 - 117.0, 200 - 128.0])  # B, G, R
    plain = build_transform(data_cfg, train=False)(Image.fromarray(pixels))
    torch.testing.assert_close(plain[:, 0, 0], expected)
    uint8 = torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None]
    prepared = augment_batch(uint8, data_cfg, train=False)
    assert torch.equal(prepared[0], plain)


def test_frozen_batch_norm_keeps_running_statistics_in_a_training_forward():
    backbone = build_convnet_small(None)
    model = build_model(
        backbone, ("embedding",), dataclasses.replace(MODEL_CFG, freeze_bn=True)
    ).train()
    norm = backbone.features[1]
    before = norm.running_mean.clone()
    model(torch.randn(4, 3, 16, 16) * 10 + 5)
    assert torch.equal(norm.running_mean, before) and norm.num_batches_tracked == 0
    model.freeze_bn = False
    model.train()(torch.randn(4, 3, 16, 16) * 10 + 5)
    assert not torch.equal(norm.running_mean, before) and norm.num_batches_tracked == 1


def test_googlenet_trunk_gives_1024_d_maps_and_loads_torchvision_weights(tmp_path):
    trunk = build_googlenet(None)
    assert trunk(torch.randn(1, 3, 64, 64)).shape == (1, 1024, 2, 2) and not trunk.transform_input
    published = torchvision.models.GoogLeNet(aux_logits=True, init_weights=False).state_dict()
    trunk.load_published_weights(published)
    torch.testing.assert_close(trunk.body[0].conv.weight, published["conv1.conv.weight"])
    assert trunk.transform_input and isinstance(trunk, GoogLeNetTrunk)
    # A re-scored or resumed run rebuilds the trunk without weights, then loads its state.
    rebuilt = build_googlenet(None)
    rebuilt.load_state_dict(trunk.state_dict())
    assert rebuilt.transform_input


def test_timm_backbones_without_timm_say_how_to_install_it(registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(BenchError) as error:
        registry.backbone("timm:vit_small_patch16_224.dino")
    assert str(error.value) == (
        "timm backbones need the timm package, which is not installed: "
        "pip install 'dmlbench[timm]' (or pip install timm)."
    )
    with pytest.raises(BenchError, match="Unknown backbone 'vit_small'"):
        registry.backbone("vit_small")


def test_timm_backbones_resolve_by_name_and_pool_as_their_model(registry):
    pytest.importorskip("timm")
    spec = registry.backbone("timm:test_vit")
    assert spec.name == "timm:test_vit" and spec.input_convention.mean == (0.5, 0.5, 0.5)
    backbone = spec.build(None)
    assert backbone(torch.randn(2, 3, 160, 160)).shape == (2, backbone.out_channels, 1, 1)
    with pytest.raises(BenchError, match="Unknown timm model 'test_vitt'.*timm:test_vit"):
        registry.backbone("timm:test_vitt")


def test_channels_last_and_compile_are_applied_to_the_model(monkeypatch, registry):
    train = Protocol.from_json(registry.protocol("cpu-smoke")).train
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda module: compiled.append(module))
    model = build_model(build_convnet_small(None), ("embedding",), MODEL_CFG)
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    apply_speed_options(model, dataclasses.replace(train, channels_last=True, compile=True))
    assert compiled == [model.backbone]  # nn.Module.compile: the state-dict names stay
    assert model.backbone.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    model(torch.randn(2, 3, 16, 16))
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    untouched = build_model(build_convnet_small(None), ("embedding",), MODEL_CFG)
    apply_speed_options(untouched, train)
    assert untouched.backbone.features[0].weight.is_contiguous() and compiled == [model.backbone]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_batches_are_pinned_for_non_blocking_copies():
    batch = Batch(torch.zeros(2, 3, 8, 8), torch.zeros(2), torch.arange(2))
    loader = torch.utils.data.DataLoader([batch], batch_size=None, pin_memory=True)
    pinned = next(iter(loader))
    assert pinned.images.is_pinned() and pinned.labels.is_pinned()


def test_bninception_refuses_image_sides_its_stride_2_modules_cannot_concatenate():
    with pytest.raises(BenchError) as error:
        BNInception()(torch.zeros(1, 3, 56, 56))
    assert str(error.value) == (
        "BN-Inception cannot take 56x56 images: in the Caffe port's layout the input sides "
        "must reach its modules 3c and 4e even. Set data.crop to a multiple of 32 (224 as the "
        "papers; 64 or 96 for a CPU test)."
    )
    assert [side for side in range(56, 100) if _fits(side)] == [*range(63, 71), *range(95, 100)]
