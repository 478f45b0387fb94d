"""Saturated hash bits and their gradient under bf16 autocast, before and after the float32 tanh.

    .venv/bin/python benchmarks/hashing_saturation.py [--method csq] [--epochs 6] [--every 50]
        [--seed 0] [--data-root DIR]

Trains `--method` (csq or ics) on synth-coco under cpu-smoke (32-bit codes, hash head with a
hidden width of 512) on the CPU, the network's forward under a bf16 autocast, which the
harness itself turns on only on a GPU (train.amp). Two variants, same seed and batches:
  before  the hash head's tanh taken in bf16 (as the head did: z comes out of the last layer in
          bf16) and the centre loss on the codes, the official clamped form
          (centre_loss=official-clamped for csq); no pre-tanh value reaches the criterion
  after   the harness now: tanh in float32 outside autocast, the centre loss from the pre-tanh
          value in logit space (the default)
Every --every steps it prints, on that step's batch: the fraction of bits with |z| > 3.5 (bf16
rounds tanh z to exactly +-1 from |z| = 3.47), the norm of the loss's gradient to those bits'
z, and the fraction of them whose gradient is exactly 0. The test split's mAP after training
closes each variant. Synthetic data and a tiny network: it shows the mechanism, not a real run.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch
from tabulate import tabulate

from benchmark.config import build_run_config
from benchmark.data.pipeline import build_pipeline
from benchmark.engine.evaluate import evaluate
from benchmark.engine.loop import training_batches
from benchmark.engine.run import load_splits, seed_everything, train_state
from benchmark.engine.train import full_precision, split_loss
from benchmark.models.model import HASH_PRE_TANH
from benchmark.plugins import load_plugins

SATURATED = 3.5
DATASET = "synth-coco"


def bf16_tanh_outputs(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The outputs as the head gave them before: tanh of a bf16 z, and no pre-tanh value."""
    codes = torch.tanh(outputs[HASH_PRE_TANH].to(torch.bfloat16))
    return {name: value for name, value in outputs.items() if name != HASH_PRE_TANH} | {
        "hash": codes
    }


def saturation(pre_tanh: torch.Tensor) -> tuple[float, float, float]:
    """(fraction of bits with |z| > 3.5, gradient norm over them, fraction with zero gradient)."""
    saturated = pre_tanh.detach().abs() > SATURATED
    gradient = pre_tanh.grad[saturated]
    zero = (gradient == 0).float().mean().item() if len(gradient) else float("nan")
    return saturated.float().mean().item(), gradient.norm().item(), zero


def train_variant(registry, args, before: bool) -> tuple[list[list], float]:
    """The printed rows of one variant's training, and its test mAP."""
    overrides = [f"train.epochs={args.epochs}", "eval.selection=last"]
    if before and args.method == "csq":
        overrides.append("centre_loss=official-clamped")
    config = build_run_config(
        registry, method=args.method, dataset=DATASET, seed=args.seed, overrides=overrides
    )
    splits = load_splits(registry.dataset(DATASET), config.protocol, args.data_root)
    seed_everything(config.seed)
    state = train_state(registry, config, splits, None, torch.device("cpu"))
    pipeline = build_pipeline(splits, config.protocol.data, args.data_root, DATASET)
    sampler, loader = training_batches(config, splits, pipeline, None, state)
    rows, step = [], 0
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        for batch in loader:
            step += 1
            with torch.autocast("cpu", dtype=torch.bfloat16):
                outputs = state.model(batch.images)
            pre_tanh = outputs[HASH_PRE_TANH]
            pre_tanh.retain_grad()
            if before:
                outputs = bf16_tanh_outputs(outputs)
            loss, _ = split_loss(state.criterion(full_precision(outputs), batch))
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            state.scheduler.step()
            if step % args.every == 0:
                rows.append([step, f"{loss.item():.4f}", *saturation(pre_tanh)])
    return rows, test_map(registry, config, state, pipeline)


def test_map(registry, config, state, pipeline) -> float:
    eval_cfg = config.protocol.eval
    figures = evaluate(
        state.model, pipeline.query, pipeline.gallery, dataset=registry.dataset(DATASET),
        method=registry.method(config.method), data_cfg=config.protocol.data,
        batch_size=eval_cfg.batch_size, block_size=eval_cfg.block_size,
        device=torch.device("cpu"), amp=False,
    )  # fmt: skip
    return figures["map@k"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="csq", choices=["csq", "ics"])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    default_root = os.environ.get("BENCH_DATA", Path.home() / ".cache/dmlbench/data")
    parser.add_argument("--data-root", type=Path, default=Path(default_root))
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.method} on {DATASET}, "
        f"cpu-smoke, {args.epochs} epochs, seed {args.seed}, forward under bf16 CPU autocast"
    )
    registry = load_plugins()
    headers = ["step", "loss", f"bits |z|>{SATURATED}", "grad norm there", "zero grad there"]
    for name, before in (("before", True), ("after", False)):
        rows, figure = train_variant(registry, args, before)
        print(f"\n{name}: test mAP {100 * figure:.2f}")
        print(tabulate(rows, headers=headers, floatfmt=".4g"))


if __name__ == "__main__":
    main()
