"""Time one training step of the PDDM criterion against the batch size, and fit its growth.

    .venv/bin/python benchmarks/pddm_mining.py [--sizes 32,64,128,256,512] [--repeats 20]
        [--threads 1]

Each step is the criterion's forward (mining and double-header hinge) and backward, on P x K
batches of K = 4 images per class (cpu-smoke's K) of 64-d random embeddings, with the plugin's
default hyper-parameters except the mining settings below. The fitted exponent is the slope of
log(seconds) against log(batch size) by least squares (1 = linear, 2 = quadratic):
  default          one quadruplet per positive pair, negatives among each head's 8 nearest
  all negatives    the same, hardest negatives among every negative (neighbours=0): the unit
                   scores every pair of the batch
  one per batch    the single hardest quadruplet (quadruplets=one-per-batch, neighbours=0)
The fastest of --repeats steps is kept for each size (other processes slow every side); one
torch thread by default, since on a busy machine a second thread's waits dominate small steps.
Needs the pddm plugin on the path (pip install -e plugins/pddm, or PYTHONPATH=plugins/pddm).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch
from bench_pddm import PDDM_SPEC, PDDMLoss
from tabulate import tabulate

from benchmark.specs import Batch

DIM, PER_CLASS = 64, 4
SETTINGS = {
    "default": {},
    "all negatives": {"neighbours": 0},
    "one per batch": {"quadruplets": "one-per-batch", "neighbours": 0},
}


def criterion(overrides: dict) -> PDDMLoss:
    hparams = {**PDDM_SPEC.defaults, **overrides}
    return PDDMLoss(
        embedding_dim=DIM,
        alpha=hparams["alpha"],
        beta=hparams["beta"],
        lam=hparams["lambda"],
        mode=hparams["quadruplets"],
        neighbours=hparams["neighbours"],
    )


def step_seconds(loss: PDDMLoss, size: int, repeats: int) -> float:
    """The fastest of `repeats` forward + backward passes on one batch of `size`."""
    generator = torch.Generator().manual_seed(size)
    labels = torch.arange(size // PER_CLASS).repeat_interleave(PER_CLASS)
    embeddings = torch.randn(size, DIM, generator=generator, requires_grad=True)
    batch = Batch(images=torch.empty(size, 0), labels=labels, indices=torch.arange(size))
    best = math.inf
    for _ in range(repeats + 1):  # the first pass warms up allocations
        start = time.perf_counter()
        value, _ = loss({"embedding": embeddings}, batch)
        value.backward()
        best = min(best, time.perf_counter() - start)
    return best


def growth_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) on log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in seconds]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return covariance / sum((x - mean_x) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,64,128,256,512")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(size) for size in args.sizes.split(",")]
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
        f"threads; load average {os.getloadavg()[0]:.2f}; {DIM}-d embeddings, {PER_CLASS} per "
        "class; milliseconds per step (forward + backward)"
    )
    rows = []
    for name, overrides in SETTINGS.items():
        loss = criterion(overrides)
        seconds = [step_seconds(loss, size, args.repeats) for size in sizes]
        exponent = growth_exponent(sizes, seconds)
        rows.append([name, *(f"{1000 * s:.2f}" for s in seconds), f"{exponent:.2f}"])
    print(tabulate(rows, headers=["mining", *map(str, sizes), "exponent"]))


if __name__ == "__main__":
    main()
