"""Command line: python -m bench VERB (see README.md). This file dispatches: bench/cli.py parses,
each verb's logic lives in its module and takes typed arguments. Bad input ends with one line on stderr and
exit code 2; Ctrl-C keeps every finished run.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path

from bench import BenchError
from bench.cli import build_parser


def _setup(args, methods=None, latent_dims=None, training: bool = True):
    from bench.session import Setup

    return Setup(
        config=args.config,
        sets=tuple(args.set),
        dataset=args.dataset,
        methods=methods,
        latent_dims=latent_dims,
        seeds=args.seeds,
        data_dir=args.data_dir,
        offline=args.offline,
        device=args.device,
        compile=training and args.compile,
        tensorboard=args.tensorboard if training else None,
        classes=args.classes,
        probe_dataset=getattr(args, "probe_dataset", None),
        probe_classes=getattr(args, "probe_classes", None),
    )


def _run(args, argv: list[str]) -> int:
    from bench import grid

    where = grid.RaySettings(args.workers, args.ray_address, args.cpus_per_run, args.gpus_per_run)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in argv)  # for the page's Reproduce line
    return grid.main(_setup(args, args.methods, args.latent_dims), where, args.force, command)


def _tune(args, argv) -> None:
    from bench import tune

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
    tune.main(_setup(args, latent_dims=dims), opts)


def _compare(args, argv) -> None:
    from bench import compare

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
    compare.main(_setup(args, latent_dims=dims, training=False), opts)


def _report(args, argv) -> None:
    from bench import report

    paths = report.write_all(redraw_runs=args.runs)
    if not paths:
        raise BenchError("the store is empty: run `python -m bench run` first")
    for path in paths:
        print(f"wrote {path}")


def _verify(args, argv) -> int:
    from bench import crosscheck, verify

    if args.trained_in:  # what another store trained, against the committed runs: nothing retrained
        return crosscheck.main(
            Path(args.trained_in), args.tolerance, args.psnr_tolerance, tuple(args.metric_tolerance)
        )
    request = verify.VerifyRequest(
        keys=tuple(args.keys),
        dataset=args.dataset,
        uncommitted=args.uncommitted,
        stale=args.stale,
        outdated=args.outdated,
        seeds=args.seeds,
        sample=args.sample,
        sample_seed=args.sample_seed,
        tolerance=args.tolerance,
        psnr_tolerance=args.psnr_tolerance,
        metric_tolerance=tuple(args.metric_tolerance),
        scratch=args.scratch,
        adopt=args.adopt,
        data_dir=args.data_dir,
        offline=args.offline,
        device=args.device,
    )
    return verify.main(request)


def _list(args, argv) -> None:
    from bench import describe

    describe.listing(args.methods or ())


def _evaluate(args, argv) -> None:
    from bench import describe

    describe.evaluate(args.key)


def _diff(args, argv) -> None:
    from bench import sections

    sections.diff_command(args.a, args.b, args.dataset, args.latent_dim)


def _runs(args, argv) -> None:
    from bench import export

    export.runs_command(args.csv, args.dataset)


def _export(args, argv) -> None:
    from bench import export

    export.export_command(
        args.key, args.out, args.retrain, args.data_dir, args.offline, args.device, args.encoder
    )


VERBS = {
    "list": _list,
    "run": _run,
    "tune": _tune,
    "compare": _compare,
    "report": _report,
    "evaluate": _evaluate,
    "diff": _diff,
    "runs": _runs,
    "export": _export,
    "verify": _verify,
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return VERBS[args.verb](args, argv) or 0
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bench runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as e:  # a full disk, a read-only store: name the file, keep what is finished
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror or e}; finished runs are kept", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished runs are stored; run the same command again to continue "
            "(a run stopped mid-training resumes after its last saved epoch)",
            file=sys.stderr,
        )
        return 130


def _terminated(signum, frame):
    raise KeyboardInterrupt  # `kill PID`: the tidy exit of Ctrl-C (claims released, finished runs kept)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(main())
