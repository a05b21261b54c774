"""`bench run`: a grid's runs in this process, or past one process as Ray tasks, on this machine
or a cluster; then the dataset's tables.

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
import math
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import CHECKOUT, BenchError, evaluators, report, store
from bench.data import probes
from bench.report import labels
from bench.run import env, preflight, runner
from bench.run.session import Setup
from bench.store import claims
from bench.store.spec import GRID, RunSpec


@dataclass(frozen=True)
class RaySettings:
    """Where a grid's runs go: `workers` runs at a time on a local Ray instance, or the cluster
    at `address`; each run's CPUs (and torch threads) and GPUs."""

    workers: int | None = None
    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float = 0.0

    def __post_init__(self):
        cpus, gpus, on_ray = self.cpus_per_run, self.gpus_per_run, bool(self.workers or self.address)
        if self.workers is not None and not 1 <= self.workers <= MAX_WORKERS:
            raise BenchError(f"--workers {self.workers}: must be >= 1 and <= {MAX_WORKERS}")
        if cpus is not None and not (math.isfinite(cpus) and cpus > 0):
            raise BenchError(f"--cpus-per-run {cpus:g}: must be a finite number > 0")
        if cpus is not None and not self.address and cpus > (os.cpu_count() or 1):
            raise BenchError(f"--cpus-per-run {cpus:g}: this machine has {os.cpu_count()} cores")
        if not (math.isfinite(gpus) and gpus >= 0):
            raise BenchError(f"--gpus-per-run {gpus:g}: must be a finite number >= 0")
        if gpus and not on_ray:
            raise BenchError(
                f"--gpus-per-run {gpus:g} shares GPUs between Ray tasks: add --workers N or --ray-address "
                "(in one process, --device cuda picks the GPU)"
            )
        if gpus and self.workers and not self.address and gpus > torch.cuda.device_count():
            raise BenchError(  # before a local Ray instance starts only to find none
                f"--gpus-per-run {gpus:g}: this machine has {torch.cuda.device_count()} GPUs for a local Ray "
                "instance (--ray-address joins a cluster that has them)"
            )


MAX_RETRIES = 3  # attempts after a worker process or node died
MAX_WORKERS = 4096  # concurrent Ray tasks; a local instance takes no more than it has cores anyway
# from a checkout, the code travels to every node as Ray's working_dir (the store, caches and venv
# do not); installed from a wheel, it must be installed on every node as it is here
EXCLUDES = [".git", ".venv", ".cache", "results", "*.pt", "*.npz", "__pycache__"]


def _task(
    spec: RunSpec, data, threads: int, device_name: str, cache_dir: str | None, force: bool, probe=None
):
    """One run on a Ray worker: (metrics, artifacts), nothing written to the run store. Its cache:
    the driver's on this machine, the node's own (.cache/ in its working folder) on a cluster."""
    env.set_threads(threads)
    with store.using(store.Store(cache=Path(cache_dir)) if cache_dir else store.Store()):
        return runner.compute(spec, data, env.pick_device(device_name), force, probe=probe)


def connect(workers: int | None, address: str | None, cpus_per_run: float, gpus_per_run: float) -> int:
    """Start a local Ray instance (`workers` runs at a time) or join the cluster at `address`;
    returns how many runs can run at once."""
    try:
        import ray
    except ImportError:
        raise BenchError("--workers/--ray-address need Ray: pip install -r requirements.txt") from None
    variables = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    variables["BENCH_GIT_SHA"] = env.git_sha()  # the nodes get the code without its .git
    runtime_env = {"env_vars": variables}
    if CHECKOUT:
        runtime_env |= {"working_dir": str(CHECKOUT), "excludes": EXCLUDES}
    on_term = signal.getsignal(signal.SIGTERM)  # Ray's own handler aborts: ours exits tidily
    try:
        if address:
            _answers(address)
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
    if on_term is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
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


