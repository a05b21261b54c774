"""`bench run`: train and evaluate a grid of runs (learners x latent sizes x seeds) in this
process, or as tasks of a Ray cluster, then write the dataset's page (bench/run/grid.py)."""

from __future__ import annotations

import os
import shlex

from bench import cli


def add(p) -> None:
    cli.setup_args(p, grid=True)
    p.add_argument("--force", action="store_true", help="redo runs that are already stored")
    ray = p.add_argument_group("grids on Ray (see docs/scaling.md)")
    ray.add_argument("--workers", type=int, help="run N runs at a time as tasks of a local Ray instance")
    ray.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join the Ray cluster there, e.g. 10.0.0.1:6379 (default: $RAY_ADDRESS)",
    )
    ray.add_argument(
        "--cpus-per-run",
        type=float,
        help="CPUs (and torch threads) per run (default: 1 on Ray, all in-process)",
    )
    ray.add_argument(
        "--gpus-per-run", type=float, default=0.0, help="GPUs per run; fractions share one, e.g. 0.25"
    )


def main(args, argv: list[str]) -> int:
    from bench.run import grid

    where = grid.RaySettings(args.workers, args.ray_address, args.cpus_per_run, args.gpus_per_run)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in argv)  # for the page's Reproduce line
    return grid.main(cli.setup(args, args.methods, args.latent_dims), where, args.force, command)
