"""Benchmarks of the harness itself (not tests: they time, they do not assert).

    python -m bench.tools.benchmarks parallel   # make bench-parallel -> results/parallel.md
    python -m bench.tools.benchmarks fresh      # make bench-fresh -> results/speed.md

`parallel` times the digits grid (configs/default.toml, every learner) from an empty scratch
store three ways, each in a fresh process: in-process with the default threads, in-process with
one thread per run, and as Ray tasks with `--workers 2 --cpus-per-run 1`; the stores are compared
run by run to show the Ray grid computed the same numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench.run import env

ROOT = Path(__file__).resolve().parents[2]
GRID = ["run", "--config", str(ROOT / "configs/default.toml")]
MODES = {
    "in-process, default threads": [],
    "in-process, 1 thread per run": ["--cpus-per-run", "1"],
    "Ray, --workers 2 --cpus-per-run 1": ["--workers", "2", "--cpus-per-run", "1"],
}


def _timed(args: list[str], folder: Path) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    env = dict(os.environ, BENCH_RESULTS_DIR=str(folder), BENCH_CACHE_DIR=str(folder / "cache"))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def _metrics(folder: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in (folder / "runs").glob("*/metrics.json")}


def parallel(out: Path) -> None:
    scratch = ROOT / ".cache" / "bench-parallel"
    rows, stores = [], {}
    for mode, extra in MODES.items():
        folder = scratch / mode.split(",")[0].replace(" ", "-") / str(len(stores))
        seconds = _timed([*GRID, *extra], folder)
        stores[mode] = _metrics(folder)
        rows.append({"mode": mode, "runs": len(stores[mode]), "wall s": round(seconds, 1)})
        print(f"{mode}: {seconds:.1f} s", flush=True)
    base = rows[0]["wall s"]
    for row in rows:
        row["speed-up vs default"] = f"{base / row['wall s']:.2f}x"
    one, ray_ = stores["in-process, 1 thread per run"], stores["Ray, --workers 2 --cpus-per-run 1"]
    same = sum(
        all(
            one[k].get(f) == ray_.get(k, {}).get(f)
            for f in ("linear", "mlp", "knn", "recon", "label_efficiency")
        )
        for k in one
    )
    import ray
    import torch

    lines = [
        "# Grids in-process and on Ray",
        "",
        f"- **Hardware:** {env.cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"ray {ray.__version__}.",
        "- **Grid:** `configs/default.toml` (digits, every registered learner, 2 latent sizes x 3 seeds), "
        "from an empty store, each mode in a fresh process (start-up and Ray's worker start included).",
        "- **Reproduce:** `make bench-parallel` (`python -m bench.tools.benchmarks parallel`).",
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
        "",
        f"Runs with identical metrics, 1 thread per run in-process vs on Ray: {same} of {len(one)}.",
        "",
    ]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


def _make_bench(clone: Path) -> tuple[float, str, list[str]]:
    """`make bench` in `clone`, timed: (seconds, its verify verdict line, its lines of differences
    and environments)."""
    start = time.perf_counter()
    done = subprocess.run(
        ["make", "--no-print-directory", "bench"], cwd=clone, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"make bench failed in {clone}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    lines = done.stdout.splitlines()
    verdict = [line for line in lines if " run(s): " in line][-1:]
    first = next(
        (i for i, line in enumerate(lines) if line.startswith("difference, trained - committed")), None
    )
    drift = [] if first is None else [line for line in lines[first:] if line.startswith("  ")]
    return took, (verdict or ["(no verdict line)"])[0], drift


def fresh(out: Path) -> None:
    """`make bench` on a fresh clone of HEAD (its virtual environment reused: a symlink to this
    checkout's), timed as a user runs it: cold (empty cache) and again (warm)."""
    import tempfile

    import torch

    from bench.tools import speed

    with tempfile.TemporaryDirectory(prefix="bench-fresh-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip()
        (clone / ".venv").symlink_to(ROOT / ".venv")
        cold, verdict, drift = _make_bench(clone)
        warm, _, _ = _make_bench(clone)
        trained = _metrics(clone / ".cache" / "bench")
    runs = len(trained)
    sizes = sorted({m["latent_dim"] for m in trained.values() if m.get("latent_dim")})
    dims = " and ".join(str(d) for d in sizes)
    heading = "## make bench from an empty store"
    lines = [
        heading,
        "",
        f"- **Hardware:** {env.cpu_model()} ({torch.backends.cpu.get_cpu_capability()} kernels), "
        f"{os.cpu_count()} cores, torch {torch.__version__}; "
        f"load average {os.getloadavg()[0]:.2f} at the end.",
        "- **Reproduce:** `make bench-fresh` (`python -m bench.tools.benchmarks fresh`): a fresh clone of "
        f"HEAD ({sha}), its virtual environment this checkout's (a fresh machine adds the install: "
        "~2.5 min, measured by `make bench-fresh-test`), then `make bench` twice.",
        "",
        f"`make bench` on the fresh clone: {runs} runs (every registered learner and baseline, digits, "
        f"d = {dims}, seed 0) trained, evaluated, tabled and compared with the committed runs of the "
        f"same keys in **{cold:.0f} s** ({cold / 60:.1f} min; target: under 4 min); run again, with "
        f"everything stored, **{warm:.0f} s** (target: under 1 min). Verify: {verdict}",
        "",
    ]
    if drift:
        lines += ["Trained here against committed, and in what the environments differ:", "", "```", *drift]
        lines += ["```", ""]
    speed.replace_section(out, "\n".join(lines), heading)
    print("\n".join(lines))


def fresh_test(out: Path) -> None:
    """CI as a submission gets it: a fresh clone of HEAD (the shared data folder beside it, where
    this checkout has one), its own virtual environment installed from nothing, then `bash .ci/run`
    (PostgreSQL, a two-node Ray cluster, `make test`); each part timed."""
    import re
    import tempfile

    import torch

    from bench.tools import speed

    with tempfile.TemporaryDirectory(prefix="bench-ci-") as tmp:
        clone = Path(tmp) / "main"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        if (ROOT.parent / "shared").is_dir():
            (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip()
        start = time.perf_counter()
        subprocess.run(
            ["make", "--no-print-directory", ".venv/installed"], cwd=clone, check=True, capture_output=True
        )
        install = time.perf_counter() - start
        start = time.perf_counter()
        slowest = {**os.environ, "CI": "true", "PYTEST_ADDOPTS": "--durations=10"}
        done = subprocess.run(["bash", ".ci/run"], cwd=clone, env=slowest, capture_output=True, text=True)
        ci = time.perf_counter() - start
        start = time.perf_counter()
        fast = subprocess.run(
            ["make", "--no-print-directory", "test-fast"], cwd=clone, capture_output=True, text=True
        )
        fast_s = time.perf_counter() - start
    summary = [line.strip("= ") for line in done.stdout.splitlines() if re.search(r"\d+ passed", line)]
    if done.returncode != 0 or not summary:
        sys.exit(f".ci/run failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    fast_summary = [line.strip("= ") for line in fast.stdout.splitlines() if re.search(r"\d+ passed", line)]
    if fast.returncode != 0 or not fast_summary:
        sys.exit(f"make test-fast failed (exit {fast.returncode}):\n{fast.stdout[-3000:]}")
    heading = "## make test on a fresh clone"
    lines = [
        heading,
        "",
        f"- **Hardware:** {env.cpu_model()} ({torch.backends.cpu.get_cpu_capability()} kernels), "
        f"{os.cpu_count()} cores, torch {torch.__version__}; "
        f"load average {os.getloadavg()[0]:.2f} at the end.",
        "- **Reproduce:** `make bench-fresh-test` (`python -m bench.tools.benchmarks fresh-test`): a fresh "
        f"clone of HEAD ({sha}), its own virtual environment, then `bash .ci/run` as CI runs it.",
        "",
        f"Install (`make .venv/installed`: a new venv, torch from local wheels): **{install:.0f} s**. "
        f"`bash .ci/run` (a PostgreSQL server, a two-node Ray cluster, then `make test`): "
        f"**{ci:.0f} s** ({ci / 60:.1f} min); pytest: {summary[-1]}. `make test` runs one pytest-xdist "
        "worker a core (one thread each; the Ray cluster's tests in turn on one worker).",
        "",
        f"`make test-fast` (the tests not marked `slow`, the edit-test loop) after it: **{fast_s:.0f} s**; "
        f"pytest: {fast_summary[-1]}.",
        "",
        "The ten slowest tests (pytest `--durations=10`):",
        "",
        "```",
        *[
            line.strip()
            for line in done.stdout.splitlines()
            if re.match(r"\s*[\d.]+s (call|setup|teardown) ", line)
        ],
        "```",
        "",
    ]
    speed.replace_section(out, "\n".join(lines), heading)
    print("\n".join(lines))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "parallel":
        parallel(ROOT / "results" / "parallel.md")
    elif what == "fresh":
        fresh(ROOT / "results" / "speed.md")
    elif what == "fresh-test":
        fresh_test(ROOT / "results" / "speed.md")
    else:
        sys.exit("usage: python -m bench.tools.benchmarks parallel|fresh|fresh-test")
