"""Command line: python -m bench {list, run, report, evaluate} (see README.md).

Bad input ends with one line on stderr and exit code 2; Ctrl-C keeps every finished run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from bench import BenchError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other bad input
        print(f"error: {message} (see `python -m bench {self.prog.split()[-1]} --help`)", file=sys.stderr)
        sys.exit(2)


def _csv(kind):
    def parse(text: str) -> list:
        try:
            values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None
        if not values:  # an explicitly empty list is a mistake, never "use the default"
            raise argparse.ArgumentTypeError(f"expected at least one {kind.__name__}, got {text!r}")
        return values

    return parse


def _trial_epochs(text: str) -> int | float:
    """`5`: epochs per trial; `25%`: that share of each learner's own budget (rounded, at least 1)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else int(text)
    except ValueError:
        value = None
    if value is None or value <= 0 or value > 1 and isinstance(value, float):
        raise argparse.ArgumentTypeError(
            f"expected epochs (5) or a share of each learner's budget (25%), got {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bench", description="LatentBench: compare representation learners on frozen latents.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    sub.add_parser("list", help="learners, datasets and config files")
    run = sub.add_parser("run", help="train and evaluate a grid of runs, then write the dataset's tables")
    run.add_argument(
        "--methods", type=_csv(str), help="comma-separated learners (default: the config's grid)"
    )
    run.add_argument("--dataset", help="dataset name (default: the config's data.name)")
    run.add_argument("--latent-dims", type=_csv(int), help="e.g. 64,256")
    run.add_argument("--seeds", type=_csv(int), help="e.g. 0,1,2")
    run.add_argument("--config", help="TOML file (see configs/)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.epochs=5 (repeatable)",
    )
    _common(run)
    run.add_argument("--force", action="store_true", help="redo runs that are already stored")
    ray_ = run.add_argument_group("grids on Ray (see README: Grids on Ray)")
    ray_.add_argument("--workers", type=int, help="run N runs at a time as tasks of a local Ray instance")
    ray_.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join the Ray cluster there, e.g. 10.0.0.1:6379 (default: $RAY_ADDRESS)",
    )
    ray_.add_argument(
        "--cpus-per-run",
        type=float,
        help="CPUs (and torch threads) per run (default: 1 on Ray, all in-process)",
    )
    ray_.add_argument(
        "--gpus-per-run", type=float, default=0.0, help="GPUs per run; fractions share one, e.g. 0.25"
    )
    tune = sub.add_parser("tune", help="an Optuna study of one learner, on one machine or many")
    tune.add_argument("--method", required=True)
    tune.add_argument("--dataset", help="dataset name (default: the config's data.name)")
    tune.add_argument("--trials", type=int, required=True, help="finished trials for the whole study")
    tune.add_argument("--study", help="study name (default: <method>-<dataset>)")
    tune.add_argument(
        "--storage",
        help="database URL, e.g. postgresql://user@host/db (default: SQLite under results/studies/)",
    )
    tune.add_argument("--config", help="TOML file (see configs/)")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    tune.add_argument("--latent-dim", type=int, help="latent size (default: the grid's first)")
    tune.add_argument("--seeds", type=_csv(int), help="seeds for the best configuration's re-runs")
    tune.add_argument(
        "--multi-objective",
        action="store_true",
        help="maximize validation accuracy and PSNR; plot the Pareto front",
    )
    tune.add_argument("--no-prune", action="store_true", help="never stop a trial early")
    tune.add_argument("--sampler-seed", type=int, default=0)
    tune.add_argument(
        "--workers", type=int, help="N worker processes on this machine on the same study (cores shared)"
    )
    tune.add_argument("--no-rerun", action="store_true", help=argparse.SUPPRESS)  # a --workers helper
    _common(tune)
    cmp_ = sub.add_parser(
        "compare", help="every learner tuned with the same budget, then re-run over the seeds"
    )
    cmp_.add_argument(
        "--trials", type=int, required=True, help="trials per learner (the same for every learner)"
    )
    cmp_.add_argument("--methods", type=_csv(str), help="learners (default: every trainable learner)")
    cmp_.add_argument("--dataset", help="dataset name (default: the config's data.name)")
    cmp_.add_argument("--config", help="TOML file (see configs/)")
    cmp_.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    cmp_.add_argument("--latent-dim", type=int, help="latent size (default: the grid's first)")
    cmp_.add_argument("--seeds", type=_csv(int), help="seeds for the best configurations' re-runs")
    cmp_.add_argument(
        "--trial-epochs",
        type=_trial_epochs,
        help="epochs per trial (5), or a share of each learner's own budget (25%%) when the budgets "
        "differ by family (default: each learner's full budget)",
    )
    cmp_.add_argument("--max-hours", type=float, help="refuse to start if the planned compute is larger")
    cmp_.add_argument(
        "--storage", help="database URL shared by workers (default: SQLite under results/studies/)"
    )
    cmp_.add_argument("--no-prune", action="store_true", help="never stop a trial early")
    cmp_.add_argument("--sampler-seed", type=int, default=0)
    _data_args(cmp_)
    rep = sub.add_parser("report", help="rebuild results/*.md and plots from the store")
    rep.add_argument("--runs", action="store_true", help="also redraw every run's own figures")
    ev = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a stored run")
    ev.add_argument("key", help="run key or a unique prefix of it")
    runs = sub.add_parser("runs", help="every stored run as one tidy row (CSV), for pandas and notebooks")
    runs.add_argument("--csv", metavar="PATH", help="write the CSV there (default: print it)")
    runs.add_argument("--dataset", help="only this dataset (its slug, e.g. mnist)")
    exp = sub.add_parser("export", help="a run's latents and labels for train, val and test as .npz")
    exp.add_argument("key", help="run key or a unique prefix of it")
    exp.add_argument("--out", metavar="PATH", help="default: <run key>.npz in the current folder")
    exp.add_argument(
        "--retrain", action="store_true", help="retrain the run if this machine has no cache of it"
    )
    _data_args(exp)
    ver = sub.add_parser("verify", help="retrain stored runs in a scratch store and compare their metrics")
    ver.add_argument("keys", nargs="*", help="run keys or unique prefixes")
    ver.add_argument("--dataset", help="every stored run of this dataset (its slug, e.g. digits)")
    ver.add_argument(
        "--uncommitted", action="store_true", help="the runs made by code with uncommitted changes"
    )
    ver.add_argument("--seeds", help="only runs with these seeds, comma-separated (e.g. 0)")
    ver.add_argument(
        "--stale",
        action="store_true",
        help="the runs measured by an older evaluator (linear probe short of its optimum, no label "
        "efficiency or RankMe); with --adopt, re-evaluated from cached checkpoints where there are any",
    )
    ver.add_argument("--sample", type=int, help="a seeded random sample of N of the chosen runs")
    ver.add_argument("--sample-seed", type=int, default=0)
    ver.add_argument(
        "--tolerance", type=float, default=0.5, help="largest accuracy difference, in points (default 0.5)"
    )
    ver.add_argument("--psnr-tolerance", type=float, default=0.5, help="largest PSNR difference in dB")
    ver.add_argument(
        "--scratch", default=None, help="scratch store (default .cache/verify; kept: a rerun resumes)"
    )
    ver.add_argument("--adopt", action="store_true", help="replace each stored run by its recomputed one")
    _data_args(ver)
    return p


