"""`bench runs`: every stored run as one tidy row (learner, overrides, dataset, latent size, seed,
every metric, run key, git SHA), as CSV for pandas and notebooks."""

from __future__ import annotations

import sys
from pathlib import Path

from bench import BenchError, evaluators, store
from bench.report import tables
from bench.store import output


def add(p) -> None:
    p.add_argument("--csv", metavar="PATH", help="write the CSV there (default: print it)")
    p.add_argument("--dataset", help="only this dataset (its slug, e.g. mnist)")


def main(args, argv) -> None:
    runs(args.csv, args.dataset)


FIRST = ["key", "dataset", "learner", "method", "overrides", "latent_dim", "seed", "status", "kind"]
LAST = [
    "params",
    "train_time",
    "wall_time",
    "git_sha",
    "uncommitted",
    "device",
    "threads",
    "torch",
    "purposes",
    "protocol",
]


def table(runs: list[dict]):
    """Every stored run as one row: its identity, every evaluator's columns (`-`-free: empty
    where the run did not measure it), then cost and environment, then the columns named by the
    data (label efficiency's `linear@0.01`, ...)."""
    df = tables.frame(runs)
    measured = [c.key for c in evaluators.columns("csv")]
    extra = [c for e in evaluators.all() for c in e.extra_csv(df.columns)]
    return df[[c for c in FIRST + measured + LAST if c in df.columns] + extra]


def runs(csv: str | None, dataset: str | None) -> None:
    """Every stored run (of `dataset`) as CSV, printed or written to `csv`."""
    runs = [r for r in store.load_runs() if not dataset or r["config"]["dataset"]["slug"] == dataset]
    if not runs:
        raise BenchError("no stored run" + (f" of dataset {dataset!r}" if dataset else ""))
    df = table(runs)
    if csv:
        output.write(Path(csv), lambda tmp: df.to_csv(tmp, index=False))
        print(f"wrote {csv} ({len(df)} runs, {len(df.columns)} columns)")
    else:
        df.to_csv(sys.stdout, index=False)
