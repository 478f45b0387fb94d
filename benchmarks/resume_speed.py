"""Size and seconds of the resume checkpoint a run writes at every evaluation interval.

    .venv/bin/python benchmarks/resume_speed.py [--protocol std-dml-512] [--method ms]
                                                [--dir DIR] [--repeats 3]

Builds the protocol's model with random weights (nothing is downloaded) and the method's
criterion for 100 classes, takes one optimizer step on a batch of two random images so that
the optimizer holds its state, offers the weights to the best-weights selection, then times, on
the CPU, `save_resume_point` (torch.save to a temporary file in --dir, then a rename) and
`load_resume_point` + `restore_progress` (weights_only load, then every state put back). The
fastest of --repeats is shown; the file is in the page cache when it is read back. For
retrieval methods (the run is set up on cub): a hashing method is refused with its reason.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from benchmark.config import build_run_config
from benchmark.engine.loop import BestWeights
from benchmark.engine.optim import build_optimizer, build_scheduler
from benchmark.engine.precision import grad_scaler
from benchmark.engine.resume import (
    RunProgress,
    load_resume_point,
    restore_progress,
    save_resume_point,
)
from benchmark.engine.run import Timer
from benchmark.engine.train import TrainState, split_loss
from benchmark.models.model import build_model
from benchmark.plugins import load_plugins
from benchmark.specs import Batch, BuildContext

CLASSES = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="std-dml-512")
    parser.add_argument("--method", default="ms")
    parser.add_argument("--dir", type=Path, default=None, help="[default: a temporary folder]")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    registry = load_plugins()
    config = build_run_config(registry, method=args.method, dataset="cub", protocol=args.protocol)
    progress = trained_progress(registry, config)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "run.resume.pt"
        save, load = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            save_resume_point(path, progress, 1, config)
            save.append(time.perf_counter() - started)
            started = time.perf_counter()
            restore_progress(load_resume_point(path, config), progress)
            load.append(time.perf_counter() - started)
        size = path.stat().st_size
    parameters = sum(p.numel() for p in progress.state.model.parameters())
    row = [args.protocol, config.protocol.model.backbone, args.method,
           f"{parameters / 1e6:.1f}", f"{size / 2**20:.0f}", f"{min(save):.2f}",
           f"{min(load):.2f}"]  # fmt: skip
    headers = ["protocol", "backbone", "method", "parameters M", "file MiB", "save s", "load s"]
    print(tabulate([row], headers=headers))
    print(f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; folder {args.dir or tempfile.gettempdir()}")  # fmt: skip


def trained_progress(registry, config) -> RunProgress:
    """The run's objects after one optimizer step, with best weights kept."""
    model_cfg, train_cfg = config.protocol.model, config.protocol.train
    method, cpu = registry.method(config.method), torch.device("cpu")
    backbone = registry.backbone(model_cfg.backbone).build(None)
    model = build_model(backbone, method.heads, model_cfg)
    context = BuildContext(
        hparams=dict(config.hparams), embedding_dim=model_cfg.embedding_dim,
        num_classes=CLASSES, num_train_images=5864, num_attributes=0, device=cpu,
        class_ids=tuple(range(CLASSES)),
    )  # fmt: skip
    criterion = method.build(context)
    optimizer = build_optimizer(model, criterion, train_cfg)
    scheduler = build_scheduler(optimizer, 100, train_cfg.schedule)
    state = TrainState(model, criterion, optimizer, scheduler, grad_scaler(cpu, False), cpu, False)
    crop = config.protocol.data.crop
    batch = Batch(torch.randn(2, 3, crop, crop), torch.tensor([0, 0]), torch.arange(2))
    loss, _ = split_loss(criterion(model(batch.images), batch))
    loss.backward()
    optimizer.step()
    best = BestWeights("recall@1")
    best.offer(1, {"recall@1": 0.5}, state)
    return RunProgress(state, best, [], Timer(), None, [])


if __name__ == "__main__":
    main()
