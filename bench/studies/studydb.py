"""Where studies live and how workers share one: Optuna's RDB storage (SQLite under
results/studies/ on one machine, PostgreSQL across machines), heartbeats that let a dead
worker's trial be failed and queued again, and the lock that keeps concurrent workers under a
study's trial cap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench import BenchError, store
from bench.store.hashing import digest

# Heartbeats are Optuna's documented mechanism; we drive them from an ask/tell loop (to hold the
# trial cap exactly), which Optuna flags as unusual and experimental. Both warnings are expected.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

HEARTBEAT_S = 2  # a worker silent for GRACE_S has its running trial failed and queued again
GRACE_S = 15
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def studies_dir() -> Path:
    return store.results_dir() / "studies"


def open_study(name: str, url: str | None, *, multi: bool, seed: int, prune: bool):
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
    return int(digest([seed, socket.gethostname(), os.getpid()])[:8], 16)


def cap_counts(study) -> tuple[int, int]:
    """(finished, running) trials of `study`, read from one snapshot. Other workers tell their
    trials outside the cap lock: counted by two reads, a trial that finishes between them is in
    neither count, and the study overruns its cap (seen with 3 workers on 3-second trials)."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return sum(s in FINISHED for s in states), states.count(TrialState.RUNNING)


@contextlib.contextmanager
def cap_lock(url: str, name: str):
    if url.startswith("sqlite:///"):
        with open(url.removeprefix("sqlite:///") + ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            yield
    elif url.startswith("postgresql"):
        import sqlalchemy

        key = int(digest(["bench-tune", name])[:15], 16)  # fits PostgreSQL's bigint
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


class Heartbeat:
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
