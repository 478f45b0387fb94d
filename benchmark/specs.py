"""The frozen dataclasses plugins hand to the core, and the values that flow between stages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

Task = Literal["retrieval", "query-gallery", "hashing"]
TASKS: tuple[str, ...] = ("retrieval", "query-gallery", "hashing")


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of a dataset: image files, their labels and, optionally, their attributes.

    labels: (N,) int64 class or item ids (hashing datasets: (N, C) multi-hot).
    attributes: (N, A) float32 in {0, 1}; attribute_mask: (N, A) bool, False where unknown
    (None means every value is known).
    """

    paths: tuple[Path, ...]
    labels: np.ndarray
    attributes: np.ndarray | None = None
    attribute_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True, eq=False)
class Splits:
    """What a dataset loader returns. For the `retrieval` task `query is gallery` (the test set)."""

    train: ImageSet
    query: ImageSet
    gallery: ImageSet
    attribute_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: `load(data_root, **options)` finds (synthetic data: writes) its files and
    returns Splits."""

    name: str
    summary: str
    task: Task
    load: Callable[..., Splits]
    recall_at: tuple[int, ...] = (1, 2, 4, 8)
    top_k: int | None = None  # hashing: mAP over the top_k ranked items; None = all
    main_metric: str = "recall@1"
    url: str = ""
    citation: str = ""
    layout: str = ""  # the files expected under the data root, for `bench data info`
    counts: Mapping[str, int] = field(default_factory=dict)  # the official split sizes
    # JSON schema of the keyword options `load` accepts (`load(root, **options)`), set by a
    # protocol's data.dataset_options; empty: the dataset takes none. A property's "default" is
    # filled in before the run, so the fingerprint sees it.
    options_schema: Mapping[str, Any] = field(default_factory=dict)
    # The protocol a run takes when none is named (e.g. cpu-smoke for synthetic data); None:
    # runs must name one.
    protocol: str | None = None


@dataclass(frozen=True)
class InputConvention:
    """The pixels a backbone's weights were trained on: channel order, pixel range [0, range],
    and per-channel mean and std in that order and range (Caffe ports: BGR, 0-255, std 1)."""

    channels: Literal["rgb", "bgr"]
    pixel_range: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone: `build(pretrained)` returns a module mapping images (B, 3, H, W) to feature maps
    (B, C, h, w) with an `out_channels` attribute. `pretrained` is None or one of `weights`.

    The module may define `load_published_weights(state_dict)` to load a weights file in the
    layout its authors publish (`model.pretrained` set to a path or URL); without it the core
    calls `load_state_dict(state_dict, strict=True)`.
    input_convention: None takes the protocol's data.mean and data.std on RGB pixels in [0, 1];
    otherwise the run's data pipeline normalises as it says, whatever the protocol's values.
    variants: makes this spec a family: `<name>:<variant>` is looked up as `variants(variant)`,
    which returns that backbone's spec (e.g. timm:<model name>) or raises a BenchError.
    """

    name: str
    summary: str
    build: Callable[[str | None], nn.Module]
    weights: tuple[str, ...] = ()
    input_convention: InputConvention | None = None
    variants: Callable[[str], BackboneSpec] | None = None


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    venue: str
    url: str


@dataclass(frozen=True)
class Reported:
    """A figure a paper reports, shown beside reproduced ones and never ranked with them."""

    dataset: str
    metrics: Mapping[str, float]
    setting: str
    source: str


