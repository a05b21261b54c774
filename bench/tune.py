"""Optuna studies over the single-run path: every trial is an ordinary run in the store.

One machine: SQLite under results/studies/. Many machines: the same command with
`--storage postgresql://...` on each; all workers join one study. Optuna's heartbeat marks a dead
worker's trial failed and RetryHeartbeatStaleTrialCallback queues it again. `--trials` caps the
study's total across workers: the check-and-ask step holds a lock (a file lock for SQLite, a
PostgreSQL advisory lock) so that concurrent workers never overshoot it.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import socket
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench import BenchError, config, evaluate, registry, runner, store
from bench import spec as spec_
from bench.spec import RunSpec

# Heartbeats are Optuna's documented mechanism; we drive them from an ask/tell loop (to hold the
# trial cap exactly), which Optuna flags as unusual and experimental. Both warnings are expected.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

HEARTBEAT_S = 2  # a worker silent for GRACE_S has its running trial failed and queued again
GRACE_S = 15
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def studies_dir() -> Path:
    return store.results_dir() / "studies"


def open_study(name: str, url: str | None, multi: bool, seed: int, prune: bool):
    """Create or join study `name`; SQLite under results/studies/ unless `url` is given.
    Returns (study, url)."""
    if url is None:
        studies_dir().mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{_sqlite_path(name)}"
    try:
        storage = optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        )
    except Exception as e:  # bad URL, server down, missing driver: one line
        raise BenchError(f"cannot open study storage {url} ({str(e).splitlines()[0]})") from None
    directions = ["maximize", "maximize"] if multi else ["maximize"]
    # Workers on one study must not propose the same point: each seeds its sampler from the study
    # seed and its own identity, and with constant_liar the points of running trials count as
    # taken (Optuna's option for parallel workers). TPE handles multi-objective too.
    sampler = optuna.samplers.TPESampler(seed=worker_seed(seed), constant_liar=True)
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=1) if prune and not multi else None
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=directions,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
    except ValueError as e:  # e.g. joining a single-objective study with --multi-objective
        raise BenchError(f"study {name}: {e}") from None
    return study, url


def existing_study(name: str, url: str | None):
    """Study `name` if it exists, else None; creates nothing (for plans and reports). A storage
    that cannot be read also gives None: opening it for work reports why."""
    if url is None:
        path = _sqlite_path(name)
        if not path.is_file():
            return None
        url = f"sqlite:///{path}"
    try:
        return optuna.load_study(study_name=name, storage=url)
    except Exception:  # no such study, server down, missing driver
        return None


def _sqlite_path(name: str) -> Path:
    """Study `name`'s default storage: a SQLite file under results/studies/."""
    return store.inside(studies_dir(), name + ".db", "study")


def worker_seed(seed: int) -> int:
    """The study's sampler seed mixed with this worker's host and pid: reproducible for one
    process, distinct across concurrent workers."""
    return int(store.digest([seed, socket.gethostname(), os.getpid()])[:8], 16)


def optimize(
    study, url: str, cfg, data, method: str, trials: int, device, prune: bool, tensorboard=None
) -> None:
    """Work on `study` until it holds `trials` finished trials (counting every worker's)."""
    failures = 0
    while True:
        with _cap_lock(url, study.study_name):
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
        with _Heartbeat(study, trial):
            state, values = _run_trial(
                trial, cfg, data, method, device, prune, len(study.directions), tensorboard
            )
        study.tell(trial, values, state=state)
        failures += state == TrialState.FAIL
        if failures > trials:
            raise BenchError(
                f"study {study.study_name}: {failures} trials failed (diverged); "
                "narrow the search space or lower train.lr"
            )


def cap_counts(study) -> tuple[int, int]:
    """(finished, running) trials of `study`, read from one snapshot. Other workers tell their
    trials outside the cap lock: counted by two reads, a trial that finishes between them is in
    neither count, and the study overruns its cap (seen with 3 workers on 3-second trials)."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return sum(s in FINISHED for s in states), states.count(TrialState.RUNNING)


def trial_spec(cfg, data, method: str, params: dict, seed: int, steer_only: bool = False) -> RunSpec:
    """A run spec for `method` with search-space `params` ("train.lr" or bare method keys);
    `steer_only`: a trial, measured by what steers the study."""
    cfg = copy.deepcopy(cfg)
    overrides = {}
    for key, value in params.items():
        section, _, field = key.rpartition(".")
        if section == "train":  # this method's own budget, above any [train.<method>] table
            cfg.train_overrides[method] = {**cfg.train_overrides.get(method, {}), field: value}
        elif section:
            setattr(cfg, section, config.replace(getattr(cfg, section), {field: value}, section))
        else:
            overrides[key] = value
    fixed = "latent_dim" in {**cfg.method_overrides(method), **overrides}
    if cfg.grid.latent_dims and not fixed and registry.get(method).takes_latent_dim:
        overrides["latent_dim"] = cfg.grid.latent_dims[0]
    return runner.spec(cfg, data, method, overrides, seed, steer_only)


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


@contextlib.contextmanager
def _cap_lock(url: str, name: str):
    if url.startswith("sqlite:///"):
        with open(url.removeprefix("sqlite:///") + ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            yield
    elif url.startswith("postgresql"):
        import sqlalchemy

        key = int(store.digest(["bench-tune", name])[:15], 16)  # fits PostgreSQL's bigint
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        engine.dispose()
    else:
        yield  # other databases: the cap is checked without a lock and may overshoot by a few


class _Heartbeat:
    """Records the trial's heartbeat every HEARTBEAT_S from a thread, as study.optimize does."""

    def __init__(self, study, trial):
        self.storage, self.trial_id = study._storage, trial._trial_id  # noqa: SLF001
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop.is_set():
            self.storage.record_heartbeat(self.trial_id)
            self.stop.wait(HEARTBEAT_S)

    def __enter__(self):
        self.thread.start()

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
