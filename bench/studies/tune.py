"""Optuna studies over the single-run path: every trial is an ordinary run in the store.

One machine: SQLite under results/studies/. Many machines: the same command with
`--storage postgresql://...` on each; all workers join one study (bench/studies/studydb.py: storage,
heartbeats, the trial cap). Each learner declares its search space in its own file; a trial is
scored by the validation linear probe alone, and the best configuration is re-run over the seeds
through the same path as `bench run`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState

from bench import BenchError, config, registry, store
from bench.run import evaluate, preflight, runner
from bench.run.session import Setup
from bench.store import spec as spec_
from bench.store.spec import RunSpec
from bench.studies import space
from bench.studies.studydb import HEARTBEAT_S, Heartbeat, cap_counts, cap_lock, open_study

MAX_TRIALS = 100_000  # trials in one study: TPE's cost grows with the trials it has seen


def optimize(
    study, url: str, cfg, data, method: str, trials: int, device, prune: bool, tensorboard=None
) -> None:
    """Work on `study` until it holds `trials` finished trials (counting every worker's)."""
    failures = 0
    while True:
        with cap_lock(url, study.study_name):
            # a dead worker's trial is failed and its retry queued in two writes: under the lock,
            # no worker counts between them (it would see neither, ask a fresh trial and leave
            # the retry waiting for good)
            optuna.storages.fail_stale_trials(study)
            done, busy = cap_counts(study)
            if done >= trials:
                return
            trial = study.ask() if done + busy < trials else None
        if trial is None:  # the cap is held by running trials: wait in case one of them dies
            time.sleep(HEARTBEAT_S)
            continue
        with Heartbeat(study, trial):
            state, values = _run_trial(
                trial, cfg, data, method, device, prune, len(study.directions), tensorboard
            )
        study.tell(trial, values, state=state)
        print(_trial_line(study, trial.number, state, values, trials), flush=True)
        failures += state == TrialState.FAIL
        if failures > trials:
            raise BenchError(
                f"study {study.study_name}: {failures} trials failed (diverged); "
                "narrow the search space or lower train.lr"
            )


def _trial_line(study, number: int, state, values, trials: int) -> str:
    """`trial 3: complete, validation 97.22% (best so far 97.50%, trial 1); 16 of 20 left`."""
    done, _ = cap_counts(study)
    shown = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}[state]
    if values:  # validation accuracy, and for a two-objective study validation PSNR
        shown += f", validation {values[0]:.2%}" + "".join(f", PSNR {v:.2f} dB" for v in values[1:])
    if len(study.directions) == 1 and any(
        t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)
    ):
        best = study.best_trial
        shown += f" (best so far {best.value:.2%}, trial {best.number})"
    return f"trial {number}: {shown}; {max(0, trials - done)} of {trials} left"


def trial_spec(cfg, data, method: str, params: dict, seed: int, steer_only: bool = False) -> RunSpec:
    """A run spec for `method` at the search-space point `params` (keys in the search-space
    grammar, bench/studies/space.py); `steer_only`: a trial, measured by what steers the study."""
    cfg = config.with_values(cfg, {space.qualify(k, method): v for k, v in params.items()})
    fixed = "latent_dim" in cfg.method_overrides(method)
    dim = {"latent_dim": cfg.grid.latent_dims[0]} if cfg.grid.latent_dims and not fixed else {}
    return runner.spec(
        cfg, data, method, dim if registry.get(method).takes_latent_dim else {}, seed, steer_only
    )


