"""Images per second of the prepared cache against the plain PIL + torchvision pipeline.

    .venv/bin/python benchmarks/data_speed.py [--device cpu|cuda] [--images 2000] [--data-root DIR]

Every pipeline reads the same synth-cub training images in the same P x K batches (8 x 4, as
cpu-smoke), in one process (DataLoader num_workers=0), and hands the batch on --device:
  plain      loading.ImageDataset without its cache + DataLoader + collate: PIL decode, resize and
             the torchvision transforms, image by image, every epoch
  plain+mem  the same with its in-memory cache of resized PIL images (cpu-smoke sets
             `cache: true`), timed on a second pass over the same batches
  prepared   PreparedDataset (uint8 memmap) + DataLoader + collate, then augment_batch on --device
Settings:
  cpu-smoke  resize 64, crop 56, random-crop + flip, on the 64x64 synth-cub JPEGs as they are
  realistic  resize 256, crop 224, random-resized-crop + flip, on copies of the synth-cub images
             UPSCALED to 500x375 (about CUB's size; JPEG quality 90) so that decoding costs what
             it does on real photographs
"prepare s" is the one-off cost of building the training split's cache; the timed passes read
it from the page cache. The pipelines take turns, --repeats times; the fastest pass is shown.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tabulate import tabulate

from benchmark.data.datasets.cub import load_cub
from benchmark.data.datasets.synth import ensure_synth_cub
from benchmark.data.loading import ImageDataset, build_transform, collate
from benchmark.data.prepared import PreparedDataset, augment_batch, prepare_split
from benchmark.data.samplers import PKSampler
from benchmark.specs import ImageSet

UPSCALED_SIZE = (500, 375)
CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 8, 4


@dataclass(frozen=True)
class Setting:
    name: str
    resize: int
    crop: int
    augment: str
    upscale: bool


SETTINGS = (
    Setting("cpu-smoke", 64, 56, "random-crop", False),
    Setting("realistic", 256, 224, "random-resized-crop", True),
)


def data_cfg(setting: Setting) -> dict:
    return {
        "resize": setting.resize,
        "crop": setting.crop,
        "augment": setting.augment,
        "hflip": True,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }


def upscaled(images: ImageSet, folder: Path) -> ImageSet:
    """Copies of the images at UPSCALED_SIZE, written once into `folder`."""
    paths = []
    for index, path in enumerate(images.paths):
        target = folder / f"{index:05d}.jpg"
        if not target.exists():
            with Image.open(path) as image:
                image.convert("RGB").resize(UPSCALED_SIZE, Image.BICUBIC).save(target, quality=90)
        paths.append(target)
    return ImageSet(tuple(paths), images.labels, images.attributes, images.attribute_mask)


def loader(dataset, sampler: PKSampler, device: torch.device) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, pin_memory=device.type == "cuda"
    )


def images_per_second(batches: Iterable[torch.Tensor], device: torch.device) -> float:
    """Consume the batches (images on `device`); images per second."""
    count, start = 0, time.perf_counter()
    for images in batches:
        count += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count / (time.perf_counter() - start)


def plain_batches(dataset: ImageDataset, sampler: PKSampler, device: torch.device):
    for batch in loader(dataset, sampler, device):
        yield batch.images.to(device, non_blocking=True)


def prepared_batches(dataset, sampler, device: torch.device, cfg: dict):
    generator = torch.Generator().manual_seed(0)
    for batch in loader(dataset, sampler, device):
        images = batch.images.to(device, non_blocking=True)
        yield augment_batch(images, cfg, train=True, generator=generator)


def fastest(runs: list, device: torch.device, repeats: int) -> list[float]:
    """The best images per second of each run; runs take turns, so that noise from other
    processes on a shared machine hits them all alike."""
    best = [0.0] * len(runs)
    for _ in range(repeats):
        for index, run in enumerate(runs):
            best[index] = max(best[index], images_per_second(run(), device))
    return best


def measure(setting: Setting, images: ImageSet, work: Path, args) -> list[str]:
    """One row of the table: the three pipelines on `images` at `setting`."""
    device, cfg = torch.device(args.device), data_cfg(setting)
    if setting.upscale:
        folder = work / f"upscaled-{UPSCALED_SIZE[0]}x{UPSCALED_SIZE[1]}"
        folder.mkdir(exist_ok=True)
        images = upscaled(images, folder)
    iterations = args.images // (CLASSES_PER_BATCH * SAMPLES_PER_CLASS)
    sampler = PKSampler(images.labels, CLASSES_PER_BATCH, SAMPLES_PER_CLASS, iterations, seed=0)
    transform = build_transform(cfg, train=True)
    plain = ImageDataset(images, setting.resize, transform, cache=False)
    memory = ImageDataset(images, setting.resize, transform, cache=True)
    images_per_second(plain_batches(memory, sampler, device), device)  # fills its cache
    start = time.perf_counter()
    prepared = prepare_split(images, setting.resize, setting.crop, work / f"{setting.name}-train")
    prepare_seconds = time.perf_counter() - start
    fast = PreparedDataset(images, prepared)
    runs = [
        lambda: plain_batches(plain, sampler, device),
        lambda: plain_batches(memory, sampler, device),
        lambda: prepared_batches(fast, sampler, device, cfg),
    ]
    speeds = fastest(runs, device, args.repeats)
    print(f"{setting.name}: {iterations} batches of 32, prepared in {prepare_seconds:.1f} s")
    return [
        f"{setting.name} {setting.resize}/{setting.crop}",
        setting.augment,
        *(f"{speed:,.0f}" for speed in speeds),
        f"{speeds[2] / speeds[0]:.1f}x",
        f"{speeds[2] / speeds[1]:.1f}x",
        f"{prepare_seconds:.1f}",
        args.device,
        str(os.cpu_count()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--images", type=int, default=2000, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-root", type=Path, help="default: a temporary folder")
    parser.add_argument("--settings", nargs="+", choices=[s.name for s in SETTINGS])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    )
    print(
        f"torch {torch.__version__} on {args.device} ({device_name}), {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, DataLoader num_workers=0",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="data-speed-") as temp:
        root = args.data_root or Path(temp)
        train = load_cub(ensure_synth_cub(root)).train
        rows = [
            measure(setting, train, Path(temp), args)
            for setting in SETTINGS
            if args.settings is None or setting.name in args.settings
        ]
    headers = [
        "setting",
        "augment",
        "plain img/s",
        "plain+mem img/s",
        "prepared img/s",
        "vs plain",
        "vs plain+mem",
        "prepare s",
        "device",
        "cores",
    ]
    print(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


if __name__ == "__main__":
    main()
