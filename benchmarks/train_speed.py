"""Images per second of the harness's training step against a bare loop of the same model.

    .venv/bin/python benchmarks/train_speed.py [--device cpu|cuda] [--backbone convnet-small]
        [--image-size 56] [--classes-per-batch 8] [--iterations 10] [--warmup 5] [--repeats 5]
        [--amp] [--channels-last] [--compile] [--pipeline prepared|plain] [--num-workers 0]

On a GPU: --device cuda --backbone resnet50 --image-size 224 --amp (and --channels-last).
Both loops train the model, criterion (ms) and optimizer that a run of cpu-smoke with these
overrides builds (benchmark.engine.run.train_state: backbone without pretrained weights,
embedding head, Adam, cosine schedule, speed options), in one process:
  harness  benchmark.engine.train.train_epoch over the run's training batches: the synth-cub
           training split, its P x K sampler and DataLoader (num_workers as given), the
           prepared uint8 cache augmented on the device (or, with --pipeline plain, PIL decoding
           and torchvision transforms with the in-memory cache warmed first), the copy to the
           device, forward, loss, backward, optimizer and schedule steps, and the logging (the
           loss read back from the device every 25 steps and at the pass's end)
  bare     one batch of random images and labels made once on the device; per step only
           forward, loss, backward and optimizer step
Images are P x K per step (K = 4). Each loop runs --warmup untimed steps, then the two take
turns --repeats times over --iterations steps; the fastest pass of each is shown, and the median
over the turns of (bare time / harness time), which a machine shared with other work disturbs
less than either figure alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tabulate import tabulate

from benchmark.config import build_run_config
from benchmark.data.datasets.synth import ensure_synth_cub
from benchmark.data.pipeline import build_pipeline
from benchmark.data.prepared import prepare_dataset
from benchmark.engine.loop import training_batches
from benchmark.engine.precision import autocast
from benchmark.engine.run import load_splits, seed_everything, train_state
from benchmark.engine.train import TrainState, full_precision, split_loss, train_epoch
from benchmark.plugins import load_plugins
from benchmark.specs import Batch

SAMPLES_PER_CLASS = 4


def run_config(registry, args):
    resize = round(args.image_size * 64 / 56)  # cpu-smoke's resize / crop
    overrides = [
        f"model.backbone={args.backbone}",
        f"data.resize={resize}",
        f"data.crop={args.image_size}",
        f"data.classes_per_batch={args.classes_per_batch}",
        f"data.num_workers={args.num_workers}",
        f"train.iterations_per_epoch={args.iterations}",
        f"train.amp={'true' if args.amp else 'false'}",
        f"train.channels_last={'true' if args.channels_last else 'false'}",
        f"train.compile={'true' if args.compile else 'false'}",
        "eval.selection=last",
    ]
    return build_run_config(
        registry, method="ms", dataset="synth-cub", protocol="cpu-smoke", overrides=overrides
    )


class Steps:
    """The first `count` batches of a loader, with the loader's dataset (for train_epoch)."""

    def __init__(self, loader, count: int) -> None:
        self.loader, self.count, self.dataset = loader, count, loader.dataset

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for step, batch in enumerate(self.loader):
            if step == self.count:
                return
            yield batch


def harness_loader(config, splits, data_root: Path, harness: TrainState, pipeline: str):
    """The run's own training batches (benchmark.engine.loop.training_batches)."""
    data_cfg = config.protocol.data
    if pipeline == "prepared":
        prepare_dataset(splits, data_root, config.dataset, data_cfg.resize, data_cfg.crop)
    built = build_pipeline(splits, data_cfg, data_root, config.dataset)
    assert built.name == pipeline, f"wanted the {pipeline} pipeline, got {built.name}"
    return training_batches(config, splits, built, None, harness)[1]


def warm_plain_cache(loader) -> None:
    """Decode every training image once (cpu-smoke caches them: later epochs never decode)."""
    dataset = loader.dataset
    for index in range(len(dataset)):
        dataset.decoded(index)