@dataclass(frozen=True)
class BuildContext:
    """What a method's `build` may use to construct its criterion."""

    hparams: Mapping[str, Any]
    embedding_dim: int
    num_classes: int
    num_train_images: int
    num_attributes: int
    device: torch.device
    hash_bits: int = 0  # bits of the protocol's hash head (model.hash.bits); 0 without one
    # The sorted class ids the run trains on (a validation split's classes left out); empty for
    # multi-hot labels. Criteria with one parameter per class map labels through it.
    class_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class MethodSpec:
    """A method: its hyper-parameters, what the model must provide, and `build(ctx)` -> criterion.

    `heads` are the model outputs the criterion reads (`benchmark.models.model.HEADS`):
    "embedding" always; "attributes" adds one logit per dataset attribute, and the run fails
    early on a dataset without attributes; "hash" adds codes h = tanh z of `model.hash.bits`
    bits and, as `outputs["hash_pre_tanh"]`, the last layer's output z (both float32: the tanh
    runs outside autocast, so codes near +-1 keep their gradient). `eval_output` names the head
    retrieval uses.

    The criterion is an nn.Module whose `forward(outputs, batch)` returns the loss, or
    `(loss, {name: float})` with extra scalars to log. The core calls it with autocast off and
    the outputs in float32 (mixed precision covers the network only). It may define
    `on_epoch_start(epoch)` and `on_epoch_end(epoch)` for work outside the gradient step.
    A criterion with a learned pair score may set `rerank_top_k` > 0 and define
    `rerank_scores(query (b, D), candidates (b, k, D)) -> (b, k)`: evaluations then add
    `rerank@k/recall@K` figures (the first k items of each ranking re-ordered by that score)
    beside the standard ones.
    A criterion may define `summary() -> dict` (JSON values): it goes into the result file as
    `criterion_summary`, for state worth keeping with the figures (hash centres, learned
    weights).
    State the criterion changes while training (learned proxies, per-image weights, a memory
    bank) must be in its `state_dict`, as parameters or buffers, or returned by torch's
    `get_extra_state()` and taken back by `set_extra_state(state)` as tensors, numbers, strings
    and plain containers: resume checkpoints save the state_dict and load it with
    weights_only=True, and a resumed run must go on exactly as an uninterrupted one.
    """

    name: str
    summary: str
    paper: Paper
    tasks: tuple[Task, ...]
    build: Callable[[BuildContext], nn.Module]
    defaults: Mapping[str, Any]
    hparam_schema: Mapping[str, Any]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    heads: tuple[str, ...] = ("embedding",)
    eval_output: Literal["embedding", "hash"] = "embedding"
    distance: Literal["cosine", "euclidean", "hamming"] = "cosine"
    fidelity: Literal["faithful", "reconstructed"] = "faithful"
    fidelity_notes: str = ""
    reported: tuple[Reported, ...] = ()
    # The method's own paper recipe per dataset, {dataset: protocol name} (protocols of kind
    # "paper" the plugin registers): shown by `bench list methods` and `bench run --dry-run`.
    paper_protocols: Mapping[str, str] = field(default_factory=dict)
    # False when the loss legitimately depends on the order of a batch (sampling tied to
    # positions); `bench check` then skips its batch-order check.
    order_invariant: bool = True


@dataclass
class Batch:
    """One training batch as the criterion sees it. `indices` index the training split."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    attributes: torch.Tensor | None = None
    attribute_mask: torch.Tensor | None = None
    skipped: tuple[int, ...] = ()  # indices of unreadable images left out (--skip-bad-images)

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        def move(value):
            return value.to(device, non_blocking=non_blocking) if torch.is_tensor(value) else value

        return Batch(*(move(getattr(self, name)) for name in self.__dataclass_fields__))

    def pin_memory(self) -> Batch:
        """Page-locked copies of the tensors, which DataLoader(pin_memory=True) asks for, so
        that copies to the GPU can be non-blocking."""

        def pin(value):
            return value.pin_memory() if torch.is_tensor(value) else value

        return Batch(*(pin(getattr(self, name)) for name in self.__dataclass_fields__))


def closed_schema(properties: Mapping[str, Any]) -> dict[str, Any]:
    """A MethodSpec.hparam_schema in which every listed hyper-parameter is required and no
    other is allowed: what `--set` needs to catch misspelt names."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": sorted(properties),
        "additionalProperties": False,
    }
