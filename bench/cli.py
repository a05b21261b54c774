"""The command line's grammar: every verb's flags, parsed into an argparse namespace that
bench/__main__.py turns into typed arguments for the verb's module. A parse error is one line
and exit 2, like every other bad input.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from bench.checks import MAX_CLASS


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other bad input
        print(f"error: {message} (see `python -m bench {self.prog.split()[-1]} --help`)", file=sys.stderr)
        sys.exit(2)


def _csv(kind):
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None
        if not values:  # an explicitly empty list is a mistake, never "use the default"
            raise argparse.ArgumentTypeError(f"expected at least one {kind.__name__}, got {text!r}")
        return values

    return parse


def _classes(text: str) -> tuple[int, ...]:
    """`0-4`, `0,2,5` or `0-2,7`: class indices, each range checked before it is expanded."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, dash, hi = part.partition("-")
        try:
            lo, hi = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected class indices such as 0-4 or 0,2,5, got {text!r}"
            ) from None
        if not 0 <= lo <= hi <= MAX_CLASS:
            raise argparse.ArgumentTypeError(
                f"class range {part!r}: expected 0 <= first <= last <= {MAX_CLASS:,}, e.g. 0-4"
            )
        out += range(lo, hi + 1)
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one class index, got {text!r}")
    return tuple(out)