def _data_args(p) -> None:
    p.add_argument(
        "--data-dir",
        default=os.environ.get("BENCH_DATA_DIR"),
        help="folder holding the dataset files (default: $BENCH_DATA_DIR)",
    )
    p.add_argument("--offline", action="store_true", help="never download; fail if files are missing")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _common(p) -> None:
    _data_args(p)
    p.add_argument("--tensorboard", metavar="DIR", help="also write each run's per-epoch loss terms there")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile each training step (= --set train.compile=true)"
    )


def cmd_list(args) -> None:
    from bench import data, registry

    print("learners:")
    for name in registry.names():
        cls = registry.get(name)
        kind = "baseline" if not cls.trainable else "reference" if cls.needs_labels else "learner"
        can = [w for w, yes in (("reconstructs", cls.reconstructs), (cls.family, cls.family)) if yes]
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().split("\n")[0]
        print(f"  {name:<12} {kind:<9} {','.join(can):<25} {doc}")
    print("datasets:")
    for name, doc in data.DATASETS.items():
        print(f"  {name:<13} {doc}")
    print("configs:")
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        first = path.read_text().split("\n", 1)[0].lstrip("# ")
        print(f"  configs/{path.name:<18} {first}")


def cmd_run(args) -> int:
    from bench import config, data, env, evaluators, labels, registry, report, runner, store

    cfg = config.load(args.config, args.set + ["train.compile=true"] * args.compile)
    grid = {"methods": args.methods, "latent_dims": args.latent_dims, "seeds": args.seeds}
    cfg.grid = config.replace(cfg.grid, {k: v for k, v in grid.items() if v is not None}, "grid")
    if args.dataset:
        cfg.data.name = args.dataset
    for name in cfg.grid_methods():
        registry.get(name)
    device = env.pick_device(args.device)
    cpus = args.cpus_per_run
    if (
        (cpus is not None and cpus <= 0)
        or args.gpus_per_run < 0
        or (args.workers is not None and args.workers < 1)
    ):
        raise BenchError("--workers, --cpus-per-run must be positive and --gpus-per-run >= 0")
    ds = data.load(cfg.data, args.data_dir, args.offline)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in args.argv)  # for the report
    specs = [s.with_command(command) for s in runner.preflight(runner.specs(cfg, ds), ds)]
    print(f"{ds.provenance}: {len(specs)} run{'s' * (len(specs) != 1)} on {env.device_name(device)}")
    diverged, elsewhere = [], 0

    def show(what: str, m: dict, took: str) -> None:
        nonlocal elsewhere
        if m["status"] == "claimed":
            elsewhere += 1
            print(f"{what}: being trained by another process, left to it")
        elif m["status"] != "ok":
            diverged.append(what)
            print(f"{what}: {m['error']}")
        else:
            print(f"{what}: {evaluators.progress(m)}  ({took})")  # eval.steer_only: the linear probe alone

    if args.workers or args.ray_address:  # Ray is imported only on this path
        from bench import grid

        pending = [s for s in specs if args.force or not store.is_done(s.key)]
        print(f"{len(specs) - len(pending)} stored, {len(pending)} to run")
        if pending:
            where = grid.RaySettings(args.workers, args.ray_address, args.cpus_per_run, args.gpus_per_run)
            grid.run(
                pending,
                ds,
                where,
                args.force,
                lambda s, m: m["status"] == "ok" or diverged.append(grid.what(s)),
            )
    else:
        if args.cpus_per_run is not None:  # the same threads per run as on Ray, for comparisons
            env.set_threads(max(1, int(args.cpus_per_run)))
        for i, spec in enumerate(specs, 1):
            start = time.perf_counter()
            stored = not args.force and store.is_done(spec.key)
            m = runner.run_one(spec, ds, device, force=args.force, tensorboard=args.tensorboard)
            took = "stored" if stored else f"{time.perf_counter() - start:.0f} s"
            show(f"[{i}/{len(specs)}] {labels.run(spec.json())}", m, took)
    path = report.write(ds.slug, store.load_runs())
    print(f"wrote {path}")
    if elsewhere:
        print(f"{elsewhere} run(s) were left to other processes; rerun this command after they finish")
    if diverged:
        raise BenchError(
            f"{len(diverged)} of {len(specs)} runs diverged (first: {diverged[0]}); the rest "
            "are stored: lower train.lr or set train.grad_clip and rerun with --force"
        )
    return 0


