"""Time hashing_metrics against a naive numpy loop on a COCO-sized problem, in one process.

5,000 queries x 117,218 database items, 64-bit codes, 80 classes with about 3 labels per image
(no image without one, as in COCO). Each code is the sign of its labels' class centres plus
noise, so mAP@5000 is far from trivial. The naive reference is DeepHash-pytorch's CalcTopMap
(one query at a time) with a stable argsort; it is timed on a subset of queries and
extrapolated, and must agree with "map@k_index_order" on that subset.

    .venv/bin/python benchmarks/hashing_speed.py [--device cuda] [--reference-queries 200]

Prefix OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 to compare both sides on one thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc

import numpy as np
import torch

from benchmark.metrics.hashing import hash_codes, hashing_metrics

QUERIES, DATABASE, BITS, CLASSES, TOP_K = 5_000, 117_218, 64, 80, 5_000


def coco_like(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Query codes, database codes, query labels, database labels (CPU tensors)."""
    generator = torch.Generator().manual_seed(seed)
    size = QUERIES + DATABASE
    # Skewed class frequencies (COCO's "person" is in about half the images), 2.9 on average.
    frequency = 1 / torch.arange(1, CLASSES + 1) ** 0.8
    frequency = (frequency * 2.9 / frequency.sum()).clamp(max=0.5)
    labels = torch.rand(size, CLASSES, generator=generator) < frequency
    lone = ~labels.any(1)
    labels[lone, torch.randint(0, CLASSES, (int(lone.sum()),), generator=generator)] = True
    centres = torch.randn(CLASSES, BITS, generator=generator).sign()
    signal = labels.float() @ centres / labels.sum(1, keepdim=True).sqrt()
    codes = hash_codes(signal + 1.5 * torch.randn(size, BITS, generator=generator))
    labels = labels.to(torch.int8)
    return codes[:QUERIES], codes[QUERIES:], labels[:QUERIES], labels[QUERIES:]


def naive_map(query_codes, database_codes, query_labels, database_labels, top_k: int) -> float:
    """DeepHash-pytorch CalcTopMap, one query at a time, with a stable argsort."""
    total = 0.0
    for code, labels in zip(query_codes, query_labels, strict=True):
        relevant = (database_labels @ labels > 0).astype(np.float32)
        distance = 0.5 * (len(code) - database_codes @ code)
        ranked = relevant[np.argsort(distance, kind="stable")][:top_k]
        hits = int(ranked.sum())
        if hits:
            total += np.mean(np.arange(1, hits + 1) / (np.flatnonzero(ranked) + 1.0))
    return total / len(query_codes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference-queries", type=int, default=200)
    parser.add_argument("--block-size", type=int, default=1024)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
        f"threads, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
        f"{device}; load average {os.getloadavg()[0]:.2f} (other processes slow both sides)"
    )
    if device.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(device)}")
    print(f"{QUERIES} queries x {DATABASE} items, {BITS} bits, {CLASSES} classes, mAP@{TOP_K}")
    data = coco_like()
    fast = _time_hashing_metrics(data, device, args.block_size)
    naive, reference = _time_naive(data, args.reference_queries)
    subset = [tensor[: args.reference_queries] for tensor in data]
    check = hashing_metrics(subset[0], data[1], subset[2], data[3], top_k=TOP_K)
    print(
        f"  its mAP@{TOP_K} on those queries {reference:.6f}, "
        f"map@k_index_order {check['map@k_index_order']:.6f}"
    )
    print(f"speed-up: {naive / fast:.1f}x; load average {os.getloadavg()[0]:.2f}")
    if abs(reference - check["map@k_index_order"]) > 1e-9:
        raise SystemExit("the naive reference and map@k_index_order disagree")


def _time_hashing_metrics(
    data: tuple[torch.Tensor, ...], device: torch.device, block: int
) -> float:
    on_device = [tensor.to(device) for tensor in data]
    few = [on_device[0][:8], on_device[1], on_device[2][:8], on_device[3]]
    hashing_metrics(*few, top_k=TOP_K)  # warm-up: one-off allocations and kernel loading
    resident = _resident_mib()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    results = hashing_metrics(*on_device, top_k=TOP_K, block_size=block)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        memory = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB of GPU memory"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        memory = f"{peak - resident:.0f} MiB above the resident data (max RSS)"
    seconds = time.perf_counter() - start
    print(
        f"hashing_metrics (block_size {block}): {seconds:.2f} s for all {QUERIES} queries; "
        f"map@k {results['map@k']:.6f}, map@k_index_order {results['map@k_index_order']:.6f}; "
        f"peak {memory}"
    )
    return seconds


def _time_naive(data: tuple[torch.Tensor, ...], queries: int) -> tuple[float, float]:
    """Seconds extrapolated to all queries from the first `queries`, and their mAP."""
    arrays = [tensor.float().numpy() for tensor in data]
    arrays[0], arrays[2] = arrays[0][:queries], arrays[2][:queries]
    tracemalloc.start()
    start = time.perf_counter()
    reference = naive_map(*arrays, TOP_K)
    seconds = (time.perf_counter() - start) * QUERIES / queries
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(
        f"naive reference: timed on the first {queries} queries and extrapolated "
        f"x{QUERIES / queries:g}: {seconds:.1f} s; peak {peak:.0f} MiB (tracemalloc)"
    )
    return seconds, reference


def _resident_mib() -> float:
    """Current resident memory (Linux), so max RSS minus it is the run's own peak."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    main()
