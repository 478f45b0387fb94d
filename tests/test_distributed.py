"""Training on two processes (Gloo, CPU) matches one process on the concatenated batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from benchmark.data.samplers import PKSampler, ShardedBatchSampler
from benchmark.engine import distributed
from benchmark.engine.distributed import World
from benchmark.engine.precision import grad_scaler
from benchmark.engine.train import TrainState, train_step
from benchmark.errors import BenchError
from benchmark.specs import Batch

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 4, dtype=torch.float64)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": F.normalize(self.linear(images), dim=1)}


class PairsAndProxies(nn.Module):
    """A pair term over the whole batch plus proxies the criterion owns; records the indices
    it saw (in a bool buffer, as ICS does); keeps a note as extra state."""

    def __init__(self) -> None:
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
        self.register_buffer("seen", torch.zeros(len(LABELS), dtype=torch.bool))
        self.note = "unset"

    def get_extra_state(self) -> dict[str, str]:
        return {"note": self.note}

    def set_extra_state(self, state: dict[str, str]) -> None:
        self.note = state["note"]

    def forward(self, outputs, batch: Batch):
        embeddings, labels = outputs["embedding"], batch.labels
        same = labels[:, None] == labels[None, :]
        signed = embeddings @ embeddings.T * torch.where(same, -2.0, 2.0)
        pairs = signed.exp().mean().log()
        proxies = F.cross_entropy(embeddings @ self.proxies.T, labels)
        self.seen[batch.indices] = True
        return pairs + proxies, {"proxies": proxies.detach()}


def _state(world: World) -> TrainState:
    torch.manual_seed(0)
    model, criterion = TinyModel(), PairsAndProxies()
    # Each rank starts from its own criterion state; rank 0's reaches every rank.
    criterion.note = f"rank {world.rank}"
    with torch.no_grad():
        criterion.proxies += world.rank
    distributed.broadcast_state(criterion, world)
    params = [*model.parameters(), *criterion.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    device = torch.device("cpu")
    replica = distributed.replicate(model, world, device)
    return TrainState(
        model, criterion, optimizer, scheduler, grad_scaler(device, False), device, False,
        world=world, replica=replica,
    )  # fmt: skip


def _global_batch() -> Batch:
    images = torch.randn(len(LABELS), 5, generator=torch.Generator().manual_seed(1))
    return Batch(images.double(), LABELS, torch.arange(len(LABELS)))


def _figures(state: TrainState, logs: dict[str, float]) -> dict:
    named = {**dict(state.model.named_parameters()), **dict(state.criterion.named_parameters())}
    return {
        "logs": logs,
        "grads": {name: p.grad.clone() for name, p in named.items()},
        "params": {name: p.detach().clone() for name, p in named.items()},
        "seen": state.criterion.seen.clone(),
        "note": state.criterion.note,
    }


def _step_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )  # fmt: skip
    torch.set_num_threads(1)
    world = distributed.start(torch.device("cpu"))
    try:
        state, batch = _state(world), _global_batch()
        share = slice(4 * rank, 4 * rank + 4)
        mine = Batch(batch.images[share], batch.labels[share], batch.indices[share])
        logs = train_step(state, mine)
        torch.save(_figures(state, logs), Path(out) / f"rank{rank}.pt")
    finally:
        distributed.stop(world)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_two_process_step_equals_one_step_on_the_global_batch(tmp_path):
    mp.start_processes(
        _step_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    state = _state(World())
    expected = _figures(state, train_step(state, _global_batch()))
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["logs"] == pytest.approx(expected["logs"], rel=1e-6)
        assert got["grads"].keys() == {"linear.weight", "linear.bias", "proxies"}
        for name, grad in expected["grads"].items():
            torch.testing.assert_close(got["grads"][name], grad, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(got["params"][name], expected["params"][name])
        assert got["seen"].all()  # the criterion saw the global batch's indices
        assert got["note"] == "rank 0"  # extra state broadcast from rank 0
    assert expected["grads"]["proxies"].abs().max() > 1e-3  # the proxies did learn


def test_batches_are_sliced_so_that_gathered_slices_are_the_global_batch():
    labels = np.repeat(np.arange(6), 3)
    global_batches = list(PKSampler(labels, 4, 2, iterations=3, seed=5))
    slices = [list(ShardedBatchSampler(PKSampler(labels, 4, 2, 3, 5), r, 2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*slices, strict=True)] == global_batches
    for first, second in zip(*slices, strict=True):  # distinct classes on each rank
        assert not set(labels[first]) & set(labels[second])


def test_a_batch_the_world_size_does_not_divide_is_refused():
    with pytest.raises(BenchError, match="batch of 30 images .* split across 4 processes, but 4"):
        distributed.check_divides(30, World(rank=1, local_rank=1, size=4))


def test_nproc_re_runs_the_same_command_under_torchrun_without_nproc():
    argv = ["/bin/bench", "run", "-p", "ms", "--nproc", "8", "--seed", "3", "--nproc=2", "-v"]
    assert distributed.torchrun_command(argv, 8) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "8",
        "-m", "benchmark", "run", "-p", "ms", "--seed", "3", "-v",
    ]  # fmt: skip


def test_torchrun_runs_bench_run_on_two_processes_and_writes_one_result(data_root, tmp_path):
    fast = ["train.epochs=1", "train.iterations_per_epoch=2", "data.classes_per_batch=4"]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "benchmark", "run", "-p", "ms", "-d", "synth-cub", "--data-root", str(data_root),
        "--device", "cpu", "--results-dir", str(tmp_path), "--no-progress",
        *(f"--set={item}" for item in fast),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_PLUGINS": "ms"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (written,) = (tmp_path / "synth-cub" / "ms").glob("*.json")
    assert done.stdout.count("Result written to") == 1
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name, written.stem + ".pt"]
    result = json.loads(written.read_text())
    assert result["environment"]["world_size"] == 2
    assert [e["split"] for e in result["evaluations"]] == ["test"] + ["validation"] * 2 + ["test"]


def test_nproc_checks_the_batch_once_then_execs_torchrun(monkeypatch):
    launched = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(sys, "argv", ["bench", "run", "-p", "ms", "--nproc", "2"])
    monkeypatch.setattr(os, "execvp", lambda file, args: launched.append(args))
    with pytest.raises(BenchError, match="batch of 32 images .* across 3 processes"):
        distributed.launch(3, 32)
    distributed.launch(2, 32)
    assert launched == [distributed.torchrun_command(["bench", "run", "-p", "ms"], 2)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(BenchError, match="already runs under torchrun"):
        distributed.launch(2, 32)
