"""Central similarity losses: CSQ (Yuan et al., CVPR 2020) and ICS (Zhang and Peng, 2021)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench_ics.centres import centre_summary, generate_centres, load_centres
from bench_ics.simplex import project_to_simplex
from benchmark.models.model import HASH_PRE_TANH

CENTRE_FORMS = ("logits", "official-clamped")


def centre_loss(pre_tanh: Tensor, targets: Tensor) -> Tensor:
    """Per image: binary cross-entropy between q = (tanh z + 1) / 2 and p = (c + 1) / 2, averaged
    over bits, computed in logit space: q = sigmoid(2z), so BCE = softplus(2z) - 2z p.

    The official code's value wherever its codes are not saturated, and the true gradient,
    2 (q - p) per bit, however far a bit sits on the wrong side of its centre.
    pre_tanh: (B, K) z; targets: (B, K) in [-1, 1] (±1 centres, or a weighted mix of them).
    Differentiable in both (ICS's weight step differentiates the target).
    """
    logits = 2 * pre_tanh
    return (F.softplus(logits) - logits * (targets + 1) / 2).mean(dim=1)


def clamped_centre_loss(codes: Tensor, targets: Tensor) -> Tensor:
    """Per image: the official code's form, torch's BCELoss on q = (h + 1) / 2 and p = (c + 1)
    / 2, averaged over bits. It clamps each log at -100 and its gradient's denominator at 1e-12,
    so a bit whose tanh has rounded to ±1 (|z| > 9 or so in float32) gets no gradient."""
    return F.binary_cross_entropy((codes + 1) / 2, (targets + 1) / 2, reduction="none").mean(1)


def pre_tanh_of(outputs: dict[str, Tensor], codes: Tensor) -> Tensor:
    """The head's z, or, from a head that gives only the codes, atanh of the codes: exact while
    |h| < 1, and as saturated as the codes where they are ±1."""
    if HASH_PRE_TANH in outputs:
        return outputs[HASH_PRE_TANH].to(codes.dtype)
    limit = 1 - torch.finfo(codes.dtype).eps
    return codes.clamp(-limit, limit).atanh()


def quantisation_loss(codes: Tensor, form: str = "squared") -> Tensor:
    """Mean over images and bits of (|h| - 1)² (official code) or log cosh(|h| - 1) (paper)."""
    gap = codes.abs() - 1
    if form == "squared":
        return gap.square().mean()
    if form == "log-cosh":
        # log cosh x = |x| + log(1 + e^{-2|x|}) - log 2, stable for any x.
        x = gap.abs()
        return (x + torch.log1p(torch.exp(-2 * x)) - math.log(2.0)).mean()
    raise ValueError(f"unknown quantisation form '{form}'; use squared or log-cosh")


def sign_of_mean_targets(labels: Tensor, centres: Tensor, tie_fill: Tensor) -> Tensor:
    """CSQ's multi-label target: sign(mean of the image's class centres); entries that are
    exactly 0 (ties, or an image without labels) come from one fixed ±1 vector."""
    summed = labels.to(centres.dtype) @ centres
    return torch.where(summed == 0, tie_fill.expand_as(summed), summed.sign())


def mean_targets(labels: Tensor, centres: Tensor, tie_fill: Tensor) -> Tensor:
    """The unbinarised mean of the image's class centres (ICS at uniform weights); an image
    without labels gets the fixed ±1 vector."""
    counts = labels.to(centres.dtype).sum(dim=1, keepdim=True)
    mean = labels.to(centres.dtype) @ centres / counts.clamp(min=1)
    return torch.where(counts > 0, mean, tie_fill.expand_as(mean))


def as_multi_hot(labels: Tensor, classes: int) -> Tensor:
    """(B, C) multi-hot labels, checked."""
    if labels.ndim != 2 or labels.shape[1] != classes:
        raise ValueError(
            f"central similarity hashing needs (batch, {classes}) multi-hot labels, got shape "
            f"{tuple(labels.shape)}: use a hashing dataset (coco, synth-coco)"
        )
    return labels.float()


class CentralSimilarity(nn.Module):
    """Hash centres, the tie-filling vector and the quantisation term shared by CSQ and ICS."""

    def __init__(
        self,
        *,
        classes: int,
        bits: int,
        centres: str,
        centres_file: str,
        centre_seed: int,
        lambda_q: float,
        quantisation: str,
    ) -> None:
        super().__init__()
        if centres_file:
            values, construction = load_centres(Path(centres_file), classes, bits)
        else:
            values, construction = generate_centres(classes, bits, centres, centre_seed)
        generator = torch.Generator().manual_seed(centre_seed + 1)
        tie_fill = torch.randint(0, 2, (bits,), generator=generator).float() * 2 - 1
        self.register_buffer("centres", values.float())
        self.register_buffer("tie_fill", tie_fill)
        self.construction = construction
        self.lambda_q, self.quantisation = lambda_q, quantisation

    def as_codes(self, codes: Tensor) -> Tensor:
        """The head's output in the centres' precision or wider (float64 in some tests)."""
        return codes.to(torch.promote_types(codes.dtype, self.centres.dtype))

    def quantise(self, codes: Tensor) -> Tensor:
        return quantisation_loss(codes, self.quantisation)

    def summary(self) -> dict[str, Any]:
        return {"centres": centre_summary(self.centres, self.construction)}


class CSQLoss(CentralSimilarity):
    """L = mean BCE(h, target) + lambda_q × quantisation; target = sign of the mean centre
    (official) or the unbinarised mean (`target="mean"`); the BCE from the pre-tanh value in
    logit space (`centre_form="logits"`) or the official clamped form on the codes."""

    def __init__(self, *, target: str = "sign", centre_form: str = "logits", **kwargs: Any):
        super().__init__(**kwargs)
        if centre_form not in CENTRE_FORMS:
            raise ValueError(f"unknown centre loss form '{centre_form}'; use one of {CENTRE_FORMS}")
        self.target, self.centre_form = target, centre_form

    def forward(self, outputs: dict[str, Tensor], batch) -> tuple[Tensor, dict[str, float]]:
        codes = self.as_codes(outputs["hash"])
        labels = as_multi_hot(batch.labels, len(self.centres))
        make = sign_of_mean_targets if self.target == "sign" else mean_targets
        targets = make(labels, self.centres, self.tie_fill)
        if self.centre_form == "logits":
            centre = centre_loss(pre_tanh_of(outputs, codes), targets).mean()
        else:
            centre = clamped_centre_loss(codes, targets).mean()
        quantisation = self.quantise(codes)
        logs = {"centre": centre.detach(), "quantisation": quantisation.detach()}
        return centre + self.lambda_q * quantisation, logs


class ICSLoss(CentralSimilarity):
    """Instance-weighted central similarity: each training image i has weights w_i on the
    simplex over its labels, its target is sum_k w_ik c_k, and

        L = mean_i BCE(h_i, target_i) + lambda_q Q(h) + lambda_r mean_i sum_k w_ik log w_ik.

    Each training step first updates the weights of the batch's images with the network fixed
    (`weight_steps` projected-gradient steps of size `eta` on the same objective), then returns
    the loss at the new weights, held fixed, for the network's optimiser step.
    """

    def __init__(
        self,
        *,
        num_images: int,
        eta: float,
        lambda_r: float,
        weight_steps: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eta, self.lambda_r, self.weight_steps = eta, lambda_r, weight_steps
        classes = len(self.centres)
        self.register_buffer("weights", torch.zeros(num_images, classes))
        # The labels of each image training has seen (the weights' support).
        self.register_buffer("support", torch.zeros(num_images, classes, dtype=torch.bool))
        self.register_buffer("seen", torch.zeros(num_images, dtype=torch.bool))

    def forward(self, outputs: dict[str, Tensor], batch) -> tuple[Tensor, dict[str, float]]:
        codes = self.as_codes(outputs["hash"])
        pre_tanh = pre_tanh_of(outputs, codes)
        labels = as_multi_hot(batch.labels, len(self.centres)) > 0
        weights = self._batch_weights(batch.indices, labels)
        if self.training and self.eta > 0:
            for _ in range(self.weight_steps):
                weights = self._weight_step(pre_tanh.detach(), weights, labels)
            self.weights[batch.indices] = weights
        centre = centre_loss(pre_tanh, self.targets(weights, labels)).mean()
        quantisation = self.quantise(codes)
        entropy_term = negative_entropy(weights).mean()
        loss = centre + self.lambda_q * quantisation + self.lambda_r * entropy_term
        logs = {
            "centre": centre.detach(),
            "quantisation": quantisation.detach(),
            "entropy": -entropy_term.detach(),
        }
        return loss, logs

    def targets(self, weights: Tensor, labels: Tensor) -> Tensor:
        mixed = weights @ self.centres
        no_label = ~labels.any(dim=1, keepdim=True)
        return torch.where(no_label, self.tie_fill.expand_as(mixed), mixed)

    def _batch_weights(self, indices: Tensor, labels: Tensor) -> Tensor:
        """The stored weights of these images; uniform over its labels the first time one is
        seen."""
        fresh = ~self.seen[indices]
        uniform = labels.to(self.weights.dtype)
        uniform = uniform / uniform.sum(dim=1, keepdim=True).clamp(min=1)
        if fresh.any() and self.training:
            self.weights[indices[fresh]] = uniform[fresh]
            self.support[indices[fresh]] = labels[fresh]
            self.seen[indices[fresh]] = True
            return self.weights[indices].clone()
        if fresh.any():  # not training: uniform, without recording anything
            return torch.where(fresh[:, None], uniform, self.weights[indices])
        return self.weights[indices].clone()

    def _weight_step(self, pre_tanh: Tensor, weights: Tensor, labels: Tensor) -> Tensor:
        """One projected-gradient step on each image's own objective (network fixed)."""
        with torch.enable_grad():
            w = weights.detach().requires_grad_(True)
            objective = centre_loss(pre_tanh, self.targets(w, labels)) + self.lambda_r * (
                negative_entropy(w)
            )
            (gradient,) = torch.autograd.grad(objective.sum(), w)
        return project_to_simplex(weights - self.eta * gradient, labels).to(weights.dtype)

    def summary(self) -> dict[str, Any]:
        return super().summary() | {
            "weights": weight_summary(self.weights, self.support, self.seen)
        }


