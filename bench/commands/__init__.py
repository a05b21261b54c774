"""The verbs of `python -m bench VERB`, one file each: `add` declares the verb's flags, `main`
runs it on the parsed namespace (the flags shared by several verbs are in bench/cli.py). Only
the verb asked for is imported, so `python -m bench --help` and a mistyped flag answer at once.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from bench import cli

VERBS = {  # name: the line `python -m bench --help` shows for it
    "list": "learners (and where each came from), evaluators, datasets, configs",
    "run": "train and evaluate a grid of runs, then write the dataset's tables",
    "tune": "an Optuna study of one learner, on one machine or many",
    "compare": "every learner tuned with the same budget, then re-run over the seeds",
    "report": "rebuild results/*.md and plots from the store",
    "diff": "two learners' difference in linear accuracy, with its 95%% interval",
    "evaluate": "accuracy, per-class accuracy and confusion matrix of a stored run",
    "runs": "every stored run as one tidy row (CSV), for pandas and notebooks",
    "export": "a run's latents and labels for train, val and test as .npz",
    "verify": "retrain stored runs in a scratch store and compare their metrics",
    "cost": "count the FLOPs of stored runs from their specs, without retraining",
    "site": "the results explorer: static HTML pages from the store, opened from disk",
}


def module(verb: str):
    """The module of `verb` (bench/commands/<verb>.py)."""
    return importlib.import_module(f"bench.commands.{verb}")


def parser(argv: list[str]) -> cli.Parser:
    """The command line's parser, with the flags of the verb `argv` names (the others are listed
    by name and help line only)."""
    prog = "latentbench" if Path(sys.argv[0]).name == "latentbench" else "python -m bench"
    about = "LatentBench: compare representation learners on frozen latents."
    p = cli.Parser(prog=prog, description=about)
    sub = p.add_subparsers(dest="verb", required=True, parser_class=cli.Parser)
    asked = argv[0] if argv and argv[0] in VERBS else None
    p.help_at = f"{prog} {asked}" if asked else prog  # an unknown flag of a verb: its help
    for verb, line in VERBS.items():
        verb_parser = sub.add_parser(verb, help=line)
        if verb == asked:
            module(verb).add(verb_parser)
    return p
