"""Building a run's backbone, with weights by name (the backbone's own) or from a file or URL
that the protocol pins with a sha256 (model.pretrained, model.pretrained_sha256)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from benchmark.errors import BenchError
from benchmark.files import read_tensors
from benchmark.specs import BackboneSpec


def is_weights_file(pretrained: str | None) -> bool:
    """A path or URL (anything with a '/'), as opposed to a weight name such as 'imagenet'."""
    return pretrained is not None and "/" in pretrained


def check_pretrained(spec: BackboneSpec, pretrained: str | None) -> None:
    """Refuse a weight name the backbone does not offer, before anything runs."""
    if pretrained is None or is_weights_file(pretrained) or pretrained in spec.weights:
        return
    offered = ", ".join(spec.weights) or "none"
    raise BenchError(
        f"model.pretrained: backbone '{spec.name}' offers no weights named '{pretrained}' "
        f"(it offers: {offered}). Give a weight name, null, or a file path or URL containing "
        f"a '/' (e.g. ./weights.pth) with model.pretrained_sha256."
    )


def build_backbone(spec: BackboneSpec, pretrained: str | None, sha256: str | None) -> nn.Module:
    """`spec.build(pretrained)` for a weight name or None; for a file or URL, the backbone
    without weights, then the file's state dict once its sha256 matches."""
    if not is_weights_file(pretrained):
        return spec.build(pretrained)
    state = read_state_dict(weights_path(pretrained, sha256), sha256)
    backbone = spec.build(None)
    apply_state_dict(backbone, state, f"{pretrained} (backbone '{spec.name}')")
    return backbone


def weights_path(source: str, sha256: str | None) -> Path:
    """The local file of a path or URL; a URL is downloaded once into the torch hub cache, or
    must be put there by hand when BENCH_OFFLINE=1."""
    if urlparse(source).scheme not in ("http", "https"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise BenchError(f"model.pretrained: weights file {path} not found.")
        return path
    return hub_file(source, f"model.pretrained: {source}", sha256)


def hub_file(url: str, what: str, sha256: str | None = None) -> Path:
    """The torch hub cache's copy of `url`, downloaded once; when BENCH_OFFLINE=1 or the download
    fails, a message saying where to put it by hand."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if path.exists():
        return path
    why = "BENCH_OFFLINE=1 is set"
    if os.environ.get("BENCH_OFFLINE") != "1":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=True)
            return path
        except Exception as error:
            why = str(error)
    pinned = f"; its sha256 must be {sha256}" if sha256 else ""
    raise BenchError(
        f"{what} cannot be fetched ({why}). Download {url} on a machine with internet access "
        f"and put it at {path} (the torch hub cache; set TORCH_HOME to move it){pinned}."
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path, sha256: str | None) -> dict[str, torch.Tensor]:
    """The tensors of a weights file whose sha256 is `sha256` (torch.load, weights_only)."""
    if sha256 is None:
        raise BenchError(
            f"model.pretrained is the file {path}: set model.pretrained_sha256 to its sha256 "
            f"(sha256sum {path})."
        )
    actual = file_sha256(path)
    if actual != sha256.lower():
        raise BenchError(
            f"Weights file {path} has sha256 {actual}, but model.pretrained_sha256 is {sha256}: "
            f"the file is not the one the protocol names. Fetch the right file, or set "
            f"model.pretrained_sha256 if you meant to change the weights."
        )
    loaded = read_tensors(path, "Weights file")
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise BenchError(
            f"Weights file {path} holds no state dict (a mapping of names to tensors)."
        )
    return dict(loaded)


def apply_state_dict(backbone: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """The backbone's `load_published_weights` if it has one, else a strict load_state_dict."""
    load = getattr(backbone, "load_published_weights", None)
    try:
        if callable(load):
            load(state)
        else:
            backbone.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise BenchError(
            f"The weights of {where} do not fit the backbone (a file for another network?): "
            f"{_shortened(str(error))}"
        ) from None


def _shortened(message: str, limit: int = 600) -> str:
    """PyTorch lists every missing and unexpected name: hundreds of lines for a wrong file."""
    message = " ".join(message.split())
    return message if len(message) <= limit else f"{message[:limit]} ... (shortened)"
