"""Reproducibility, measured: retrain stored runs in a scratch store and compare their metrics.

The scratch store (default .cache/verify/) has its own run folders and its own checkpoint and
latent cache, so every run there is trained from nothing; it is kept, so an interrupted `verify`
resumes and a second one compares without retraining (delete the folder for a fresh retrain).
`--adopt` replaces each stored run by its recomputed one: the way a run from uncommitted code, or
from an older evaluator, is replaced by a clean rerun of the same spec.
"""

from __future__ import annotations

import contextlib
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import BenchError, data, evaluators, store
from bench.data import oodsets, probes
from bench.report import labels, tables
from bench.run import runner
from bench.store import compat
from bench.store.spec import VERIFY, RunSpec


def select(
    keys: list[str],
    dataset: str | None,
    sample: int | None,
    uncommitted: bool,
    sample_seed: int = 0,
    seeds: list[int] | None = None,
    stale: bool = False,
    outdated: bool = False,
) -> list[dict]:
    """Finished runs chosen by key prefixes, dataset slug, seeds and/or code state; `sample` of
    them at random (seeded), in key order. Stored runs that cannot be read are counted, not chosen."""
    skipped: list[str] = []
    runs = tables.registered([r for r in store.load_runs(skipped) if r["metrics"].get("status") == "ok"])
    if skipped:
        print(f"{len(skipped)} stored run(s) cannot be read or fail the schema (warned above): not compared")
    if keys:
        wanted = {store.find(k) for k in keys}
        runs = [r for r in runs if r["key"] in wanted]
    if dataset:
        runs = [r for r in runs if r["config"]["dataset"]["slug"] == dataset]
    if seeds is not None:
        runs = [r for r in runs if r["config"]["seed"] in seeds]
    if uncommitted:
        runs = [r for r in runs if _uncommitted(r["metrics"])]
    if stale:
        runs = [r for r in runs if compat.stale(r["metrics"])]
    if outdated:  # a study's trials are on no page (its study page reads the study): left as they are
        runs = [r for r in runs if compat.outdated(r["metrics"]) and not labels.only_trial(r)]
    if not runs:
        raise BenchError(
            "no finished run in the store matches: "
            "check the keys, --dataset, --seeds, --uncommitted, --stale or --outdated"
        )
    if sample is not None:
        if sample < 1:
            raise BenchError(f"--sample {sample}: give a positive number of runs")
        runs = sorted(random.Random(sample_seed).sample(runs, min(sample, len(runs))), key=lambda r: r["key"])
    return runs


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise BenchError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1") from None


def _uncommitted(metrics: dict) -> bool:
    sha = (metrics.get("env") or {}).get("git_sha") or "unknown"
    return sha.endswith("-dirty") or sha == "unknown"


@contextlib.contextmanager
def scratch_store(folder: Path, own_cache: bool = True):
    """Open the store at `folder` (its runs in folder/runs) meanwhile, with its own checkpoint and
    latent cache (folder/cache) or, without `own_cache`, the one open now."""
    cache = folder / "cache" if own_cache else store.cache_dir()
    with store.using(store.Store(folder, cache)):
        yield


def recompute(run: dict, folder: Path, ds, device, probe=None) -> tuple[dict, bool]:
    """(metrics of the run retrained in the scratch store, whether they were already there)."""
    spec = RunSpec.of(run["config"])
    if spec.key != run["key"]:  # the spec no longer hashes to its key: the code changed
        raise BenchError(
            f"run {run['key']} hashes to another key under this code (CODE_VERSION or the key scheme "
            "changed): this version cannot reproduce it"
        )
    with scratch_store(folder):
        had = store.is_done(run["key"])
        return runner.run_one(spec, ds, device, VERIFY, probe=probe), had


def compare(stored: dict, new: dict) -> dict:
    """{metric: (stored, recomputed, difference)} for the metrics both have."""
    out = {}
    for col in evaluators.columns("unit"):
        a, b = _value(col, stored), _value(col, new) if new.get("status") == "ok" else None
        if a is not None and b is not None:
            out[col.key] = (a, b, b - a)
    return out