def cmd_tune(args) -> None:
    from bench import config, data, env, registry, report, store, studies, tune

    cfg = config.load(args.config, args.set + ["train.compile=true"] * args.compile)
    if args.dataset:
        cfg.data.name = args.dataset
    grid = {"latent_dims": None if args.latent_dim is None else [args.latent_dim], "seeds": args.seeds}
    cfg.grid = config.replace(cfg.grid, {k: v for k, v in grid.items() if v is not None}, "grid")
    if args.trials < 1:
        raise BenchError(f"--trials {args.trials}: give a positive number of trials")
    if args.workers is not None and args.workers < 1:
        raise BenchError(f"--workers {args.workers}: give a positive number of worker processes")
    cls = registry.get(args.method)
    if not registry.tunable(args.method):
        raise BenchError(f"{args.method} declares no search space: there is nothing to tune")
    if args.multi_objective and not cls.reconstructs:
        raise BenchError(
            f"--multi-objective trades accuracy against PSNR: {args.method} does not reconstruct"
        )
    device = env.pick_device(args.device)
    ds = data.load(cfg.data, args.data_dir, args.offline)
    name = args.study or f"{args.method}-{ds.slug}" + ("-pareto" if args.multi_objective else "")
    store.safe_name(name, "--study")
    study, url = tune.open_study(
        name, args.storage, args.multi_objective, args.sampler_seed, not args.no_prune
    )
    print(f"study {name}: {args.trials} trials of {args.method} on {ds.provenance}")
    helpers = _tune_helpers(args, url)
    tune.optimize(
        study,
        url,
        cfg,
        ds,
        args.method,
        args.trials,
        device,
        prune=not args.no_prune,
        tensorboard=args.tensorboard,
    )
    failed = [p.wait() for p in helpers].count(0) != len(helpers)
    if failed:
        raise BenchError("a tuning worker process failed (see its output above); rerun to continue the study")
    running = study.get_trials(deepcopy=False, states=(tune.TrialState.RUNNING,))
    if not args.multi_objective and not running and not args.no_rerun:
        best = study.best_trial
        print(f"best trial {best.number}: validation accuracy {best.value:.2%} {best.params}")
        for m in tune.rerun_best(study, cfg, ds, args.method, device):
            if m["status"] == "ok":
                print(f"  tuned re-run: linear {m['linear']['test_acc']:.2%} (test)")
            else:  # e.g. claimed: another worker of the study is re-running the same seed
                print(f"  tuned re-run: {m['status']} ({m.get('error', '')})")
        print(f"wrote {report.write(ds.slug, store.load_runs())}")  # the tuned rows
    print(f"wrote {studies.write(study)}")