def bare_batch(config, splits, device: torch.device) -> Batch:
    data_cfg = config.protocol.data
    classes = torch.as_tensor(sorted(set(splits.train.labels.tolist())))[
        : data_cfg.classes_per_batch
    ]
    labels = classes.repeat_interleave(SAMPLES_PER_CLASS).to(device)
    size = data_cfg.crop
    images = torch.randn(len(labels), 3, size, size, device=device)
    return Batch(images, labels, torch.arange(len(labels), device=device))


def bare_step(state: TrainState, batch: Batch) -> None:
    with autocast(state.device, state.amp):
        outputs = state.model(batch.images)
    loss, _ = split_loss(state.criterion(full_precision(outputs), batch))
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.step(state.optimizer)
    state.scaler.update()


def timed(run: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def measure(args) -> tuple[float, float, float, int]:
    """(harness images/s, bare images/s, the fastest of --repeats passes each; the median
    ratio of paired passes; images per step)."""
    device = torch.device(args.device)
    registry = load_plugins()
    with tempfile.TemporaryDirectory(prefix="train-speed-") as temp:
        root = Path(temp)
        ensure_synth_cub(root)
        config = run_config(registry, args)
        splits = load_splits(registry.dataset(config.dataset), config.protocol, root)
        seed_everything(config.seed)
        harness = train_state(registry, config, splits, None, device)
        bare = train_state(registry, config, splits, None, device)
        loader = harness_loader(config, splits, root, harness, args.pipeline)
        if args.pipeline == "plain":
            warm_plain_cache(loader)
        batch = bare_batch(config, splits, device)
        bare.model.train()
        bare.criterion.train()
        train_epoch(harness, Steps(loader, args.warmup), 0, False)
        for _ in range(args.warmup):
            bare_step(bare, batch)
        if args.profile:
            profile(lambda: train_epoch(harness, loader, 1, False), device, args.profile)
        harness_s, bare_s = [], []
        for _ in range(args.repeats):
            harness_s.append(timed(lambda: train_epoch(harness, loader, 1, False), device))
            bare_s.append(
                timed(lambda: [bare_step(bare, batch) for _ in range(args.iterations)], device)
            )
    images = args.iterations * len(batch.labels)
    ratio = statistics.median(b / h for h, b in zip(harness_s, bare_s, strict=True))
    return images / min(harness_s), images / min(bare_s), ratio, len(batch.labels)


def profile(run: Callable[[], None], device: torch.device, rows: int) -> None:
    """torch.profiler's table of one pass, by host time and by device time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profiler(activities=activities) as recorded:
        timed(run, device)
    averages = recorded.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
    if device.type == "cuda":
        print(averages.table(sort_by="self_cuda_time_total", row_limit=rows))


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--backbone", default="convnet-small")
    parser.add_argument("--image-size", type=int, default=56, help="crop side (cpu-smoke: 56)")
    parser.add_argument("--classes-per-batch", type=int, default=8, help="P of P x 4")
    parser.add_argument("--iterations", type=int, default=10, help="steps per timed pass")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--pipeline", choices=("prepared", "plain"), default="prepared")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N",
        help="also profile one harness pass and print its N costliest operations",
    )  # fmt: skip
    args = parser.parse_args()
    harness, bare, ratio, per_step = measure(args)
    print(f"torch {torch.__version__} on {args.device}: {device_name(args.device)}")
    row = [
        args.backbone, f"{args.image_size}", f"{per_step}", args.pipeline,
        "on" if args.amp else "off", "on" if args.channels_last else "off",
        "on" if args.compile else "off", f"{harness:,.1f}", f"{bare:,.1f}",
        f"{harness / bare:.0%}", f"{ratio:.0%}",
    ]  # fmt: skip
    headers = ["backbone", "size", "batch", "pipeline", "amp", "ch-last", "compile",
               "harness img/s", "bare img/s", "fastest ratio",
               "median ratio"]  # fmt: skip
    print(tabulate([row], headers=headers, tablefmt="simple", disable_numparse=True))


if __name__ == "__main__":
    main()