def _run_trial(trial, cfg, data, method, device, prune, n_objectives, tensorboard=None):
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    params = registry.get(method).search_space(trial)
    # scored by the validation probe alone: no MLP, kNN, label efficiency or test reconstruction
    # (a separate run key; the checkpoint and latents are shared with a full run of the same training)
    spec = trial_spec(cfg, data, method, params, cfg.grid.seeds[0], steer_only=True)
    trial.set_user_attr("run_key", spec.key)

    def report(epoch, model):  # pruning signal from the validation slice only
        trial.report(evaluate.quick_val_probe(model, data, device), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    try:
        on_epoch = report if prune and n_objectives == 1 else None
        purpose = spec_.trial(trial.study.study_name)
        m = runner.run_one(spec, data, device, purpose, on_epoch=on_epoch, tensorboard=tensorboard)
    except optuna.TrialPruned:  # its value is on the study page; the store keeps finished runs only
        store.discard_unfinished(trial.user_attrs["run_key"])
        return TrialState.PRUNED, None
    if m["status"] != "ok":  # diverged, or the same point is being trained by another worker
        trial.set_user_attr("error", m.get("error", ""))
        return TrialState.FAIL, None
    values = [m["linear"]["val_acc"]]  # validation slice: the test split never steers a study
    if n_objectives == 2:
        values.append(m["recon_val"]["psnr"])
    return TrialState.COMPLETE, values


def rerun_best(study, cfg, data, method: str, device) -> list[dict]:
    """Re-run the best trial's configuration over every seed through the normal run path."""
    best = study.best_trial
    params = _replay(method, best.params)
    out = []
    for seed in cfg.grid.seeds:
        spec = trial_spec(cfg, data, method, params, seed)
        out.append(runner.run_one(spec, data, device, spec_.tuned(study.study_name)))
    return out


def _replay(method: str, params: dict) -> dict:
    """Turn a finished trial's params back into the search space's overrides."""
    return registry.get(method).search_space(optuna.trial.FixedTrial(params))


@dataclass(frozen=True)
class TuneOptions:
    """`bench tune`'s own flags, checked when made."""

    method: str
    trials: int  # at most MAX_TRIALS
    study: str | None = None  # None: <method>-<dataset>[-pareto]
    storage: str | None = None  # a database URL; None: SQLite under results/studies/
    multi_objective: bool = False
    prune: bool = True
    sampler_seed: int = 0
    workers: int | None = None  # worker processes on this machine on the same study
    rerun: bool = True  # re-run the best configuration over the seeds when the study is done

    def __post_init__(self):
        if not 1 <= self.trials <= MAX_TRIALS:
            raise BenchError(f"--trials {self.trials}: give 1 to {MAX_TRIALS:,} trials")
        most = 4 * (os.cpu_count() or 1)  # processes share the cores; each holds torch in memory
        if self.workers is not None and not 1 <= self.workers <= most:
            raise BenchError(
                f"--workers {self.workers}: give 1 to {most} worker processes (4 a core here; "
                "more machines join with --storage)"
            )

    def argv(self) -> list[str]:
        """The flags of a helper worker of the same study (no --workers, no re-runs)."""
        out = [
            "--method",
            self.method,
            "--trials",
            str(self.trials),
            "--sampler-seed",
            str(self.sampler_seed),
        ]
        out += ["--study", self.study] if self.study else []
        out += ["--storage", self.storage] if self.storage else []
        return (
            out
            + ["--multi-objective"] * self.multi_objective
            + ["--no-prune"] * (not self.prune)
            + ["--no-rerun"]
        )


def main(setup: Setup, opts: TuneOptions) -> None:
    """`bench tune`: work on the study (with `opts.workers` processes), then re-run its best
    configuration over the seeds and write the dataset's tables and the study's page."""
    from bench import report
    from bench.report import study_pages

    entry, opts = opts.method, dataclasses.replace(opts, method=registry.one(opts.method))
    cfg = setup.resolve()
    if cfg.probe.dataset:
        raise BenchError(
            "studies tune in-domain: a transfer is `bench run --probe-dataset` of the tuned rows"
        )
    if not registry.tunable(opts.method):
        raise BenchError(f"{opts.method} declares no search space: there is nothing to tune")
    if opts.multi_objective and not registry.get(opts.method).reconstructs:
        raise BenchError(
            f"--multi-objective trades accuracy against PSNR: {opts.method} does not reconstruct"
        )
    device = setup.pick_device()
    ds = setup.load(cfg)
    preflight.check([trial_spec(cfg, ds, opts.method, {}, cfg.grid.seeds[0])], ds)  # its re-runs' checks
    name = opts.study or f"{opts.method}-{ds.slug}" + ("-pareto" if opts.multi_objective else "")
    store.safe_name(name, "--study")
    study, url = open_study(
        name, opts.storage, multi=opts.multi_objective, seed=opts.sampler_seed, prune=opts.prune
    )
    study.set_user_attr("config", setup.config_name())  # for the study's page
    print(f"study {name}: {opts.trials} trials of {opts.method} on {ds.provenance}")
    helpers = _helpers(setup, dataclasses.replace(opts, method=entry, study=name, storage=url))
    optimize(study, url, cfg, ds, opts.method, opts.trials, device, opts.prune, setup.tensorboard)
    if [p.wait() for p in helpers].count(0) != len(helpers):
        raise BenchError("a tuning worker process failed (see its output above); rerun to continue the study")
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not opts.multi_objective and not running and opts.rerun:
        best = study.best_trial
        print(f"best trial {best.number}: validation accuracy {best.value:.2%} {best.params}")
        for m in rerun_best(study, cfg, ds, opts.method, device):
            if m["status"] == "ok":
                print(f"  tuned re-run: linear {m['linear']['test_acc']:.2%} (test)")
            else:  # e.g. claimed: another worker of the study is re-running the same seed
                print(f"  tuned re-run: {m['status']} ({m.get('error', '')})")
        page = report.write(report.home(ds.slug, cfg.data.classes), store.load_runs())
        print(f"wrote {page}")  # the tuned rows
    print(f"wrote {study_pages.write(study)}")


def _helpers(setup: Setup, opts: TuneOptions) -> list:
    """With --workers N: N - 1 more `bench tune` processes on this machine, joining the same study
    (`opts.storage`), each with its share of the cores; this process is the N-th."""
    import subprocess

    n = opts.workers or 1
    if n == 1:
        return []
    threads = max(1, (os.cpu_count() or 1) // n)
    torch.set_num_threads(threads)
    child = os.environ | store.current().environ() | {"OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "bench", "tune", *opts.argv(), *setup.argv("--latent-dim")]
    return [subprocess.Popen(cmd, env=child) for _ in range(n - 1)]
