"""Where a run ran: device, threads, library versions, the code's git SHA, wall time, memory."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import resource
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import torch

from bench import CHECKOUT, BenchError


def set_threads(n: int) -> None:
    """One run's CPU threads: torch's and the BLAS that numpy and scikit-learn call."""
    import threadpoolctl

    torch.set_num_threads(n)
    threadpoolctl.threadpool_limits(n)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs at speed on `device`: always on CUDA; on a CPU where oneDNN has
    bf16 kernels for it (AVX512 and later). Elsewhere (AVX2) it is emulated: the CPU test of the GPU
    config's path (ResNet-18 SimCLR and the 1024-d AE) took 105 s with it, 27 s in fp32, on a 2-core
    AMD EPYC; so the CPU checks of the GPU path run in fp32 there."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def reset_peak(device: torch.device) -> None:
    """Start a run's peak memory: CUDA's allocator statistics, or on Linux the process's
    high-water mark of resident memory (VmHWM, reset by writing 5 to /proc/self/clear_refs), so a
    run of a grid reports its own peak and not the largest of the process's runs so far."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux, or not allowed: the process's lifetime maximum is what there is
        pass


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(MB, what it is) since `reset_peak`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda allocated"
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status") as f:
            kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
        return int(kb) / 1024, "run's peak RSS"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"


def record(device: torch.device, start: float) -> dict:
    peak, kind = peak_memory(device)
    return {
        "env": {
            "git_sha": git_sha(),
            "torch": torch.__version__,
            "device": device_name(device),
            # bit-identical results hold on one kind of machine: the CPU and the kernels torch
            # picked for it (e.g. AVX2 vs AVX512) are what `verify` names when numbers drift
            "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "peak_memory_mb": round(peak, 1),
            "peak_memory_kind": kind,
            # the machine's load when the run ended: above the core count, other work shared the
            # cores and the run's wall times are longer than on a quiet machine
            "load_avg_1min": round(os.getloadavg()[0], 2),
        },
        "wall_time_s": time.perf_counter() - start,
    }


@functools.cache
def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo), e.g. `AMD EPYC 9554 64-Core Processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# what a run executes: a change elsewhere (docs, tests, results) does not make its code "dirty"
CODE_PATHS = ("bench", "methods", "configs", "requirements.txt", "pyproject.toml")


@functools.cache
def git_sha() -> str:
    """HEAD's short SHA, with `-dirty` when the code differs from it; a Ray worker, which gets
    the code without its .git, is handed the driver's in BENCH_GIT_SHA."""
    if os.environ.get("BENCH_GIT_SHA"):
        return os.environ["BENCH_GIT_SHA"]
    if CHECKOUT is None:  # installed from a wheel: its version names the code
        return f"latentbench {version('latentbench')}"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=CHECKOUT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=CHECKOUT,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) or "unknown"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is visible; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise BenchError(f"--device {name!r}: choose auto, cpu or cuda")
    return torch.device(name)