def _metric_amount(text: str) -> tuple[str, float]:
    """`mlp=8`: a metric's name and its tolerance (a finite number >= 0)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected METRIC=N such as mlp=8, got {text!r}")
    return name.strip(), _amount(value)


def _amount(text: str) -> float:
    """A finite number >= 0 (a tolerance, a number of hours)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    """An integer in [0, 2**31 - 1], the range every seeded generator here takes."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2147483647], got {text!r}")
    return value


def _folder(text: str) -> str:
    """A folder to write into: one that exists, or a path where one can be made."""
    path = Path(text)
    if path.exists() and not path.is_dir() or any(p.exists() and not p.is_dir() for p in path.parents):
        raise argparse.ArgumentTypeError(f"{text} is not a folder (a file is in the way)")
    return text


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


def _data_args(p) -> None:
    p.add_argument(
        "--data-dir",
        default=os.environ.get("BENCH_DATA_DIR"),
        help="folder holding the dataset files (default: $BENCH_DATA_DIR)",
    )
    p.add_argument("--offline", action="store_true", help="never download; fail if files are missing")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _setup_args(p, *, grid: bool, training: bool = True) -> None:
    """The flags that point a training verb at its config, grid and data (bench.session.Setup)."""
    p.add_argument("--dataset", help="dataset name (default: the config's data.name)")
    p.add_argument("--config", help="TOML file (see configs/)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.epochs=5 (repeatable)",
    )
    if grid:
        p.add_argument(
            "--methods", type=_csv(str), help="comma-separated learners (default: the config's grid)"
        )
        p.add_argument("--latent-dims", type=_csv(int), help="e.g. 64,256")
    else:
        p.add_argument("--latent-dim", type=int, help="latent size (default: the grid's first)")
    p.add_argument("--seeds", type=_csv(int), help="e.g. 0,1,2")
    p.add_argument(
        "--classes", type=_classes, help="train on these classes only, e.g. 0-4 or 0,2,5 (= data.classes)"
    )
    if grid:
        p.add_argument(
            "--probe-dataset",
            help="transfer: probe the frozen latents of this dataset's images (= probe.dataset)",
        )
        p.add_argument(
            "--probe-classes", type=_classes, help="only these classes of the probe dataset, e.g. 5-9"
        )
    _data_args(p)
    if training:
        tb_help = "also write each run's per-epoch loss terms there"
        p.add_argument("--tensorboard", type=_folder, metavar="DIR", help=tb_help)
        p.add_argument(
            "--compile",
            action="store_true",
            help="torch.compile each training step (= --set train.compile=true)",
        )


def _study_args(p) -> None:
    p.add_argument(
        "--storage",
        help="database URL shared by workers, e.g. postgresql://user@host/db "
        "(default: SQLite under results/studies/)",
    )
    p.add_argument("--no-prune", action="store_true", help="never stop a trial early")
    p.add_argument("--sampler-seed", type=_seed, default=0, help="the study's sampler seed (default 0)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bench", description="LatentBench: compare representation learners on frozen latents.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    lst = sub.add_parser("list", help="learners (and where each came from), evaluators, datasets, configs")
    lst.add_argument(
        "--methods", type=_csv(str), help="also load these learner files, modules or encoders and list them"
    )
    run = sub.add_parser("run", help="train and evaluate a grid of runs, then write the dataset's tables")
    _setup_args(run, grid=True)
    run.add_argument("--force", action="store_true", help="redo runs that are already stored")
    ray = run.add_argument_group("grids on Ray (see README: Grids on Ray)")
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
    tune = sub.add_parser("tune", help="an Optuna study of one learner, on one machine or many")
    tune.add_argument("--method", required=True)
    tune.add_argument("--trials", type=int, required=True, help="finished trials for the whole study")
    tune.add_argument("--study", help="study name (default: <method>-<dataset>)")
    tune.add_argument(
        "--multi-objective",
        action="store_true",
        help="maximize validation accuracy and PSNR; plot the Pareto front",
    )
    tune.add_argument(
        "--workers", type=int, help="N worker processes on this machine on the same study (cores shared)"
    )
    tune.add_argument("--no-rerun", action="store_true", help=argparse.SUPPRESS)  # a --workers helper
    _study_args(tune)
    _setup_args(tune, grid=False)
    cmp_ = sub.add_parser(
        "compare", help="every learner tuned with the same budget, then re-run over the seeds"
    )
    cmp_.add_argument(
        "--trials", type=int, required=True, help="trials per learner (the same for every learner)"
    )
    cmp_.add_argument("--methods", type=_csv(str), help="learners (default: every trainable learner)")
    cmp_.add_argument(
        "--trial-epochs",
        type=_trial_epochs,
        help="epochs per trial (5), or a share of each learner's own budget (25%%) when the budgets "
        "differ by family (default: each learner's full budget)",
    )
    cmp_.add_argument("--max-hours", type=_amount, help="refuse to start if the planned compute is larger")
    _study_args(cmp_)
    _setup_args(cmp_, grid=False, training=False)
    rep = sub.add_parser("report", help="rebuild results/*.md and plots from the store")
    rep.add_argument("--runs", action="store_true", help="also redraw every run's own figures")
    dif = sub.add_parser("diff", help="two learners' difference in linear accuracy, with its 95%% interval")
    dif.add_argument(
        "a", help="a learner's row name as the tables show it (e.g. simclr, 'ae (loss=l1+ssim)')"
    )
    dif.add_argument("b", help="the learner it is compared with")
    dif.add_argument("--dataset", default="digits", help="the dataset's slug (default digits)")
    dif.add_argument("--latent-dim", type=int, help="only this latent size (default: every size both have)")
    ev = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a stored run")
    ev.add_argument("key", help="run key or a unique prefix of it")
    runs = sub.add_parser("runs", help="every stored run as one tidy row (CSV), for pandas and notebooks")
    runs.add_argument("--csv", metavar="PATH", help="write the CSV there (default: print it)")
    runs.add_argument("--dataset", help="only this dataset (its slug, e.g. mnist)")
    exp = sub.add_parser("export", help="a run's latents and labels for train, val and test as .npz")
    exp.add_argument("key", help="run key or a unique prefix of it")
    exp.add_argument("--out", metavar="PATH", help="default: <run key>.npz in the current folder")
    exp.add_argument(
        "--encoder",
        metavar="PATH",
        help="write the run's encoder as TorchScript instead (evaluate it with --methods torchscript:PATH)",
    )
    exp.add_argument(
        "--retrain", action="store_true", help="retrain the run if this machine has no cache of it"
    )
    _data_args(exp)
    ver = sub.add_parser("verify", help="retrain stored runs in a scratch store and compare their metrics")
    ver.add_argument("keys", nargs="*", help="run keys or unique prefixes")
    ver.add_argument(
        "--trained-in",
        metavar="DIR",
        help="compare the runs of the store at DIR (e.g. .cache/bench, what `make bench` trained) with "
        "the committed runs of the same keys; nothing is retrained",
    )
    ver.add_argument("--dataset", help="every stored run of this dataset (its slug, e.g. digits)")
    ver.add_argument(
        "--uncommitted", action="store_true", help="the runs made by code with uncommitted changes"
    )
    ver.add_argument("--seeds", help="only runs with these seeds, comma-separated (e.g. 0)")
    ver.add_argument(
        "--stale",
        action="store_true",
        help="the runs measured by an older evaluator (see bench/compat.py); with --adopt, "
        "re-evaluated from cached checkpoints where there are any",
    )
    ver.add_argument(
        "--outdated",
        action="store_true",
        help="the runs that today's evaluators would measure more of (no test predictions, no latent "
        "map, ...); with --adopt, they gain it",
    )
    ver.add_argument("--sample", type=int, help="a seeded random sample of N of the chosen runs")
    ver.add_argument("--sample-seed", type=_seed, default=0)
    ver.add_argument(
        "--tolerance", type=_amount, default=0.5, help="largest accuracy difference, in points (default 0.5)"
    )
    ver.add_argument("--psnr-tolerance", type=_amount, default=0.5, help="largest PSNR difference in dB")
    ver.add_argument(
        "--metric-tolerance",
        type=_metric_amount,
        action="append",
        default=[],
        metavar="METRIC=N",
        help="one metric's own tolerance, e.g. mlp=8 (repeatable)",
    )
    ver.add_argument(
        "--scratch", default=None, help="scratch store (default .cache/verify; kept: a rerun resumes)"
    )
    ver.add_argument("--adopt", action="store_true", help="replace each stored run by its recomputed one")
    _data_args(ver)
    return p
