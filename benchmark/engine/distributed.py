"""Training on several processes with torch.distributed, as torchrun starts them.

Under torchrun (`bench run --nproc N`, or torchrun itself, on one node or several) every process
trains a replica of the model on its slice of each global batch, and the criterion sees the
whole batch, gathered. Outside torchrun the run is a world of one and every helper here is the
identity, so the single-process path is unchanged.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from benchmark.errors import BenchError
from benchmark.specs import Batch


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run."""

    rank: int = 0
    local_rank: int = 0  # the rank on this node: which GPU the process drives
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints progress and writes result files and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def start(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, ...):
    NCCL on CUDA, Gloo on the CPU. A world of one outside torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), size)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: torch.device, world: World) -> torch.device:
    """On CUDA each process drives the GPU of its local rank (torchrun's convention)."""
    if device.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def replicate(model: nn.Module, world: World, device: torch.device) -> nn.Module | None:
    """The model wrapped in DistributedDataParallel (None in a world of one). On CUDA batch
    norm becomes SyncBatchNorm, so its statistics are those of the global batch, as on one GPU;
    Gloo has no SyncBatchNorm, so CPU processes normalise their own slice."""
    if not world.distributed:
        return None
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the children in place
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def row_counts(rows: int, device: torch.device, world: World) -> list[int]:
    """Every rank's number of rows (batches can differ when unreadable images are skipped)."""
    mine = torch.tensor([rows], device=device)
    counts = [torch.zeros_like(mine) for _ in range(world.size)]
    dist.all_gather(counts, mine)
    return [int(count) for count in counts]


def all_gather(tensor: torch.Tensor, world: World, counts: list[int] | None = None) -> torch.Tensor:
    """Every rank's `tensor` concatenated along dim 0 in rank order. Gradients flow into this
    rank's own rows only: the other ranks' rows are detached copies, and this rank's slot holds
    `tensor` itself, with its graph (each rank back-propagates through its own part)."""
    if not world.distributed:
        return tensor
    counts = counts or row_counts(len(tensor), tensor.device, world)
    # Gloo gathers no bool tensors; rows are padded to the longest rank's.
    sent = tensor.detach().to(torch.uint8) if tensor.dtype == torch.bool else tensor.detach()
    padding = (max(counts) - len(tensor), *sent.shape[1:])
    sent = torch.cat([sent, sent.new_zeros(padding)]).contiguous()
    parts = [torch.empty_like(sent) for _ in range(world.size)]
    dist.all_gather(parts, sent)
    rows = [part[:count].to(tensor.dtype) for part, count in zip(parts, counts, strict=True)]
    rows[world.rank] = tensor
    return torch.cat(rows)


def gather_step(
    outputs: dict[str, torch.Tensor], batch: Batch, world: World, even: bool = False
) -> tuple[dict[str, torch.Tensor], Batch]:
    """The global batch's outputs and labels (indices, attributes) for the criterion. The
    images stay this rank's own: no criterion reads them, and they are the costly part.

    even: every rank's batch has this rank's size (no unreadable image can be skipped), so
    the sizes need no exchange, which would make the host wait for the device every step."""
    if not world.distributed:
        return outputs, batch
    rows = len(batch.labels)
    counts = [rows] * world.size if even else row_counts(rows, batch.labels.device, world)

    def gather(value: torch.Tensor | None) -> torch.Tensor | None:
        return None if value is None else all_gather(value, world, counts)

    gathered = {name: gather(value) for name, value in outputs.items()}
    return gathered, replace(
        batch,
        labels=gather(batch.labels),
        indices=gather(batch.indices),
        attributes=gather(batch.attributes),
        attribute_mask=gather(batch.attribute_mask),
    )


def sync_criterion_gradients(criterion: nn.Module, world: World) -> None:
    """Make the criterion's parameter gradients those of the global-batch loss on every rank.

    Every rank computed the same global loss from the same gathered batch, and back-propagated
    it multiplied by the world size (so that DDP's average over ranks of the model gradients is
    their sum, the global-batch gradient). The criterion's parameters saw the whole batch on
    every rank, so each holds world size x the gradient: the mean over ranks (which also
    evens out float noise) divided by the world size is the gradient. Parameters without a
    gradient have none on every rank (the same graph) and are left so.
    """
    if not world.distributed:
        return
    for parameter in criterion.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world.size * world.size


def broadcast_state(module: nn.Module, world: World) -> None:
    """Rank 0's state dict on every rank (a criterion's learned state starts equal): parameters,
    buffers and any extra state, sent through the host once, at start-up."""
    if not world.distributed:
        return
    state = {k: v.cpu() if torch.is_tensor(v) else v for k, v in module.state_dict().items()}
    module.load_state_dict(broadcast_object(state, world))


def shard(length: int, world: World) -> range:
    """This rank's contiguous share of `length` items (evaluation embeds one share per rank)."""
    return range(length * world.rank // world.size, length * (world.rank + 1) // world.size)


def broadcast_object(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank: decisions such as the best checkpoint then agree even
    where float noise would make the ranks' own figures differ in the last bits."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def union(indices: set[int], world: World) -> set[int]:
    """The union over ranks of a set of indices (unreadable images each rank met)."""
    if not world.distributed:
        return set(indices)
    every: list[Any] = [None] * world.size
    dist.all_gather_object(every, sorted(indices))
    return {index for part in every for index in part}


def check_divides(batch_size: int, world: World) -> None:
    """The protocol's batch is the global one, split evenly across the ranks."""
    if batch_size % world.size:
        raise BenchError(
            f"The protocol's batch of {batch_size} images (data.classes_per_batch x "
            f"data.samples_per_class) is global and is split across {world.size} processes, "
            f"but {world.size} does not divide it. Change the number of processes (--nproc, "
            f"torchrun's --nproc-per-node x --nnodes) or the batch (--set "
            f"data.classes_per_batch=...)."
        )


def torchrun_command(argv: list[str], nproc: int) -> list[str]:
    """The torchrun command line that re-runs `bench run` (argv: sys.argv) on `nproc` local
    processes, with --nproc taken out. --standalone lets torchrun pick a free port, so two runs
    on one machine do not collide."""
    rest = argv[argv.index("run") + 1 :]
    kept, skip = [], False
    for arg in rest:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc-per-node", str(nproc), "-m", "benchmark", "run", *kept]


def launch(nproc: int, global_batch: int) -> None:
    """Replace this process with torchrun running the same `bench run` on `nproc` processes;
    a batch they cannot share is refused here, once, rather than by every process."""
    check_divides(global_batch, World(size=nproc))
    if "WORLD_SIZE" in os.environ:
        raise BenchError(
            "--nproc starts torchrun, but this process already runs under torchrun "
            f"(WORLD_SIZE={os.environ['WORLD_SIZE']}); leave --nproc out."
        )
    command = torchrun_command(sys.argv, nproc)
    os.execvp(command[0], command)