def _value(col, metrics: dict) -> float | None:
    """A compared number in its unit: accuracies in points, others as stored."""
    v = col.get(metrics)
    return None if v is None else v * col.scale


def adopt(run: dict, folder: Path) -> bool:
    """Replace the stored run's files by the recomputed ones (kept: why the run was made). A
    recomputation whose training reproduced the stored one exactly (the same loss at every epoch)
    keeps the stored training record, its time included: a page's `train s` is the time measured
    when the run was made, not that of a re-make which may have shared the machine. Returns
    whether it did."""
    src, dst = folder / "runs" / run["key"], store.run_dir(run["key"])
    config = store.load_json(src / "config.json")
    config["purposes"] = run["config"].get("purposes", config.get("purposes", []))
    config["command"] = run["config"].get("command", config.get("command"))
    metrics = store.load_json(src / "metrics.json")
    before, after = run["metrics"].get("train"), metrics.get("train")
    same = (
        isinstance(before, dict)
        and isinstance(after, dict)
        and all(before.get(k) == after.get(k) for k in ("epochs", "loss_per_epoch", "terms_per_epoch"))
    )
    if same:
        metrics["train"] = {**before, "reproduced": True}
    for artifact in sorted(src.glob("*.npz")):  # the reconstruction grid, predictions, latent map
        data = artifact.read_bytes()
        store.atomic_write(dst / artifact.name, lambda tmp, data=data: Path(tmp).write_bytes(data))
    store.write_json(dst / "config.json", config)
    store.write_json(dst / "metrics.json", metrics)
    return same


def limits(psnr_tolerance: float, per_metric: tuple = ()) -> dict[str, float]:
    """Accuracies share --tolerance (points); the measures in dB (PSNR) have their own; each
    `(metric, value)` of --metric-tolerance sets that metric's (e.g. the MLP head's, which moves
    most across machines)."""
    out = {c.key: psnr_tolerance for c in evaluators.columns("unit") if c.unit == "dB"}
    known = sorted({c.key for c in evaluators.columns("unit")})
    for key, value in per_metric:
        if key not in known:
            raise BenchError(f"--metric-tolerance {key}={value:g}: verify compares {', '.join(known)}")
        out[key] = value
    return out


def tolerance_text(tolerance: float, psnr_tolerance: float, per_metric: tuple = ()) -> str:
    """`5.0 points (PSNR 2.0 dB, mlp 8)`."""
    return f"{tolerance} points (PSNR {psnr_tolerance} dB{''.join(f', {k} {v:g}' for k, v in per_metric)})"


def describe(run: dict) -> str:
    c = run["config"]
    return f"{run['key'][:8]} {c['dataset']['slug']} {labels.name(c)} {labels.describe(c)}"


def summary_lines(diffs: list[dict]) -> list[str]:
    """Per metric: runs compared, how many identical, mean and max |difference|."""
    lines = []
    for col in evaluators.columns("unit"):
        name, unit = col.key, col.unit
        d = [abs(x[name][2]) for x in diffs if name in x]
        if d:
            same = sum(v == 0 for v in d)
            lines.append(
                f"  {name:<6} {len(d):>4} runs: {same} identical, mean |diff| {sum(d) / len(d):.2f} "
                f"{unit}, max {max(d):.2f} {unit}"
            )
    return lines


# what a run's environment records that can move its numbers (runs stored before a field was
# recorded show `?`)
ENV_FIELDS = ("cpu_model", "cpu_capability", "device", "threads", "torch", "git_sha")


def environments(runs: list[dict], new: list[dict]) -> list[str]:
    """What differs between the stored runs' environment and the recomputing one."""
    lines = []
    for field in ENV_FIELDS:
        before = sorted({str((r["metrics"].get("env") or {}).get(field, "?")) for r in runs})
        after = sorted({str((m.get("env") or {}).get(field, "?")) for m in new if m.get("status") == "ok"})
        mark = "same" if before == after else "differs"
        lines.append(f"  {field:<14} stored: {', '.join(before)}; recomputed: {', '.join(after)} ({mark})")
    return lines


