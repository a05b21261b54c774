"""Grids past one process: a grid's pending runs as Ray tasks, on this machine or a cluster.

`bench run --workers N` starts a local Ray instance for the command (N concurrent runs);
`--ray-address ADDR` (or RAY_ADDRESS) joins a running cluster. Without either, `bench run` never
imports Ray. The driver is the store's only writer: a task trains and evaluates one run
(`runner.compute`) against the dataset, put once into Ray's object store, and returns its metrics
and small artifacts; the driver records each as it arrives, with the same atomic writes as
in-process runs, so Ctrl-C or kill -9 of the driver loses no finished run and the same command
resumes. Checkpoint and latent caches stay on the node that made them. A task whose worker process
or node dies is retried by Ray (MAX_RETRIES); a run that fails inside (divergence, a bad config)
is recorded or reported as in-process, never retried.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench import BenchError, env, evaluators, labels, runner, store
from bench.spec import GRID, RunSpec


@dataclass(frozen=True)
class RaySettings:
    """Where a grid's runs go: `workers` runs at a time on a local Ray instance, or the cluster
    at `address`; each run's CPUs (and torch threads) and GPUs."""

    workers: int | None = None
    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float = 0.0


MAX_RETRIES = 3  # attempts after a worker process or node died
ROOT = Path(__file__).resolve().parent.parent
# the code travels to every node as Ray's working_dir; the store, caches and venv do not
EXCLUDES = [".git", ".venv", ".cache", "results", "*.pt", "*.npz", "__pycache__"]


def _task(spec: RunSpec, data, threads: int, device_name: str, cache_dir: str | None, force: bool):
    """One run on a Ray worker: (metrics, artifacts), nothing written to the run store."""
    if cache_dir:
        os.environ["BENCH_CACHE_DIR"] = cache_dir
    env.set_threads(threads)
    return runner.compute(spec, data, env.pick_device(device_name), force)


def connect(workers: int | None, address: str | None, cpus_per_run: float, gpus_per_run: float) -> int:
    """Start a local Ray instance (`workers` runs at a time) or join the cluster at `address`;
    returns how many runs can run at once."""
    try:
        import ray
    except ImportError:
        raise BenchError("--workers/--ray-address need Ray: pip install -r requirements.txt") from None
    variables = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    variables["BENCH_GIT_SHA"] = env.git_sha()  # the nodes get the code without its .git
    runtime_env = {"working_dir": str(ROOT), "excludes": EXCLUDES, "env_vars": variables}
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(
                address="local",  # a new instance for this command, even if a cluster runs here
                num_cpus=max(1, round(workers * cpus_per_run)),
                runtime_env=runtime_env,
                include_dashboard=False,
                log_to_driver=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = " (is it up? a cluster with token authentication needs RAY_AUTH_MODE=token and its token)"
        raise BenchError(
            f"cannot start or join {where}: {str(e).splitlines()[0]}{hint * bool(address)}"
        ) from None
    have = ray.cluster_resources()
    slots = int(have.get("CPU", 0) // cpus_per_run)
    if gpus_per_run:
        slots = min(slots, int(have.get("GPU", 0) // gpus_per_run))
    if slots < 1:
        ray.shutdown()
        raise BenchError(
            f"the Ray cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs: less than one "
            f"run's --cpus-per-run {cpus_per_run:g} --gpus-per-run {gpus_per_run:g}"
        )
    return slots


def run(specs: list[RunSpec], data, ray_: RaySettings, force: bool, on_result) -> None:
    """Run `specs` (the grid's pending runs) as Ray tasks; `on_result(spec, metrics)` after each
    is recorded. Prints a progress line per finished run."""
    import ray

    cpus, gpus = ray_.cpus_per_run or 1.0, ray_.gpus_per_run
    slots = connect(ray_.workers, ray_.address, cpus, gpus)
    local = not ray_.address  # a local instance shares this machine's cache folder
    cache = str(store.cache_dir().resolve()) if local else None
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES, retry_exceptions=False)(_task)
    device = "cuda" if gpus > 0 else "cpu"
    threads = max(1, int(cpus))
    data_ref = ray.put(data)  # once, not once per task
    print(f"Ray: {slots} run(s) at a time, {cpus:g} CPU(s) and {gpus:g} GPU(s) each")
    start, done, pending = time.perf_counter(), 0, list(specs)
    with contextlib.ExitStack() as claims:
        running = {}
        while pending or running:
            while pending and len(running) < slots:
                spec = pending.pop(0)
                if not claims.enter_context(store.claim(spec.key)):
                    print(f"{what(spec)}: being trained by another process, left to it")
                    continue
                running[remote.remote(spec, data_ref, threads, device, cache, force)] = spec
            ready, _ = ray.wait(list(running), num_returns=1)
            spec = running.pop(ready[0])
            try:
                metrics, artifacts = ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:  # an error inside the run: reported, not retried
                raise BenchError(f"{what(spec)} failed: {str(e.cause).splitlines()[0]}") from None
            except ray.exceptions.RayError as e:  # its worker or node died MAX_RETRIES + 1 times
                raise BenchError(
                    f"{what(spec)}: Ray lost it {MAX_RETRIES + 1} times ({type(e).__name__}); finished "
                    "runs are stored, rerun the command to continue"
                ) from None
            runner.record(spec, GRID, metrics, artifacts)
            done += 1
            elapsed = time.perf_counter() - start
            left = elapsed / done * (len(pending) + len(running)) / max(1, min(slots, len(running) + 1))
            print(
                f"[{done} done, {len(running)} running, {len(pending)} pending, {elapsed:.0f} s, "
                f"~{left:.0f} s left] {what(spec)}: {_score(metrics)}",
                flush=True,
            )
            on_result(spec, metrics)
    ray.shutdown()


def what(spec: RunSpec) -> str:
    return labels.run(spec.json())


def _score(m: dict) -> str:
    if m.get("status") != "ok":
        return m.get("error", m.get("status", "?"))
    return evaluators.progress(m)
