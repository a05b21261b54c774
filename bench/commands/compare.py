"""`bench compare`: every learner tuned with the same budget of trials, its best configuration
re-run over the seeds, and the page that ranks them (bench/studies/compare.py)."""

from __future__ import annotations

from bench import cli


def add(p) -> None:
    p.add_argument(
        "--trials", type=int, required=True, help="trials per learner (the same for every learner)"
    )
    p.add_argument("--methods", type=cli.listed(str), help="learners (default: every trainable learner)")
    p.add_argument(
        "--trial-epochs",
        type=cli.trial_epochs,
        help="epochs per trial (5), or a share of each learner's own budget (25%%) when the budgets "
        "differ by family (default: each learner's full budget)",
    )
    p.add_argument("--max-hours", type=cli.amount, help="refuse to start if the planned compute is larger")
    cli.study_args(p)
    cli.setup_args(p, grid=False, training=False)


def main(args, argv) -> None:
    from bench.studies import compare

    opts = compare.CompareOptions(
        args.trials,
        methods=args.methods,
        trial_epochs=args.trial_epochs,
        max_hours=args.max_hours,
        storage=args.storage,
        prune=not args.no_prune,
        sampler_seed=args.sampler_seed,
    )
    dims = None if args.latent_dim is None else (args.latent_dim,)
    compare.main(cli.setup(args, latent_dims=dims, training=False), opts)
