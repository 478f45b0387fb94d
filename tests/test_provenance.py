"""The result file's environment records what decides floating-point results."""

from __future__ import annotations

import torch

from benchmark import provenance
from benchmark.results import environment

SHOWN = """PyTorch built with:
  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64
  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)
  - OpenMP 201511 (a.k.a. OpenMP 4.5)
  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, LAPACK_INFO=mkl, USE_MKLDNN=ON,
"""


def test_the_math_libraries_are_read_from_torchs_build_configuration():
    assert provenance.math_libraries(SHOWN) == {
        "blas": "mkl", "lapack": "mkl", "mkl": "2024.2-Product", "onednn": "3.12.0",
        "openmp": "201511",
    }  # fmt: skip
    assert provenance.math_libraries("PyTorch built with:\n  - BLAS_INFO=open,") == {"blas": "open"}


def test_the_cpu_model_comes_from_proc_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n")
    assert provenance.cpu_model(cpuinfo) == "AMD EPYC 9B14"
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    assert provenance.cpu_model(tmp_path / "absent") is None


def test_a_cpu_run_records_cpu_capability_libraries_threads_and_switches():
    facts = environment(torch.device("cpu"))
    assert facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["device"].endswith(f", {facts['cpu_capability']}")
    assert facts["math_libraries"] == provenance.math_libraries(torch.__config__.show())
    assert facts["torch_interop_threads"] == torch.get_num_interop_threads()
    assert facts["switches"]["deterministic_algorithms"] is False
    assert facts["switches"]["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert "gpu" not in facts


def test_a_cuda_run_records_the_gpu_driver_cuda_and_cudnn(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    monkeypatch.setattr(provenance, "nvidia_driver", lambda: "570.86.15")
    facts = provenance.machine(torch.device("cuda", 0))
    assert facts["gpu"] == {
        "name": "NVIDIA H200", "compute_capability": "9.0", "driver": "570.86.15",
        "cuda": torch.version.cuda, "cudnn": 91002,
    }  # fmt: skip


def test_gathering_never_fails_a_run(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no such device")

    def no_nvidia_smi(*args, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    monkeypatch.setattr(torch.cuda, "get_device_capability", broken)
    monkeypatch.setattr(provenance.subprocess, "run", no_nvidia_smi)
    facts = provenance.gpu(torch.device("cuda", 0))
    assert (facts["name"], facts["compute_capability"], facts["driver"]) == (None, None, None)