def negative_entropy(weights: Tensor) -> Tensor:
    """Per row: sum_k w_k log w_k (0 log 0 = 0); its gradient at w_k = 0 is finite (log eps)."""
    return (weights * weights.clamp(min=1e-12).log()).sum(dim=1)


def weight_summary(
    weights: Tensor, support: Tensor, seen: Tensor, bins: int = 10
) -> dict[str, Any]:
    """Over the images training has seen with at least two labels: the entropy of their
    weights divided by log(number of labels) (1 = uniform, as CSQ; 0 = one label takes all),
    as a histogram over [0, 1] and a mean, and the fraction of their weights at 0."""
    counts = support.sum(dim=1)
    multi = seen & (counts >= 2)
    entropy = -negative_entropy(weights[multi].double()) / counts[multi].double().log()
    histogram = torch.histc(entropy.float().clamp(0, 1), bins=bins, min=0, max=1)
    zeros = (weights[multi] == 0) & support[multi]
    return {
        "images_seen": int(seen.sum()),
        "multi_label_images": int(multi.sum()),
        "normalised_entropy_mean": entropy.mean().item() if len(entropy) else None,
        "normalised_entropy_histogram": [int(v) for v in histogram.tolist()],
        "histogram_edges": [i / bins for i in range(bins + 1)],
        "zero_weight_fraction": zeros.sum().item() / max(1, int(support[multi].sum())),
    }
