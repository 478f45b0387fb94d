"""Time the exact retrieval metrics against pytorch-metric-learning and a bare matmul + topk.

    .venv/bin/python benchmarks/retrieval_speed.py [--device cpu|cuda] [--block-size 256]

Two workloads on random clustered embeddings (512-d, cosine), in one process on the same data:
  inshop  14,218 queries x 12,612 gallery, 3,985 items, Recall@{1,10,20,30,40,50}
  cub     5,924 x 5,924 leave-one-out, 100 classes, Recall@{1,2,4,8}
Rows:
  ours   benchmark.metrics.retrieval.retrieval_metrics, its default set (Recall@K,
         precision@1, r_precision, map@r), exact (score, index) tie-breaking
  pml    AccuracyCalculator(k="max_bin_count") for precision_at_1, r_precision and
         mean_average_precision_at_r, with CustomKNN(CosineSimilarity(), batch_size=block):
         faiss is not installed here, so this is PML's torch k-NN, not its faiss default
  floor  the blocked matmul + torch.topk alone, same block size and the k ours uses per block
         (max(max K, max R in the block), +1 leave-one-out), no metrics
Each is run --repeats times, taking turns; the fastest run is shown. "max |diff|" is the
largest difference between ours and PML over the three shared metrics. Peak memory comes from
one more, untimed call of each: the rise over its start, in resident set size sampled every
millisecond on the CPU, in the allocator's peak on CUDA.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tabulate import tabulate

from benchmark.metrics.retrieval import retrieval_metrics


@dataclass(frozen=True)
class Workload:
    name: str
    num_queries: int
    num_gallery: int  # 0: leave-one-out on the queries
    num_classes: int
    recall_at: tuple[int, ...]
    noise: float  # set so that Recall@1 is roughly what trained models reach


WORKLOADS = (
    Workload("inshop", 14_218, 12_612, 3_985, (1, 10, 20, 30, 40, 50), 2.2),
    Workload("cub", 5_924, 0, 100, (1, 2, 4, 8), 3.6),
)
PML_NAMES = {
    "precision@1": "precision_at_1",
    "r_precision": "r_precision",
    "map@r": "mean_average_precision_at_r",
}


def spread_labels(count: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Every class at least once, the rest at random (so class sizes vary), shuffled."""
    extra = torch.randint(0, num_classes, (count - num_classes,), generator=generator)
    labels = torch.cat([torch.arange(num_classes), extra])
    return labels[torch.randperm(count, generator=generator)]


def clustered(labels, centres, noise: float, generator: torch.Generator) -> torch.Tensor:
    """Unit-norm class centres plus isotropic noise of norm about `noise`: overlapping classes."""
    offsets = torch.randn(len(labels), centres.shape[1], generator=generator)
    return centres[labels] + noise * offsets / centres.shape[1] ** 0.5


def make_data(workload: Workload, dim: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(workload.num_classes, dim, generator=generator), dim=1)
    query_labels = spread_labels(workload.num_queries, workload.num_classes, generator)
    query = clustered(query_labels, centres, workload.noise, generator)
    if not workload.num_gallery:
        return query, query, query_labels, query_labels
    gallery_labels = spread_labels(workload.num_gallery, workload.num_classes, generator)
    return (
        query,
        clustered(gallery_labels, centres, workload.noise, generator),
        query_labels,
        gallery_labels,
    )


def peak_memory_mib(function: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one call above the level at its start, in MiB: on CUDA the allocator's
    peak; on the CPU the resident set size, sampled every millisecond from another thread,
    after malloc_trim has handed freed heap pages back (else reused pages would not show)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        function()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - start) / 2**20
    gc.collect()
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    start, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    function()
    done.set()
    sampler.join()
    return max(0, max(peak[0], rss_bytes()) - start) / 2**20


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def block_widths(query_labels, gallery_labels, recall_at, exclude_self, block_size) -> list[int]:
    """The k ours takes per block: max(max K, max R in the block), +1 leave-one-out."""
    labels, counts = torch.unique(gallery_labels, return_counts=True)
    at = torch.searchsorted(labels, query_labels).clamp(max=len(labels) - 1)
    relevant = torch.where(labels[at] == query_labels, counts[at], 0) - int(exclude_self)
    relevant = relevant.sort().values  # ours goes through the queries in order of R
    blocks = relevant.split(block_size)
    return [max(max(recall_at), int(block.max())) + int(exclude_self) for block in blocks]


