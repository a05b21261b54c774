"""Which 2-D map for the latent maps, and what the statistics cost the report:
`make bench-maps` -> two sections of results/speed.md.

1. scikit-learn's t-SNE, openTSNE and UMAP on the latent map's own sizes: a class-balanced sample
   of 2,000 MNIST test images (the map's sample, bench/evaluators/latent_map.py), as raw pixels
   (784-d) and as a 64-d PCA code, standardised like a latent. Time (second call, so a JIT's
   compilation is shown apart), trustworthiness at 10 neighbours (scikit-learn: how well the map
   keeps each point's neighbours) and the 5-fold accuracy of a 10-NN classifier on the 2-D map.
   openTSNE and UMAP are measured only where installed (`pip install openTSNE umap-learn`).
2. `python -m bench report` on a copy of the committed store, with this checkout's code and with
   the code of `--before REV` (default: the commit before the significance sections), timed.

    python -m bench.tools.maps [--data-dir DIR] [--before REV]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench import store
from bench.evaluators import latent_map
from bench.run import env
from bench.tools import speed

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "speed.md"
BEFORE = "17fc09e"  # the last commit without significance, latent maps and label-free sections


def _candidates(threads: int) -> dict:
    from sklearn.manifold import TSNE

    def sklearn_tsne(z):
        return TSNE(2, init="pca", random_state=0, n_jobs=threads).fit_transform(z)

    out = {"scikit-learn t-SNE": sklearn_tsne}
    try:
        import openTSNE

        out["openTSNE (FFT)"] = lambda z: np.asarray(openTSNE.TSNE(n_jobs=threads, random_state=0).fit(z))
    except ImportError:
        pass
    try:
        import umap

        out["UMAP"] = lambda z: umap.UMAP(random_state=0, n_jobs=1).fit_transform(z)
    except ImportError:
        pass
    return out


def maps(data_dir: str) -> list[str]:
    import torchvision
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    ds = torchvision.datasets.MNIST(data_dir, train=False, download=False)
    x = ds.data.numpy().reshape(len(ds), -1).astype(np.float32) / 255
    y = ds.targets.numpy()
    idx = latent_map.sample(y, 10, 2000)
    inputs = {"pixels (784-d)": x[idx], "PCA code (64-d)": PCA(64, random_state=0).fit_transform(x)[idx]}
    rows = []
    for name, z in inputs.items():
        z = (z - z.mean(0)) / (z.std(0) + 1e-6)
        for algo, fn in _candidates(torch.get_num_threads()).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                first = time.perf_counter()
                fn(z)
                first = time.perf_counter() - first
                start = time.perf_counter()
                xy = fn(z)
                took = time.perf_counter() - start
            trust = trustworthiness(z, xy, n_neighbors=10)
            knn = cross_val_score(KNeighborsClassifier(10), xy, y[idx], cv=5).mean()
            rows.append(
                f"| {name} | {algo} | {took:.1f} s (first call {first:.1f} s) | {trust:.3f} | {knn:.1%} |"
            )
            print(rows[-1], flush=True)
    return [
        "## Latent maps: which 2-D embedding",
        "",
        f"- **Hardware:** {env.cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads.",
        "- **Reproduce:** `make bench-maps` (`python -m bench.tools.maps`): the latent map's own sample, "
        "2,000 class-balanced MNIST test images, as pixels and as a 64-d PCA code.",
        "",
        "| input | method | time | trustworthiness@10 | 10-NN accuracy on the map |",
        "|:--|:--|:--|:--|:--|",
        *rows,
        "",
        "The harness uses scikit-learn's t-SNE: seconds per run at these sizes, neighbourhoods kept "
        "(trustworthiness) at least as well as the others, and no dependency beyond scikit-learn; "
        "where openTSNE is faster it would save those seconds at the cost of one more package.",
        "",
    ]


def _report_seconds(code: Path, results: Path) -> float:
    env_ = {**os.environ, "BENCH_RESULTS_DIR": str(results), "PYTHONPATH": str(code)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench", "report"], cwd=code, env=env_, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def report(before: str) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), before], cwd=ROOT, check=True)
        try:
            times = {}
            for label, code in (("before", old), ("after", ROOT)):
                results = Path(tmp) / f"results-{label}"
                shutil.copytree(ROOT / "results", results)
                times[label] = _report_seconds(code, results)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=True)
    runs = len(list((ROOT / "results" / "runs").glob("*/metrics.json")))
    kept = sum(f.stat().st_size for f in (ROOT / "results" / "runs").glob("*/predictions.npz"))
    maps_ = sum(f.stat().st_size for f in (ROOT / "results" / "runs").glob("*/latent_map.npz"))
    counts = [
        len(list((ROOT / "results" / "runs").glob(f"*/{n}.npz"))) for n in ("predictions", "latent_map")
    ]
    return [
        "## bench report with the statistics",
        "",
        f"- **Hardware:** {env.cpu_model()}, {os.cpu_count()} cores.",
        f"- **Reproduce:** `make bench-maps` (`python -m bench.tools.maps`): `python -m bench report` on a "
        f"copy of the committed store ({runs} runs), with the code of {before} and with this checkout's.",
        "",
        f"`bench report`: **{times['before']:.0f} s** before the significance, latent-map and label-free "
        f"sections, **{times['after']:.0f} s** with them (every page, figure and study page). The store "
        f"keeps {counts[0]} runs' test predictions ({kept / 1e6:.2f} MB) and {counts[1]} latent maps "
        f"({maps_ / 1e6:.2f} MB).",
        "",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    p.add_argument("--before", default=BEFORE)
    p.add_argument("--skip-maps", action="store_true")
    args = p.parse_args()
    if not args.skip_maps:
        if not args.data_dir or not (Path(args.data_dir) / "MNIST" / "raw").is_dir():
            sys.exit("error: --data-dir (or BENCH_DATA_DIR) must hold MNIST/raw/")
        lines = maps(args.data_dir)
        speed.replace_section(OUT, "\n".join(lines), lines[0])
    lines = report(args.before)
    speed.replace_section(OUT, "\n".join(lines), lines[0])
    print("\n".join(lines))


if __name__ == "__main__":
    with store.using(store.Store.from_env()):  # a make target is an edge: the environment's store
        main()
