"""Timing for the measurement tools: medians of alternating repetitions (a slow moment hits both
sides of a ratio), and this machine's GEMM rate, the arithmetic limit every fast path is set against."""

from __future__ import annotations

import statistics
import time

import torch

REPS = 3


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(ours, theirs, reps: int = REPS) -> tuple[float, float]:
    """Median seconds of `ours` and `theirs`, run alternately `reps` times each."""
    a, b = [], []
    for _ in range(reps):
        a.append(timed(ours))
        b.append(timed(theirs))
    return statistics.median(a), statistics.median(b)


def gemm_gflops(n: int = 1024, reps: int = 10) -> float:
    """This machine's fp32 matrix-multiply rate with torch's current thread count."""
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y
    return 2 * n**3 * reps / timed(lambda: [x @ y for _ in range(reps)]) / 1e9
