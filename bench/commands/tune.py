"""`bench tune`: an Optuna study of one learner's search space, every trial an ordinary run in
the store, on one machine or as workers sharing a database (bench/studies/tune.py)."""

from __future__ import annotations

import argparse

from bench import cli


def add(p) -> None:
    p.add_argument("--method", required=True)
    p.add_argument("--trials", type=int, required=True, help="finished trials for the whole study")
    p.add_argument("--study", help="study name (default: <method>-<dataset>)")
    p.add_argument(
        "--multi-objective",
        action="store_true",
        help="maximize validation accuracy and PSNR; plot the Pareto front",
    )
    p.add_argument(
        "--workers", type=int, help="N worker processes on this machine on the same study (cores shared)"
    )
    p.add_argument("--no-rerun", action="store_true", help=argparse.SUPPRESS)  # a --workers helper
    cli.study_args(p)
    cli.setup_args(p, grid=False)


def main(args, argv) -> None:
    from bench.studies import tune

    opts = tune.TuneOptions(
        args.method,
        args.trials,
        study=args.study,
        storage=args.storage,
        multi_objective=args.multi_objective,
        prune=not args.no_prune,
        sampler_seed=args.sampler_seed,
        workers=args.workers,
        rerun=not args.no_rerun,
    )
    dims = None if args.latent_dim is None else (args.latent_dim,)
    tune.main(cli.setup(args, latent_dims=dims), opts)