@dataclass(frozen=True)
class VerifyRequest:
    """`bench verify`'s flags: which runs (keys, a dataset, code state, seeds, a sample), how
    close is close enough, where to retrain, and whether to adopt what was recomputed."""

    keys: tuple[str, ...] = ()
    dataset: str | None = None
    uncommitted: bool = False
    stale: bool = False
    outdated: bool = False
    seeds: str | None = None  # "0,1"
    sample: int | None = None
    sample_seed: int = 0
    tolerance: float = 0.5  # points of accuracy
    psnr_tolerance: float = 0.5  # dB
    metric_tolerance: tuple = ()  # ((metric, value), ...): one metric's own tolerance
    scratch: str | None = None  # default: .cache/verify
    adopt: bool = False
    data_dir: str | None = None
    offline: bool = False
    device: str = "auto"


def main(args: VerifyRequest) -> int:
    """`bench verify`: retrain, compare, print; 1 if any difference passes the tolerance."""
    from bench import report
    from bench.run import env

    if not (args.keys or args.dataset or args.uncommitted or args.stale or args.outdated):
        raise BenchError(
            "choose the runs to verify: run keys, --dataset SLUG, --uncommitted, --stale, --outdated "
            "or --trained-in DIR"
        )
    limits_ = limits(args.psnr_tolerance, args.metric_tolerance)
    seeds = parse_seeds(args.seeds)
    runs = select(
        list(args.keys),
        args.dataset,
        args.sample,
        args.uncommitted,
        args.sample_seed,
        seeds,
        args.stale,
        args.outdated,
    )
    folder = Path(args.scratch) if args.scratch else store.cache_dir() / "verify"
    device = env.pick_device(args.device)
    print(f"verifying {len(runs)} run(s) in the scratch store {folder} on {env.device_name(device)}")
    loaded, diffs, new, failed, kept = {}, [], [], [], 0
    for i, run in enumerate(runs, 1):
        ds = data.for_run(run["config"], args.data_dir, args.offline, loaded)
        ds = oodsets.for_run(run["config"], ds, args.data_dir, args.offline)  # OOD images from data
        probe = probes.load_for(run["config"], args.data_dir, args.offline, ds)  # a transfer's
        m, had = recompute(run, folder, ds, device, probe)
        new.append(m)
        d = compare(run["metrics"], m)
        diffs.append(d)
        over = [k for k, (_, _, x) in d.items() if abs(x) > limits_.get(k, args.tolerance)]
        if m.get("status") != "ok" or over:
            failed.append(run)
        cells = "  ".join(f"{k} {a:.2f}->{b:.2f} ({x:+.2f})" for k, (a, b, x) in d.items())
        status = m.get("status") if m.get("status") != "ok" else "OVER" if over else "ok"
        print(
            f"[{i}/{len(runs)}] {describe(run)}: {cells or m.get('error', '')}  {status}"
            + ("  (recomputed earlier)" if had else "")
        )
        if args.adopt and m.get("status") == "ok":
            kept += adopt(run, folder)
    print("difference, recomputed - stored:")
    print("\n".join(summary_lines(diffs)))
    print("environment:")
    print("\n".join(environments(runs, new)))
    if kept:
        print(
            f"{kept} run(s) reproduced their training exactly: their stored training records (times) are kept"
        )
    if args.adopt:
        ok = [r["config"] for r, m in zip(runs, new) if m.get("status") == "ok"]
        adopted = {report.page_of(c): c for c in ok}
        for name in sorted(adopted):
            print(f"adopted the recomputed runs; wrote {report.write_for(adopted[name], store.load_runs())}")
    if not any(diffs):
        print(
            f"compared nothing: none of the {len(runs)} recomputed run(s) measured what was stored",
            file=sys.stderr,
        )
        return 1
    if failed:
        print(
            f"{len(failed)} of {len(runs)} run(s) differ by more than "
            f"{tolerance_text(args.tolerance, args.psnr_tolerance, args.metric_tolerance)} or failed: "
            f"first {describe(failed[0])}",
            file=sys.stderr,
        )
        return 1
    limit = tolerance_text(args.tolerance, args.psnr_tolerance, args.metric_tolerance)
    print(f"all {len(runs)} run(s) within {limit}")
    return 0
