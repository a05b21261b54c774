"""`bench verify --trained-in DIR`: the runs another store holds (trained there, e.g. by `make
bench` into .cache/bench), each compared with the committed run of the same key. Nothing is
retrained: this checks that a fresh machine reproduces the committed numbers, run for run, and
says which runs matched, which differ past the tolerance (and in what the environments differ),
and which have no committed counterpart (a learner added since, say).
"""

from __future__ import annotations

from pathlib import Path

from bench import BenchError, store, tables, verify


def _env_differences(committed: dict, trained: dict) -> list[str]:
    """`cpu_model (AMD EPYC -> Intel Xeon)`: the environment fields in which two runs differ."""
    a, b = committed.get("env") or {}, trained.get("env") or {}
    return [f"{k} ({a.get(k, '?')} -> {b.get(k, '?')})" for k in verify.ENV_FIELDS if a.get(k) != b.get(k)]


def main(folder: Path, tolerance: float, psnr_tolerance: float, per_metric: tuple = ()) -> int:
    """Compare every finished run of the store at `folder` with the committed store's; 1 if
    any differs past the tolerance, 0 otherwise."""
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