def _tune_helpers(args, url: str) -> list:
    """With --workers N: N - 1 more `bench tune` processes on this machine, joining the same study
    (storage `url`), each with its share of the cores; this process is the N-th."""
    import subprocess

    import torch

    n = args.workers or 1
    if n == 1:
        return []
    threads = max(1, (os.cpu_count() or 1) // n)
    torch.set_num_threads(threads)
    argv, skip = [], False
    for a in args.argv:  # the same command without --workers/--storage, as one worker each
        if skip or a.startswith(("--workers=", "--storage=")):
            skip = False
            continue
        if a in ("--workers", "--storage"):
            skip = True
            continue
        argv.append(a)
    child = os.environ | {"OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "bench", *argv, "--storage", url, "--no-rerun"]
    return [subprocess.Popen(cmd, env=child) for _ in range(n - 1)]


def cmd_compare(args) -> None:
    from bench import compare, config, data, env, report, store

    cfg = config.load(args.config, args.set)
    if args.dataset:
        cfg.data.name = args.dataset
    grid = {"latent_dims": None if args.latent_dim is None else [args.latent_dim], "seeds": args.seeds}
    cfg.grid = config.replace(cfg.grid, {k: v for k, v in grid.items() if v is not None}, "grid")
    if args.trials < 1:
        raise BenchError("--trials must be positive")
    methods = compare.learners(args.methods)
    device = env.pick_device(args.device)
    ds = data.load(cfg.data, args.data_dir, args.offline)
    stale = compare.stale_defaults(cfg, ds, methods)
    if stale:
        raise BenchError(
            f"the default runs of {', '.join(stale)} on {ds.slug} were measured by an older evaluator, so "
            f"trials cannot be weighed against them: retrain them first (python -m bench verify --stale "
            f"--dataset {ds.slug} --adopt)"
        )
    lines, hours = compare.plan(cfg, ds, methods, args.trials, args.trial_epochs, args.storage)
    print(f"plan on {ds.provenance}, {len(methods)} learners:")
    print("\n".join(lines))
    print(f"  total ~{hours:.2f} h (learners with no run in the store to estimate from not counted)")
    if args.max_hours is not None and hours > args.max_hours:
        raise BenchError(
            f"the plan needs ~{hours:.2f} h, more than --max-hours {args.max_hours:g}: "
            "lower --trials or --trial-epochs, or compare fewer --methods"
        )
    compare.run(cfg, ds, methods, args.trials, args.storage, device, args.trial_epochs, args.sampler_seed,
                not args.no_prune)  # fmt: skip
    print(f"wrote {report.write(ds.slug, store.load_runs())}")


def cmd_report(args) -> None:
    from bench import report

    paths = report.write_all(redraw_runs=args.runs)
    if not paths:
        raise BenchError("the store is empty: run `python -m bench run` first")
    for path in paths:
        print(f"wrote {path}")


def cmd_evaluate(args) -> None:
    from bench import evaluators, labels, plots, store

    key = store.find(args.key)
    run = store.run_dir(key)
    spec, m = store.read_json(run / "config.json"), store.read_json(run / "metrics.json")
    if not isinstance(spec, dict) or not isinstance(m, dict) or "status" not in m:
        raise BenchError(
            f"run {key} is not finished (or its files are unreadable): rerun the command that made it"
        )
    print(f"run {key}: {labels.name(spec)} {labels.describe(spec)} on {spec['dataset']['name']}")
    if m["status"] != "ok":
        raise BenchError(f"run {key} has status {m['status']}: {m.get('error', '')}")
    for col in evaluators.columns("header"):
        if (value := col.get(m)) is not None:
            print(f"  {col.header:<8} {value * col.scale:.{col.digits + 2}f}")
    if m.get("steer_only"):
        print("  a study's trial: measured only by what steers its study (the linear probe)")
    else:
        classes = plots.class_names(spec, len(m["confusion"]))
        print("  per-class accuracy (linear probe, test):")
        for i, (name, row) in enumerate(zip(classes, m["confusion"])):
            print(f"    {name:<12} {row[i] / max(1, sum(row)):.2%}  ({sum(row)} images)")
    train = m.get("train") or {}
    for term, values in {"loss": train.get("loss_per_epoch"), **train.get("terms_per_epoch", {})}.items():
        if values:
            print(f"  train {term:<12} epoch 1 {values[0]:.4g} -> epoch {len(values)} {values[-1]:.4g}")
    plots.run_figures(run, spec, m["confusion"], labels.title(spec, m.get("latent_dim")), train)
    for path in sorted(run.glob("*.png")):
        print(f"wrote {path}")


def cmd_runs(args) -> None:
    from bench import export, store

    runs = [
        r for r in store.load_runs() if not args.dataset or r["config"]["dataset"]["slug"] == args.dataset
    ]
    if not runs:
        raise BenchError("no stored run" + (f" of dataset {args.dataset!r}" if args.dataset else ""))
    df = export.runs_table(runs)
    if args.csv:
        store.atomic_write(Path(args.csv), lambda tmp: df.to_csv(tmp, index=False))
        print(f"wrote {args.csv} ({len(df)} runs, {len(df.columns)} columns)")
    else:
        df.to_csv(sys.stdout, index=False)


def cmd_export(args) -> None:
    from bench import env, export, store, verify

    key = store.find(args.key)
    runs = [r for r in store.load_runs() if r["key"] == key]
    if not runs or runs[0]["metrics"].get("status") != "ok":
        raise BenchError(f"run {key} is not a finished run with status ok: nothing to export")
    run = runs[0]
    ds = verify.load_dataset(run["config"], args.data_dir, args.offline, {})
    z = export.latents(run, ds, env.pick_device(args.device), args.retrain)
    out = Path(args.out or f"{key}.npz")
    export.write_npz(out, run, ds, z)
    sizes = ", ".join(f"{s} {tuple(z[s].shape)}" for s in export.SPLITS)
    print(f"wrote {out}: latents {sizes}, labels, classes, provenance, run key, config")


def cmd_verify(args) -> int:
    from bench import verify

    return verify.main(args)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return {
            "list": cmd_list,
            "run": cmd_run,
            "tune": cmd_tune,
            "compare": cmd_compare,
            "report": cmd_report,
            "evaluate": cmd_evaluate,
            "runs": cmd_runs,
            "export": cmd_export,
            "verify": cmd_verify,
        }[args.verb](args) or 0
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only store: name the file, keep what is finished
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror or e}; finished runs are kept", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished runs are stored; run the same command again to continue", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
