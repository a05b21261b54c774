"""`bench verify`: reproducibility, measured. Stored runs are retrained in a scratch store and
their metrics compared with the stored ones (bench/run/verify.py), or, with `--trained-in DIR`,
the runs another store holds (trained there, e.g. by `make bench` into .cache/bench) are each
compared with the committed run of the same key. That second check retrains nothing: it says
whether a fresh machine reproduces the committed numbers, run for run, which runs differ past the
tolerance (and in what the environments differ), and which have no committed counterpart (a
learner added since, say).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench import BenchError, cli, store
from bench.report import tables
from bench.run import verify


def add(p) -> None:
    p.add_argument("keys", nargs="*", help="run keys or unique prefixes")
    p.add_argument(
        "--trained-in",
        metavar="DIR",
        help="compare the runs of the store at DIR (e.g. .cache/bench, what `make bench` trained) with "
        "the committed runs of the same keys; nothing is retrained",
    )
    p.add_argument("--dataset", help="every stored run of this dataset (its slug, e.g. digits)")
    p.add_argument(
        "--uncommitted", action="store_true", help="the runs made by code with uncommitted changes"
    )
    p.add_argument("--seeds", help="only runs with these seeds, comma-separated (e.g. 0)")
    p.add_argument(
        "--stale",
        action="store_true",
        help="the runs measured by an older evaluator (see bench/store/compat.py); with --adopt, "
        "re-evaluated from cached checkpoints where there are any",
    )
    p.add_argument(
        "--outdated",
        action="store_true",
        help="the runs that today's evaluators would measure more of (no test predictions, no latent "
        "map, ...); with --adopt, they gain it",
    )
    p.add_argument("--sample", type=int, help="a seeded random sample of N of the chosen runs")
    p.add_argument("--sample-seed", type=cli.seed, default=0)
    p.add_argument(
        "--tolerance",
        type=cli.amount,
        default=0.5,
        help="largest accuracy difference, in points (default 0.5)",
    )
    p.add_argument("--psnr-tolerance", type=cli.amount, default=0.5, help="largest PSNR difference in dB")
    p.add_argument(
        "--metric-tolerance",
        type=cli.metric_amount,
        action="append",
        default=[],
        metavar="METRIC=N",
        help="one metric's own tolerance, e.g. mlp=8 (repeatable)",
    )
    p.add_argument(
        "--scratch", default=None, help="scratch store (default .cache/verify; kept: a rerun resumes)"
    )
    p.add_argument("--adopt", action="store_true", help="replace each stored run by its recomputed one")
    cli.data_args(p)


def main(args, argv) -> int:
    if args.trained_in:  # what another store trained, against the committed runs: nothing retrained
        return crosscheck(
            Path(args.trained_in), args.tolerance, args.psnr_tolerance, tuple(args.metric_tolerance)
        )
    # every field of the request is the flag of its name (lists as tuples: the request is frozen)
    chosen = {f.name: getattr(args, f.name) for f in dataclasses.fields(verify.VerifyRequest)}
    chosen |= {"keys": tuple(args.keys), "metric_tolerance": tuple(args.metric_tolerance)}
    return verify.main(verify.VerifyRequest(**chosen))


def _env_differences(committed: dict, trained: dict) -> list[str]:
    """`cpu_model (AMD EPYC -> Intel Xeon)`: the environment fields in which two runs differ."""
    a, b = committed.get("env") or {}, trained.get("env") or {}
    return [f"{k} ({a.get(k, '?')} -> {b.get(k, '?')})" for k in verify.ENV_FIELDS if a.get(k) != b.get(k)]


def crosscheck(folder: Path, tolerance: float, psnr_tolerance: float, per_metric: tuple = ()) -> int:
    """`--trained-in DIR`: every finished run of the store at `folder` against the committed
    store's; 1 if any differs past the tolerance, 0 otherwise."""
    limits = verify.limits(psnr_tolerance, per_metric)
    with verify.scratch_store(folder, own_cache=False):
        trained = tables.registered([r for r in store.load_runs() if r["metrics"].get("status") == "ok"])
    if not trained:
        raise BenchError(f"no finished run in {folder / 'runs'}: train the grid there first")
    here = store.results_dir()
    print(f"comparing the {len(trained)} run(s) trained in {folder} with the committed ones in {here}")
    diffs, over, missing, pairs = [], [], [], []
    for i, run in enumerate(trained, 1):
        found = store.read_run(store.run_dir(run["key"]))  # None: absent, unreadable or failing the schema
        committed = found[1] if found else None
        if committed is None or committed.get("status") != "ok":
            missing.append(run)
            print(f"[{i}/{len(trained)}] {verify.describe(run)}: no readable committed run of this key")
            continue
        d = verify.compare(committed, run["metrics"])
        diffs.append(d)
        pairs.append(({"metrics": committed}, run["metrics"]))
        past = [k for k, (_, _, x) in d.items() if abs(x) > limits.get(k, tolerance)]
        cells = "  ".join(f"{k} {a:.2f}->{b:.2f} ({x:+.2f})" for k, (a, b, x) in d.items())
        why = ""
        if past:
            over.append(run)
            changed = _env_differences(committed, run["metrics"]) or ["nothing recorded"]
            why = f"  OVER in {', '.join(past)}; the environment differs in {', '.join(changed)}"
        print(f"[{i}/{len(trained)}] {verify.describe(run)}: {cells}{why or '  ok'}")
    print("difference, trained - committed:")
    print("\n".join(verify.summary_lines(diffs)))
    print("environment, committed -> trained:")
    print("\n".join(verify.environments([c for c, _ in pairs], [t for _, t in pairs])))
    within, limit = len(diffs) - len(over), verify.tolerance_text(tolerance, psnr_tolerance, per_metric)
    print(
        f"{len(trained)} run(s): {within} within {limit}, "
        f"{len(over)} past it, {len(missing)} with no committed run"
    )
    if not diffs:
        raise BenchError(f"compared nothing: no run trained in {folder} has a readable committed run")
    return 1 if over else 0
