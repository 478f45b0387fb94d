"""What decides a run's floating-point results, for its result file's `environment`.

Two machines that give different figures for one fingerprint and seed usually differ here: the
CPU (its model and the vector instructions torch dispatches to), the BLAS and oneDNN builds,
thread counts, the determinism and TF32 switches, and on a GPU its model, driver, CUDA and
cuDNN. Gathering never fails a run: what cannot be read is None.
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

LONGEST = 200  # characters kept of any text read from the machine
_CONFIG_LINES = {
    "blas": re.compile(r"BLAS_INFO=([^,\s]+)"),
    "lapack": re.compile(r"LAPACK_INFO=([^,\s]+)"),
    "mkl": re.compile(r"Math Kernel Library Version ([^\s]+)"),
    "onednn": re.compile(r"MKL-DNN v([^\s]+)"),
    "openmp": re.compile(r"OpenMP ([0-9]+)"),
}


def machine(device: torch.device, cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The CPU, math libraries, threads and switches of this process; the GPU's on CUDA."""
    facts = {
        "cpu_model": cpu_model(cpuinfo),
        "cpu_capability": _quietly(torch.backends.cpu.get_cpu_capability),
        "math_libraries": math_libraries(_quietly(torch.__config__.show) or ""),
        "torch_interop_threads": _quietly(torch.get_num_interop_threads),
        "switches": switches(),
    }
    if device.type == "cuda":
        facts["gpu"] = gpu(device)
    return facts


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The "model name" of /proc/cpuinfo (Linux), else what platform says."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()[:LONGEST]
    except OSError:
        pass
    return (platform.processor() or None) and platform.processor()[:LONGEST]


def math_libraries(config: str) -> dict[str, str]:
    """BLAS, LAPACK, MKL, oneDNN and OpenMP versions from torch.__config__.show()."""
    found = {name: pattern.search(config) for name, pattern in _CONFIG_LINES.items()}
    return {name: match.group(1)[:LONGEST] for name, match in found.items() if match}


def switches() -> dict[str, Any]:
    """Settings that change kernels, and so the last bits of every figure."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def gpu(device: torch.device) -> dict[str, Any]:
    """Model, compute capability, driver, CUDA and cuDNN of a CUDA device."""
    capability = _quietly(torch.cuda.get_device_capability, device)
    return {
        "name": _quietly(torch.cuda.get_device_name, device),
        "compute_capability": None if capability is None else "{}.{}".format(*capability),
        "driver": nvidia_driver(),
        "cuda": torch.version.cuda,
        "cudnn": _quietly(torch.backends.cudnn.version),
    }


def nvidia_driver() -> str | None:
    """The driver version nvidia-smi reports (torch has no call for it); None without one."""
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    first = output.strip().splitlines()[:1]
    return first[0].strip()[:LONGEST] if first else None


def _quietly(call, *args):
    try:
        return call(*args)
    except Exception:  # provenance is best effort: never the reason a run fails
        return None
