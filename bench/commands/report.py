"""`bench report`: rebuild every page (results/*.md) and figure from the store; nothing is
trained or measured (bench/report/)."""

from __future__ import annotations

from bench import BenchError


def add(p) -> None:
    p.add_argument("--runs", action="store_true", help="also redraw every run's own figures")


def main(args, argv) -> None:
    from bench import report

    paths = report.write_all(redraw_runs=args.runs)
    if not paths:
        raise BenchError("the store is empty: run `python -m bench run` first")
    for path in paths:
        print(f"wrote {path}")