def floor(query, gallery, widths: list[int], block_size: int) -> None:
    query, gallery = F.normalize(query, dim=1), F.normalize(gallery, dim=1)
    for block, width in zip(query.split(block_size), widths, strict=True):
        (block @ gallery.T).topk(width, dim=1)


def ours(query, gallery, query_labels, gallery_labels, workload: Workload, block_size: int):
    return retrieval_metrics(
        query,
        gallery,
        query_labels,
        gallery_labels,
        recall_at=workload.recall_at,
        exclude_self=not workload.num_gallery,
        distance="cosine",
        block_size=block_size,
    )


def pml(query, gallery, query_labels, gallery_labels, workload: Workload, block_size: int):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calculator = AccuracyCalculator(
        include=tuple(PML_NAMES.values()),
        k="max_bin_count",
        device=query.device,
        knn_func=CustomKNN(CosineSimilarity(), batch_size=block_size),
    )
    return calculator.get_accuracy(
        query, query_labels, gallery, gallery_labels, ref_includes_query=not workload.num_gallery
    )


def timed(runs: dict[str, Callable[[], object]], device: torch.device, repeats: int):
    """name -> (result, fastest seconds); runs take turns, so that noise from other processes
    on a shared machine hits them all alike."""
    best = {name: (None, float("inf")) for name in runs}
    for _ in range(repeats):
        for name, function in runs.items():
            start = time.perf_counter()
            result = function()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            if seconds < best[name][1]:
                best[name] = (result, seconds)
    return best


def run_workload(workload: Workload, args: argparse.Namespace) -> list[list[str]]:
    device = torch.device(args.device)
    data = [x.to(device) for x in make_data(workload, args.dim, args.seed)]
    query, gallery, query_labels, gallery_labels = data
    exclude_self = not workload.num_gallery
    widths = block_widths(
        query_labels, gallery_labels, workload.recall_at, exclude_self, args.block_size
    )
    runs = {
        "floor": lambda: floor(query, gallery, widths, args.block_size),
        "ours": lambda: ours(*data, workload, args.block_size),
        "pml": lambda: pml(*data, workload, args.block_size),
    }
    timings = timed(runs, device, args.repeats)
    memory = {name: peak_memory_mib(function, device) for name, function in runs.items()}
    ours_values, pml_values = timings["ours"][0], timings["pml"][0]
    diff = max(abs(ours_values[key] - pml_values[name]) for key, name in PML_NAMES.items())
    floor_seconds = timings["floor"][1]
    rows = []
    for name, (_, seconds) in timings.items():
        rows.append(
            [
                workload.name,
                name,
                f"{seconds:.3f}",
                f"{seconds / floor_seconds:.2f}",
                f"{diff:.1e}" if name == "pml" else "",
                f"{memory[name]:.0f}",
            ]
        )
    shown = ", ".join(f"{key} {ours_values[key]:.4f}" for key in ("recall@1", *PML_NAMES))
    print(
        f"{workload.name}: {len(query)} x {len(gallery)}, {args.dim}-d, "
        f"k per block {min(widths)}..{max(widths)}; ours: {shown}",
        flush=True,
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workloads", nargs="+", choices=[w.name for w in WORKLOADS])
    args = parser.parse_args()
    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    )
    print(
        f"torch {torch.__version__} on {args.device} ({device_name}), "
        f"{torch.get_num_threads()} threads, block size {args.block_size}; "
        "PML k-NN: CustomKNN on torch (faiss not installed)",
        flush=True,
    )
    rows = []
    for workload in WORKLOADS:
        if args.workloads is None or workload.name in args.workloads:
            rows += run_workload(workload, args)
    headers = ["workload", "method", "seconds", "x floor", "max |diff| vs ours", "peak MiB"]
    print(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


if __name__ == "__main__":
    main()
