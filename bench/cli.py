"""The command line's grammar, the parts verbs share: argument types that check a value where it
is typed (a parse error is one line and exit 2, like every other bad input), the flag groups of
the training verbs, and `setup`, which turns those flags into the typed `Setup` a verb runs on.
Each verb's own flags are in its file under bench/commands/.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from bench.checks import MAX_CLASS


class Parser(argparse.ArgumentParser):
    help_at = None  # the command whose --help to point at (default: this parser's own)

    def error(self, message):  # one line and exit 2, like every other bad input
        print(f"error: {message} (see `{self.help_at or self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def listed(kind):
    """`a,b,c`: a comma-separated list of `kind`, never empty."""

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


def classes(text: str) -> tuple[int, ...]:
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


def metric_amount(text: str) -> tuple[str, float]:
    """`mlp=8`: a metric's name and its tolerance (a finite number >= 0)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected METRIC=N such as mlp=8, got {text!r}")
    return name.strip(), amount(value)


def amount(text: str) -> float:
    """A finite number >= 0 (a tolerance, a number of hours)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def seed(text: str) -> int:
    """An integer in [0, 2**31 - 1], the range every seeded generator here takes."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2147483647], got {text!r}")
    return value


def folder(text: str) -> str:
    """A folder to write into: one that exists, or a path where one can be made."""
    path = Path(text)
    if path.exists() and not path.is_dir() or any(p.exists() and not p.is_dir() for p in path.parents):
        raise argparse.ArgumentTypeError(f"{text} is not a folder (a file is in the way)")
    return text


def trial_epochs(text: str) -> int | float:
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


def data_args(p) -> None:
    p.add_argument(
        "--data-dir",
        default=os.environ.get("BENCH_DATA_DIR"),
        help="folder holding the dataset files (default: $BENCH_DATA_DIR)",
    )
    p.add_argument("--offline", action="store_true", help="never download; fail if files are missing")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def setup_args(p, *, grid: bool, training: bool = True) -> None:
    """The flags that point a training verb at its config, grid and data (bench.run.session.Setup)."""
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
            "--methods", type=listed(str), help="comma-separated learners (default: the config's grid)"
        )
        p.add_argument("--latent-dims", type=listed(int), help="e.g. 64,256")
    else:
        p.add_argument("--latent-dim", type=int, help="latent size (default: the grid's first)")
    p.add_argument("--seeds", type=listed(int), help="e.g. 0,1,2")
    p.add_argument(
        "--classes", type=classes, help="train on these classes only, e.g. 0-4 or 0,2,5 (= data.classes)"
    )
    if grid:
        p.add_argument(
            "--probe-dataset",
            help="transfer: probe the frozen latents of this dataset's images (= probe.dataset)",
        )
        p.add_argument(
            "--probe-classes", type=classes, help="only these classes of the probe dataset, e.g. 5-9"
        )
    data_args(p)
    if training:
        tb_help = "also write each run's per-epoch loss terms there"
        p.add_argument("--tensorboard", type=folder, metavar="DIR", help=tb_help)
        p.add_argument(
            "--compile",
            action="store_true",
            help="torch.compile each training step (= --set train.compile=true)",
        )


def study_args(p) -> None:
    p.add_argument(
        "--storage",
        help="database URL shared by workers, e.g. postgresql://user@host/db "
        "(default: SQLite under results/studies/)",
    )
    p.add_argument("--no-prune", action="store_true", help="never stop a trial early")
    p.add_argument("--sampler-seed", type=seed, default=0, help="the study's sampler seed (default 0)")


def setup(args, methods=None, latent_dims=None, training: bool = True):
    """The `Setup` (bench/run/session.py) of a training verb's parsed flags."""
    from bench.run.session import Setup

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
