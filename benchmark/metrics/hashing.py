"""Deep hashing metrics over +-1 codes: mAP@k by Hamming ranking, precision and recall within a
Hamming radius, and the precision-recall curve by radius.

Conventions and pitfalls follow reference/datasets_metrics.md §6: relevant means sharing at
least one label; AP@k divides by the relevant items in the top k and counts a query with none
as 0 (DeepHash-pytorch, CSQ). The reported "map@k" is tie-aware (benchmark/metrics/ties.py).
How: one exact integer matmul per block packs each pair's Hamming distance and shared-label
count into an int32 key; one bincount of the keys gives every histogram the metrics need.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.errors import BenchError
from benchmark.metrics import ties
from benchmark.metrics.intervals import SPREAD_PREFIX, sample_sd

_SIGNED = (torch.int8, torch.int16, torch.int32, torch.int64)


def hash_codes(outputs: Tensor) -> Tensor:
    """+-1 codes as int8 by sign, with 0 mapped to +1: CSQ's `>= 0 -> +1` rule.

    torch.sign would map 0 to 0 and make (bits - q.d)/2 fractional (§6.1 pitfall 2).
    """
    if outputs.is_floating_point() and (nan := int(outputs.isnan().sum())):
        raise BenchError(
            f"hash_codes: outputs contain {nan} NaN values: fix the model or its inputs first"
        )
    return torch.where(outputs >= 0, 1, -1).to(torch.int8)


def hamming_distance(query_codes: Tensor, database_codes: Tensor) -> Tensor:
    """(queries, database) int32 Hamming distances between +-1 codes: (bits - q.d) / 2."""
    _check_codes(query_codes, database_codes, "hamming_distance")
    dtype = _matmul_dtype(query_codes.device, 1)
    left, right = query_codes.to(dtype), database_codes.to(query_codes.device, dtype)
    product = torch.empty(len(left), len(right), dtype=torch.int32, device=left.device)
    return (query_codes.shape[1] - _exact_product(left, right, product)) // 2


def hashing_metrics(
    query_codes: Tensor,
    database_codes: Tensor,
    query_labels: Tensor,
    database_labels: Tensor,
    *,
    top_k: int | None,
    radius: int = 2,
    precision_at: Sequence[int] = (),
    block_size: int = 256,
    spread: bool = False,
) -> dict[str, float]:
    """mAP@k (tie-aware and index order), precision/recall within `radius`, precision@n.

    Labels are (items, classes) multi-hot in {0, 1}. top_k None means the whole database; a
    top_k above the database size is clamped to it. Keys:
    "map@k": expected AP@k over random orders of items tied in distance, the reported figure.
    "map@k_index_order": ties broken by database index (a stable sort), the usual figure.
    f"precision@radius{radius}", f"recall@radius{radius}": the Hamming ball's precision and
    recall (thulab); 0 for a query that retrieves nothing or has nothing relevant.
    f"precision@{n}": expected precision of the top n, tie-aware.
    Every query counts in every mean; "queries_without_relevant" says how many have no
    relevant item in the database (AP 0, CSQ). spread: also "sd:map@k", the per-query sample
    standard deviation of the reported AP, for `benchmark.metrics.intervals`. Runs on
    query_codes' device in blocks of `block_size` queries: memory O(block_size x database).
    """
    inputs = (query_codes, database_codes, query_labels, database_labels)
    _check_inputs(inputs, block_size, "hashing_metrics")
    size, bits = database_codes.shape
    _check_options(top_k, radius, precision_at, size)
    k = size if top_k is None else min(top_k, size)
    radius_column = min(radius, bits)
    blocks = _blocks(inputs, block_size)
    per_query = torch.cat([_per_query(block, k, radius_column, precision_at) for block in blocks])
    *means, _ = per_query.mean(0).tolist()
    names = ["map@k", "map@k_index_order", f"precision@radius{radius}", f"recall@radius{radius}"]
    results = dict(zip(names + [f"precision@{n}" for n in precision_at], means, strict=True))
    lone = int(per_query[:, -1].sum())
    if spread:
        results[f"{SPREAD_PREFIX}map@k"] = sample_sd(per_query[:, 0])
    return results | {"queries": len(query_codes), "queries_without_relevant": lone}


def _per_query(block: _Block, k: int, radius: int, precision_at: Sequence[int]) -> Tensor:
    """(queries, columns) float64: the columns hashing_metrics averages, then 1.0 for a query
    with no relevant item."""
    counts, relevant = block.counts, block.relevant
    nearest = ties.nearest_keys(block.keys, counts, k, block.shift)
    precision, recall = ties.ball_precision_recall(counts, relevant)
    columns = [
        ties.expected_average_precision(counts, relevant, k),
        ties.average_precision_at_k((nearest & (block.slots - 1)) != 0),
        precision[:, radius],
        recall[:, radius],
        *(ties.expected_hits(counts, relevant, n) / n for n in precision_at),
        (relevant.sum(1) == 0).double(),
    ]
    return torch.stack(columns, dim=1)


def pr_by_radius(
    query_codes: Tensor,
    database_codes: Tensor,
    query_labels: Tensor,
    database_labels: Tensor,
    *,
    block_size: int = 256,
) -> dict[str, list]:
    """Precision and recall of the Hamming ball of each radius 0..bits, mean over queries
    (thulab's curve; a query retrieving nothing has precision 0)."""
    inputs = (query_codes, database_codes, query_labels, database_labels)
    _check_inputs(inputs, block_size, "pr_by_radius")
    balls = [ties.ball_precision_recall(b.counts, b.relevant) for b in _blocks(inputs, block_size)]
    # Summed over all queries at once, so the result does not depend on block_size.
    curves = torch.cat([torch.stack(ball, 1) for ball in balls])
    precision, recall = (curves.sum(0) / len(query_codes)).tolist()
    return {"radius": list(range(len(precision))), "precision": precision, "recall": recall}


@dataclass(frozen=True)
class _Block:
    """One block of queries against the whole database."""

    keys: Tensor  # (queries, database) int32: slots * Hamming distance + labels shared
    slots: int  # a power of two above the most labels two items share
    counts: Tensor  # (queries, bits + 1) float64: items at each distance
    relevant: Tensor  # (queries, bits + 1) float64: relevant items at each distance

    @property
    def shift(self) -> int:
        """keys >> shift is the Hamming distance."""
        return self.slots.bit_length() - 1


def _blocks(inputs: tuple[Tensor, ...], block_size: int) -> Iterator[_Block]:
    """Yield a _Block per `block_size` queries, on query_codes' device. Every block's keys
    live in one buffer, overwritten by the next block (fresh allocations cost page faults)."""
    query_codes, database_codes, query_labels, database_labels = inputs
    device, bits = query_codes.device, query_codes.shape[1]
    query_labels, database_labels = query_labels.to(device), database_labels.to(device)
    shared = min(int(query_labels.sum(1).max()), int(database_labels.sum(1).max()))
    # One int32 key holds both numbers; a shift and a mask take them apart.
    slots = max(2, 1 << shared.bit_length())
    width = slots * (bits + 1)
    if width >= 2**24 or width * block_size >= 2**31:
        raise BenchError(
            f"hashing: {bits} bits with items sharing up to {shared} labels overflow int32 keys "
            f"in blocks of {block_size} queries: pass a smaller block_size"
        )
    # [-slots/2 q, q_labels] . [d, d_labels] + slots bits / 2 = slots (bits - q.d) / 2 + shared.
    dtype = _matmul_dtype(device, slots // 2)
    queries = torch.cat([query_codes.to(dtype) * -(slots // 2), query_labels.to(dtype)], 1)
    database = torch.cat([database_codes.to(device, dtype), database_labels.to(dtype)], 1)
    buffer = torch.empty(
        min(block_size, len(queries)), len(database), dtype=torch.int32, device=device
    )
    # A per-query offset lets one flat bincount histogram the whole block.
    offset = torch.arange(len(buffer), device=device, dtype=torch.int32)[:, None] * width
    for start in range(0, len(queries), block_size):
        block = queries[start : start + block_size]
        keys, rows = _exact_product(block, database, buffer[: len(block)]), offset[: len(block)]
        keys += rows + slots * bits // 2
        counts = keys.view(-1).bincount(minlength=len(keys) * width)
        keys -= rows
        counts = counts.view(len(keys), bits + 1, slots).double()
        totals = counts.sum(2)
        yield _Block(keys, slots, totals, totals - counts[:, :, 0])


def _matmul_dtype(device: torch.device, largest: int) -> torch.dtype:
    """int8 on CPU, where int8 x int8 -> int32 is about twice as fast as float32; else float32."""
    fast_int8 = hasattr(torch, "_int_mm")  # private API: fall back to float32 where absent
    return torch.int8 if fast_int8 and device.type == "cpu" and largest <= 127 else torch.float32


def _exact_product(queries: Tensor, database: Tensor, out: Tensor) -> Tensor:
    """queries @ database.T into the int32 `out`, exact for the small integers used here."""
    if queries.dtype == torch.int8:
        return torch._int_mm(queries, database.T, out=out)
    # Entries are small integers, exact even under TF32 or bf16 matmul modes, and every
    # partial sum stays below 2**24, so float32 accumulation is exact too.
    return out.copy_(queries @ database.T)


def _check_inputs(inputs: tuple[Tensor, ...], block_size: int, where: str) -> None:
    query_codes, database_codes, query_labels, database_labels = inputs
    _check_codes(query_codes, database_codes, where)
    _check_labels("query_labels", query_labels, len(query_codes), where)
    _check_labels("database_labels", database_labels, len(database_codes), where)
    if query_labels.shape[1] != database_labels.shape[1]:
        raise BenchError(
            f"{where}: query_labels has {query_labels.shape[1]} classes and "
            f"database_labels {database_labels.shape[1]}: both must use the same label columns"
        )
    if not _at_least(block_size, 1):
        raise BenchError(f"{where}: block_size={block_size!r}: expected an int >= 1")


def _check_codes(query_codes: Tensor, database_codes: Tensor, where: str) -> None:
    for name, codes in (("query_codes", query_codes), ("database_codes", database_codes)):
        if codes.ndim != 2 or 0 in codes.shape:
            raise BenchError(
                f"{where}: {name} has shape {tuple(codes.shape)}: expected a non-empty "
                "(items, bits) matrix of +-1 codes, e.g. hash_codes(outputs)"
            )
        if codes.dtype not in _SIGNED and not codes.is_floating_point():
            raise BenchError(
                f"{where}: {name} has dtype {codes.dtype}: expected +-1 codes as int8 "
                "(hash_codes(outputs)) or another signed integer or float dtype"
            )
        if bad := int((codes.abs() != 1).sum()):
            raise BenchError(
                f"{where}: {name} has {bad} entries that are not +-1: binarise with "
                "hash_codes(outputs), which maps 0 to +1"
            )
    if query_codes.shape[1] != database_codes.shape[1]:
        raise BenchError(
            f"{where}: query_codes has {query_codes.shape[1]} bits but database_codes "
            f"{database_codes.shape[1]}: both must come from the same hash layer"
        )


def _check_labels(name: str, labels: Tensor, rows: int, where: str) -> None:
    if labels.ndim != 2 or len(labels) != rows:
        raise BenchError(
            f"{where}: {name} has shape {tuple(labels.shape)} for {rows} codes: "
            f"expected multi-hot ({rows}, classes); one-hot encode single labels first"
        )
    if bad := int(((labels != 0) & (labels != 1)).sum()):
        raise BenchError(
            f"{where}: {name} has {bad} entries that are not 0 or 1: "
            "expected multi-hot (items, classes) labels"
        )


def _check_options(top_k, radius, precision_at, size: int) -> None:
    if top_k is not None and not _at_least(top_k, 1):
        raise BenchError(
            f"hashing_metrics: top_k={top_k!r}: expected an int >= 1, or None for the whole "
            "database"
        )
    if not _at_least(radius, 0):
        raise BenchError(f"hashing_metrics: radius={radius!r}: expected an int >= 0")
    if any(not _at_least(n, 1) or n > size for n in precision_at):
        raise BenchError(
            f"hashing_metrics: precision_at={list(precision_at)}: expected ints from 1 to "
            f"the database size, {size}"
        )


def _at_least(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
