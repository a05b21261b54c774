"""The harness from Python (a notebook, a script): the CLI's verbs as functions, with the same
validation (bad input raises `bench.BenchError`, whose message is the CLI's one line) and the same
store: `results/` and `.cache/`, or $BENCH_RESULTS_DIR and $BENCH_CACHE_DIR, or the `store=` given
(`Store("elsewhere/results", "elsewhere/cache")`; two threads can each use their own).

    from bench import api

    df = api.run(["pca", "examples/sparse_ae.py"], dataset="digits", latent_dims=[16], seeds=[0])
    api.runs(dataset="digits")   # every stored run: the columns of `bench runs`
    z = api.latents(df.key[0])   # {"z_train": (N, 16) float32, "y_train": (N,), ..., "classes"}
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench import BenchError
from bench.commands import export
from bench.commands.runs import table as runs_table
from bench.run import grid
from bench.run.session import Setup
from bench.store import Store, load_runs, using


def run(
    methods: Sequence[str] | None = None,
    dataset: str | None = None,
    *,
    latent_dims: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    sets: Sequence[str] = (),
    config: str | None = None,
    data_dir: str | None = None,
    offline: bool = False,
    device: str = "auto",
    force: bool = False,
    workers: int | None = None,
    cpus_per_run: float | None = None,
    store: Store | None = None,
):
    """`bench run`: train and evaluate the grid (registered names, learner files, modules or
    encoders, as `--methods` takes them), write the dataset's page, and return the grid's runs as
    a DataFrame (the columns of `bench runs`). Runs already stored are read, not redone.
    `methods` as `--methods` takes it: a list, or one comma-separated string."""
    if isinstance(methods, str):
        methods = methods.split(",")
    _check("methods", methods, str)
    _check("latent_dims", latent_dims, int)
    _check("seeds", seeds, int)
    _check("sets", sets, str)
    for name, value in (("dataset", dataset), ("config", config), ("data_dir", data_dir), ("device", device)):
        _check(name, value, str, one=True)
    _check("workers", workers, int, one=True)
    _check("cpus_per_run", cpus_per_run, (int, float), one=True)
    setup = Setup(
        config=config,
        sets=tuple(sets),
        dataset=dataset,
        methods=None if methods is None else tuple(methods),
        latent_dims=None if latent_dims is None else tuple(latent_dims),
        seeds=None if seeds is None else tuple(seeds),
        data_dir=data_dir,
        offline=offline,
        device=device,
    )
    argv = [
        "python",
        "-m",
        "bench",
        "run",
        *(["--methods", ",".join(methods)] if methods else []),
        *setup.argv(),
    ]
    with using(_store(store)):
        keys = grid.execute(
            setup, grid.RaySettings(workers, None, cpus_per_run, 0.0), force, shlex.join(argv)
        )
        chosen = set(keys)
        return runs_table([r for r in load_runs() if r["key"] in chosen])


def _store(store: Store | None) -> Store:
    """The store a call works on: the one given, else the environment's (the API is an edge)."""
    if store is None:
        return Store.from_env()
    if not isinstance(store, Store):
        raise BenchError(f"store: expected bench.api.Store(results, cache), got {store!r:.80}")
    return Store(Path(store.results), Path(store.cache))


def _check(name: str, value, kind: type | tuple, one: bool = False) -> None:
    """An argument of the wrong type is the API's own error (BenchError), named, not a TypeError
    from deep inside; None means the default."""

    def ok(v) -> bool:
        return isinstance(v, kind) and not isinstance(v, bool)

    if value is None:
        return
    if one:
        fits = ok(value)
    else:
        fits = isinstance(value, Sequence) and not isinstance(value, str) and all(map(ok, value))
    if fits:
        return
    kinds = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
    raise BenchError(f"{name}: expected {'' if one else 'a list of '}{kinds} (or None), got {value!r:.80}")


def runs(dataset: str | None = None, *, store: Store | None = None):
    """Every stored run (of `dataset`, its slug) as a DataFrame: the columns of `bench runs`."""
    _check("dataset", dataset, str, one=True)
    with using(_store(store)):
        every = load_runs()
    stored = [r for r in every if not dataset or r["config"]["dataset"]["slug"] == dataset]
    if not stored:
        raise BenchError("no stored run" + (f" of dataset {dataset!r}" if dataset else ""))
    return runs_table(stored)


def latents(
    key: str,
    *,
    data_dir: str | None = None,
    offline: bool = False,
    retrain: bool = False,
    store: Store | None = None,
) -> dict[str, np.ndarray]:
    """A finished run's raw latents and labels per split, as `bench export` writes them:
    `z_train`/`z_val`/`z_test` (N, D) float32, `y_*`, `classes`, `provenance`, `run_key`, `config`."""
    from bench import data
    from bench.data import probes
    from bench.run import env

    if not isinstance(key, str):
        raise BenchError(f"key: expected a run's key (a str, see api.runs().key), got {key!r:.80}")
    _check("data_dir", data_dir, str, one=True)
    with using(_store(store)):
        run_ = export.finished(key)
        ds = data.for_run(run_["config"], data_dir, offline)
        probe = probes.load_for(run_["config"], data_dir, offline, ds)  # a transfer: its probe data
        z = export.latents(run_, ds, env.pick_device("auto"), retrain, probe)
        return export.arrays(run_, probe or ds, z)