def _answers(address: str, timeout_s: float = 10.0) -> None:
    """Fail at once, not after Ray's minutes of retries, when nothing listens at a `HOST:PORT`
    address (`auto` and `ray://` client addresses are left to Ray)."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {address} ({e.strerror or type(e).__name__})") from None


def run(specs: list[RunSpec], data, ray_: RaySettings, force: bool, on_result, probe=None) -> None:
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
    data_ref, probe_ref = ray.put(data), ray.put(probe)  # once, not once per task
    print(f"Ray: {slots} run(s) at a time, {cpus:g} CPU(s) and {gpus:g} GPU(s) each")
    start, done, pending = time.perf_counter(), 0, list(specs)
    # every claim is released when its run is recorded, and all of them on any way out (an error,
    # Ctrl-C, `kill`; the kernel frees them after `kill -9`), as is the Ray instance
    with contextlib.ExitStack() as holding:
        holding.callback(ray.shutdown)
        running, held = {}, {}
        while pending or running:
            while pending and len(running) < slots:
                spec = pending.pop(0)
                held[spec.key] = holding.enter_context(contextlib.ExitStack())
                if not held[spec.key].enter_context(claims.claim(spec.key)):
                    print(f"{what(spec)}: being trained by another process, left to it")
                    held.pop(spec.key).close()
                    continue
                running[remote.remote(spec, data_ref, threads, device, cache, force, probe_ref)] = spec
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
            held.pop(spec.key).close()
            metrics = metrics.json()
            done += 1
            elapsed = time.perf_counter() - start
            left = elapsed / done * (len(pending) + len(running)) / max(1, min(slots, len(running) + 1))
            print(
                f"[{done} done, {len(running)} running, {len(pending)} pending, {elapsed:.0f} s, "
                f"~{left:.0f} s left] {what(spec)}: {_score(metrics)}",
                flush=True,
            )
            on_result(spec, metrics)


def what(spec: RunSpec) -> str:
    return labels.run(spec.json())


def _score(m: dict) -> str:
    if m.get("status") != "ok":
        return m.get("error", m.get("status", "?"))
    return evaluators.progress(m)


def main(setup: Setup, ray_: RaySettings, force: bool, command: str) -> int:
    """`bench run`: the grid's runs in this process (or as Ray tasks), then the dataset's tables.
    `command`: the user's command line, recorded with each run for the page's Reproduce line."""
    execute(setup, ray_, force, command)
    return 0


def execute(setup: Setup, ray_: RaySettings, force: bool, command: str) -> list[str]:
    """`main`'s work; returns the keys of the grid's runs (bench.api reads them back)."""
    cfg = setup.resolve()
    device = setup.pick_device()
    ds = setup.load(cfg)
    probe = probes.load(cfg, ds, setup.data_dir, setup.offline)  # None: in-domain
    specs = [s.with_command(command) for s in preflight.check(runner.specs(cfg, ds, probe), ds, probe)]
    if probe is not None:
        print(f"probed on {probe.provenance}: its images {probe.probe['adapt']}")
    print(f"{ds.provenance}: {len(specs)} run{'s' * (len(specs) != 1)} on {env.device_name(device)}")
    progress = _Progress()
    if ray_.workers or ray_.address:  # Ray is imported only on this path
        pending = [s for s in specs if force or not store.is_done(s.key)]
        print(f"{len(specs) - len(pending)} stored, {len(pending)} to run")
        if pending:
            run(
                pending,
                ds,
                ray_,
                force,
                lambda s, m: m["status"] == "ok" or progress.diverged.append(what(s)),
                probe,
            )
    else:
        if ray_.cpus_per_run is not None:  # the same threads per run as on Ray, for comparisons
            env.set_threads(max(1, int(ray_.cpus_per_run)))
        for i, spec in enumerate(specs, 1):
            start = time.perf_counter()
            stored = not force and store.is_done(spec.key)
            m = runner.run_one(spec, ds, device, force=force, tensorboard=setup.tensorboard, probe=probe)
            took = "stored" if stored else f"{time.perf_counter() - start:.0f} s"
            progress.show(f"[{i}/{len(specs)}] {what(spec)}", m, took)
    print(f"wrote {report.write_for(specs[0].json(), store.load_runs())}")
    if progress.elsewhere:
        print(
            f"{progress.elsewhere} run(s) were left to other processes; rerun this command after they finish"
        )
    if progress.diverged:
        raise BenchError(
            f"{len(progress.diverged)} of {len(specs)} runs diverged (first: {progress.diverged[0]}); the "
            "rest are stored: lower train.lr or set train.grad_clip and rerun with --force"
        )
    return [s.key for s in specs]


class _Progress:
    """The line of each finished run, and the count of those that diverged or were left to others."""

    def __init__(self):
        self.diverged: list[str] = []
        self.elsewhere = 0

    def show(self, what: str, m: dict, took: str) -> None:
        if m["status"] == "claimed":
            self.elsewhere += 1
            print(f"{what}: being trained by another process, left to it")
        elif m["status"] != "ok":
            self.diverged.append(what)
            print(f"{what}: {m['error']}")
        else:
            print(f"{what}: {evaluators.progress(m)}  ({took})")  # a trial: the linear probe alone
